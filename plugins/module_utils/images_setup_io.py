# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""First-boot preparation of a container root: the I/O half of ``images_setup`` (read, apply).

    read(module, fs, params, fresh=False) -> images_setup.RootState    batched, nothing changes
    apply(module, fs, plan) -> None                                    never called in check mode
    prepare(module, root, params, fresh=False, dry=False) -> plan      read -> plan -> apply for one root

A root is untrusted data (a running container owns every file in it): every read and write inside
it goes through ``rootfs.RootFS``, which never leaves the root and never resolves a path twice.
Tools that take a path (ssh-keygen) work in a host temp dir; their output is copied in through the
same API. Password hashing (crypt, openssl) is done while reading: the plan stays pure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import string
import tempfile
import warnings
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils import images_setup as setup, passwd, rootfs
from ansible_collections.corral.nspawn.plugins.module_utils.images_setup import SetupError
from ansible_collections.corral.nspawn.plugins.module_utils.runner import run


# ---------------------------------------------------------------- password hashing on the host

# Python's crypt (libxcrypt: every method) where the interpreter has it (not 3.13+). Imported once, here:
# warnings.catch_warnings() changes process-wide state, so it must not run per call while the fleet
# prepares several roots in threads.
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import crypt as _CRYPT  # pylint: disable=deprecated-module
except ImportError:
    _CRYPT = None


def _recompute(module, password: str, crypted: str) -> Optional[str]:
    """``password`` hashed with the method and salt of ``crypted``, or None when nothing here can.

    libxcrypt through Python's crypt module (all methods) where the interpreter has it; without it
    (Python 3.13+) SHA-512 crypt in pure Python; other methods through ``openssl passwd`` if the host
    has it. The secret goes by stdin, never on a command line.
    """
    hashed = _CRYPT.crypt(password, crypted) if _CRYPT else None
    if hashed and hashed.startswith("$"):
        return hashed
    if crypted.startswith("$6$"):
        try:
            return passwd.sha512_crypt(password, crypted)
        except ValueError:
            return None
    spec = setup.hash_salt(crypted)
    openssl = module.get_bin_path("openssl")
    if spec is None or not openssl:
        return None
    return run(module, [openssl, "passwd", f"-{spec[0]}", "-salt", spec[1], "-stdin"], data=password)[1].strip()


def hash_password(module, password: str, method: str = "6", salt: Optional[str] = None) -> str:
    """crypt(3) hash of ``password`` (SHA-512 unless ``method`` says otherwise), random salt by default."""
    salt = salt or "".join(secrets.choice(string.ascii_letters + string.digits + "./") for _index in range(16))
    hashed = _recompute(module, password, f"${method}${salt}$")
    if not hashed:
        raise SetupError(f"root_password: method ${method}$ needs Python's crypt module or the openssl command "
                         "on the host; give root_password_hash instead")
    return hashed


def password_matches(module, password: str, crypted: Optional[str]) -> bool:
    """Whether ``crypted`` is ``password``'s hash; a hash nothing here can recompute does not match."""
    if not crypted or not crypted.startswith("$"):
        return False
    return _recompute(module, password, crypted) == crypted


# ---------------------------------------------------------------- read (batched, changes nothing)

def _unit_file(fs: rootfs.RootFS, unit: str) -> Optional[Tuple[str, str]]:
    """(path as the container sees it, text) of the unit's file in the root; None when not installed."""
    for directory in setup.UNIT_DIRS:
        with contextlib.suppress(rootfs.RootError):   # not a regular file there: look in the next directory
            text = fs.read_text(f"{directory}/{unit}")
            if text is not None:
                return f"/{directory}/{unit}", text
    return None


def enable_links(fs: rootfs.RootFS, unit: str, seen: Optional[set] = None) -> Optional[List[Tuple[str, str]]]:
    """The (link, target) pairs ``systemctl enable`` makes for ``unit`` (Also= included); None when not installed.

    Read here rather than by ``systemctl --root``, which creates the links by path name: a running
    container could swap etc/systemd/system/*.wants for a link to a host directory in between.
    """
    seen = seen if seen is not None else set()
    seen.add(unit)
    found = _unit_file(fs, unit)
    if found is None:
        return None
    install = setup.install_section(found[1])
    links = setup.install_links(found[0], unit, install)
    for other in install["Also"]:
        if other not in seen:
            links += enable_links(fs, other, seen) or []
    return links


def read_unit(fs: rootfs.RootFS, unit: str) -> setup.UnitState:
    """The unit's enablement from the links in etc/systemd/system (no command per machine, never out of the root)."""
    masked = fs.readlink(f"etc/systemd/system/{unit}") == "/dev/null"
    links = None if masked else enable_links(fs, unit)
    current = {link: fs.readlink(link) for link, _target in links or []}
    return setup.UnitState(setup.enabled_state(masked, links, current), links or [], current)


def _read_password(module, params: dict, state: setup.RootState) -> Optional[str]:
    """The hash to set for root_password; None when the current one matches (or there is no shadow)."""
    found = state.get("file", "etc/shadow")
    if found is None or not params.get("root_password"):
        return None
    if password_matches(module, params["root_password"], setup.shadow_root_hash(found[0])):
        return None
    return hash_password(module, params["root_password"])


_READERS = {
    "file": lambda module, fs, name, params, state: fs.read_with_stat(name),
    "lstat": lambda module, fs, name, params, state: getattr(fs.lstat(name), "st_mode", None),
    "dir": lambda module, fs, name, params, state: fs.is_dir(name),
    "list": lambda module, fs, name, params, state: fs.listdir(name),
    "unit": lambda module, fs, name, params, state: read_unit(fs, name),
    "tool": lambda module, fs, name, params, state: module.get_bin_path(name),
    "password": lambda module, fs, name, params, state: _read_password(module, params, state),
}


def read(module, fs: rootfs.RootFS, params: dict, fresh: bool = False) -> setup.RootState:
    """Everything the wanted steps need to know about the root, read once through the confined API."""
    state = setup.RootState(fs.root)
    for kind, name in setup.reads(params, fresh):
        state.seen[(kind, name)] = _READERS[kind](module, fs, name, params, state)
    return state


# ---------------------------------------------------------------- apply (never in check mode)

def _host_keys(module, fs: rootfs.RootFS, keygen: str, keys: List[str], names: List[str]) -> None:
    """ssh-keygen writes into a host temp dir (it would follow links by name); the keys are copied in."""
    workdir = tempfile.mkdtemp(prefix="corral-hostkeys-")
    try:
        for name in names:
            if name.startswith("ssh_host_"):
                fs.unlink(f"etc/ssh/{name}")
        for key in keys:
            kind = key[len("ssh_host_"):-len("_key")]
            path = os.path.join(workdir, key)
            run(module, [keygen, "-q", "-t", kind, "-N", "", "-C", "root@container", "-f", path])
            for suffix, mode in (("", 0o600), (".pub", 0o644)):
                with open(path + suffix, "rb") as handle:
                    fs.write(f"etc/ssh/{key}{suffix}", handle.read(), mode)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


_APPLY = {
    "write": lambda module, fs, rel, text, mode, owner: fs.write(rel, text, mode, owner=owner),
    "unlink": lambda module, fs, rel: fs.unlink(rel),
    "mkdir": lambda module, fs, rel, mode: fs.makedirs(rel, mode),
    "symlink": lambda module, fs, target, rel: fs.symlink(target, rel),
    "hostkeys": _host_keys,
}


def apply(module, fs: rootfs.RootFS, todo: setup.SetupPlan) -> None:
    """Do exactly the plan's actions, in order, inside the root."""
    for action in todo.actions:
        _APPLY[action[0]](module, fs, *action[1:])


class RootRefused(SetupError):
    """The root refused a path (not a regular file, a link leading elsewhere, changed under us): nothing outside it
    was touched. The fleet confines it to that root's machine (``root`` names the root, the message the path)."""

    def __init__(self, msg: str, root: str):
        super().__init__(msg, root=root)


@contextmanager
def confined(root: str) -> Iterator[rootfs.RootFS]:
    """The root opened through rootfs; what it refuses (or a root changing under us) is a RootRefused."""
    try:
        with rootfs.RootFS(root) as fs:
            yield fs
    except rootfs.RootError as exc:
        raise RootRefused(str(exc), root) from None
    except OSError as exc:
        # The root changed under us or holds an unexpected type; nothing outside it was touched.
        where = f" ({os.path.join(root, exc.filename)})" if isinstance(exc.filename, str) else ""
        raise RootRefused(f"preparing the root {root}: {exc.strerror or exc}{where}; nothing outside the root was "
                          "touched (container roots are untrusted)", root) from None


def prepare(module, root: str, params: dict, fresh: bool = False, dry: bool = False) -> setup.SetupPlan:
    """read -> plan -> apply (unless ``dry``) for one root; the plan says what was (or would be) done."""
    with confined(root) as fs:
        todo = setup.plan(params, read(module, fs, params, fresh), fresh)
        if not dry:
            apply(module, fs, todo)
    return todo
