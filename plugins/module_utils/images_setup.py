# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""First-boot preparation of a container root (post-setup), each step idempotent.

Every step decides from what is on disk, acts only when the run may write, and
returns the actions it took (or would take) in words. A root is untrusted data
(a running container owns every file in it): every read and write inside it goes
through ``rootfs.RootFS``, which never leaves the root and never resolves a path
twice. Tools that take a path (ssh-keygen) work in a host temp dir; their output
is copied in through the same API.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import stat
import string
import tempfile
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils import passwd, rootfs, unitfile
from ansible_collections.corral.nspawn.plugins.module_utils.files import MANAGED_MARKER
from ansible_collections.corral.nspawn.plugins.module_utils.runner import run

HOST0_NETWORK = "etc/systemd/network/10-corral-host0.network"
SECURETTY_FILES = ("etc/securetty", "usr/share/factory/etc/securetty")
SECURETTY_TTYS = tuple(f"pts/{n}" for n in range(10))
NETWORKD_UNIT = "systemd-networkd.service"
RESOLVED_UNIT = "systemd-resolved.service"
UNIT_DIRS = ("etc/systemd/system", "run/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")
# Per-installation secrets a clone must not share with its template (systemd regenerates them at boot).
IDENTITY_FILES = ("var/lib/systemd/credential.secret", "var/lib/systemd/random-seed")


class SetupError(Exception):
    """Post-setup cannot proceed; the message says why and what to do."""


@dataclass
class Setup:
    """One post-setup pass over one root: where, and whether it may write (``dry``: check mode or deferred)."""

    module: object
    fs: rootfs.RootFS
    dry: bool
    diffs: Optional[list] = None


# ---------------------------------------------------------------- pure helpers

def host0_network(address: Optional[str], gateway: Optional[str] = None, dns: Optional[list] = None,
                  address6: Optional[str] = None, gateway6: Optional[str] = None) -> str:
    """In-container networkd file giving host0 static addresses (sorted before the stock DHCP one).

    The gateway defaults to the first host of the subnet (the zone's or bridge's host address). With
    only an IPv6 address, IPv4 still comes from DHCP; with only IPv4, IPv6 stays off as before.
    """
    network = []
    for value, gw in ((address, gateway), (address6, gateway6)):
        if value:
            iface = ipaddress.ip_interface(value)
            network += [("Address", str(iface)), ("Gateway", gw or str(next(iface.network.hosts())))]
    if not address:
        network.insert(0, ("DHCP", "ipv4"))
    network += [("DNS", server) for server in dns or []]
    network += [("LinkLocalAddressing", "ipv6" if address6 else "no"), ("IPv6AcceptRA", "no")]
    return unitfile.render([("Match", [("Virtualization", "container"), ("Name", "host0")]), ("Network", network)])


def dhcp_network(link: str) -> str:
    """In-container networkd file: DHCP (IPv4 and IPv6) and router advertisements on ``link``."""
    return unitfile.render([("Match", [("Virtualization", "container"), ("Name", link)]),
                            ("Network", [("DHCP", "yes"), ("LinkLocalAddressing", "ipv6"), ("IPv6AcceptRA", "yes")])])


def link_network_path(link: str) -> str:
    """Where the root's networkd file for ``link`` goes (host0 keeps its historical name)."""
    return HOST0_NETWORK if link == "host0" else f"etc/systemd/network/10-corral-{link.rstrip('*')}.network"


def securetty_missing(text: str) -> List[str]:
    """The pts lines pam_securetty needs for machinectl login that ``text`` lacks."""
    present = {line.strip() for line in text.splitlines()}
    return [tty for tty in SECURETTY_TTYS if tty not in present]


def shadow_root_hash(text: str) -> Optional[str]:
    for line in text.splitlines():
        fields = line.split(":")
        if fields[0] == "root" and len(fields) > 1:
            return fields[1]
    return None


def shadow_with_root_hash(text: str, new_hash: str) -> str:
    """/etc/shadow text with root's password field replaced (other lines untouched)."""
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] == "root" and len(fields) > 1:
            fields[1] = new_hash
            lines[index] = ":".join(fields)
            return "".join(lines)
    raise SetupError("the image's /etc/shadow has no root entry; cannot set the root password")


def hash_salt(crypted: Optional[str]) -> Optional[Tuple[str, str]]:
    """(method id, salt) of a ``$id$salt$hash`` crypt string we can recompute, else None."""
    if not crypted or not crypted.startswith("$"):
        return None
    parts = crypted.split("$")
    if len(parts) == 4 and parts[1] in ("1", "5", "6"):
        return parts[1], parts[2]
    return None


def authorized_keys_text(keys: List[str]) -> str:
    body = "".join(key.strip() + "\n" for key in keys if key.strip())
    return f"# {MANAGED_MARKER}: root's authorized keys.\n{body}"


# ---------------------------------------------------------------- password hashing on the host

def _crypt(password: str, salt_spec: str) -> Optional[str]:
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import crypt  # pylint: disable=deprecated-module
    except ImportError:
        return None
    return crypt.crypt(password, salt_spec)


def _recompute(module, password: str, crypted: str) -> Optional[str]:
    """``password`` hashed with the method and salt of ``crypted``, or None when nothing here can.

    libxcrypt through Python's crypt module (all methods) where the interpreter has it; without it
    (Python 3.13+) SHA-512 crypt in pure Python; other methods through ``openssl passwd`` if the host
    has it. The secret goes by stdin, never on a command line.
    """
    hashed = _crypt(password, crypted)
    if hashed and hashed.startswith("$"):
        return hashed
    if crypted.startswith("$6$"):
        try:
            return passwd.sha512_crypt(password, crypted)
        except ValueError:
            return None
    spec = hash_salt(crypted)
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


# ---------------------------------------------------------------- steps

def _file_step(setup: Setup, rel: str, content: Optional[str], mode: int, label: str) -> List[str]:
    result = rootfs.ensure_file(setup.fs, rel, content, mode, setup.dry)
    if not result.changed:
        return []
    if setup.diffs is not None and result.diff:
        setup.diffs.append(result.diff)
    return [f"{label}: {result.action} {rel}"]


def _remove_step(setup: Setup, rel: str, label: str, regular_only: bool = True) -> List[str]:
    info = setup.fs.lstat(rel)
    if info is None or (regular_only and not stat.S_ISREG(info.st_mode)):
        return []
    if not setup.dry:
        setup.fs.unlink(rel)
    return [f"{label}: remove {rel}"]


def step_machine_id(setup: Setup) -> List[str]:
    """Empty /etc/machine-id: the container gets a new id on first boot (clones must not share one)."""
    actions = _file_step(setup, "etc/machine-id", "", 0o444, "machine-id (emptied)")
    actions += _remove_step(setup, "var/lib/dbus/machine-id", "machine-id")
    for rel in IDENTITY_FILES:
        actions += _remove_step(setup, rel, "clone identity", regular_only=False)
    return actions


def step_ssh_host_keys(setup: Setup) -> List[str]:
    """Replace SSH host keys present in the root by new ones (clones must not share them).

    ssh-keygen writes into a host temp dir (it would follow links by name); the new
    keys are then copied into the root through the confined API.
    """
    names = setup.fs.listdir("etc/ssh")
    keys = [n for n in names if n.startswith("ssh_host_") and n.endswith("_key")]
    if not keys:
        return []
    keygen = setup.module.get_bin_path("ssh-keygen")
    if not keygen:
        raise SetupError("regenerate_ssh_host_keys: the image has SSH host keys but ssh-keygen is not installed on "
                         "the host; install openssh-client or set regenerate_ssh_host_keys=false")
    if not setup.dry:
        workdir = tempfile.mkdtemp(prefix="corral-hostkeys-")
        try:
            _new_host_keys(setup, keygen, keys, names, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return [f"ssh host keys: regenerate {', '.join(keys)}"]


def _new_host_keys(setup: Setup, keygen: str, keys: List[str], names: List[str], workdir: str) -> None:
    for name in names:
        if name.startswith("ssh_host_"):
            setup.fs.unlink(f"etc/ssh/{name}")
    for key in keys:
        kind = key[len("ssh_host_"):-len("_key")]
        path = os.path.join(workdir, key)
        run(setup.module, [keygen, "-q", "-t", kind, "-N", "", "-C", "root@container", "-f", path])
        for suffix, mode in (("", 0o600), (".pub", 0o644)):
            with open(path + suffix, "rb") as handle:
                setup.fs.write(f"etc/ssh/{key}{suffix}", handle.read(), mode)


def step_root_password(setup: Setup, params: dict) -> List[str]:
    found = setup.fs.read_with_stat("etc/shadow")
    if found is None:
        raise SetupError(f"root_password: {setup.fs.label('etc/shadow')} does not exist; is {setup.fs.root} a "
                         "complete root?")
    text, info = found
    current = shadow_root_hash(text)
    if params.get("root_password_hash"):
        wanted = params["root_password_hash"]
        if current == wanted:
            return []
    elif password_matches(setup.module, params["root_password"], current):
        return []
    else:
        wanted = hash_password(setup.module, params["root_password"])
    if not setup.dry:
        # Keep the file's owner, group and mode (of the file we read): shadow's group lives in the image.
        setup.fs.write("etc/shadow", shadow_with_root_hash(text, wanted), info.st_mode & 0o7777,
                       owner=(info.st_uid, info.st_gid))
    return ["root password: set (etc/shadow)"]


def step_authorized_keys(setup: Setup, keys: List[str]) -> List[str]:
    actions = []
    if not setup.fs.is_dir("root/.ssh"):
        actions.append("authorized_keys: create root/.ssh")
        if setup.dry:
            return actions + ["authorized_keys: create root/.ssh/authorized_keys"]
        setup.fs.makedirs("root/.ssh", 0o700)
    return actions + _file_step(setup, "root/.ssh/authorized_keys", authorized_keys_text(keys), 0o600,
                                "authorized_keys")


# ---------------------------------------------------------------- unit enablement, read from the links

def _unit_file(fs: rootfs.RootFS, unit: str) -> Optional[Tuple[str, str]]:
    """(path as the container sees it, text) of the unit's file in the root; None when not installed."""
    for directory in UNIT_DIRS:
        try:
            text = fs.read_text(f"{directory}/{unit}")
        except rootfs.RootError:
            continue
        if text is not None:
            return f"/{directory}/{unit}", text
    return None


def _install_section(text: str) -> dict:
    """{WantedBy, RequiredBy, Alias, Also: [..]} of a unit file's [Install] section."""
    install: dict = {"WantedBy": [], "RequiredBy": [], "Alias": [], "Also": []}
    try:
        doc = unitfile.parse(text)
    except unitfile.UnitFileError:
        return install
    for section, entries in doc:
        for key, value in entries if section == "Install" else []:
            if key in install:
                install[key] += value.split()
    return install


def enable_links(fs: rootfs.RootFS, unit: str, seen: Optional[set] = None) -> Optional[List[Tuple[str, str]]]:
    """The (link, target) pairs ``systemctl enable`` makes for ``unit`` (Also= included); None when not installed.

    Done here rather than by ``systemctl --root``, which creates the links by path name: a running
    container could swap etc/systemd/system/*.wants for a link to a host directory in between.
    """
    seen = seen if seen is not None else set()
    seen.add(unit)
    found = _unit_file(fs, unit)
    if found is None:
        return None
    path, text = found
    install = _install_section(text)
    links = [(f"etc/systemd/system/{t}.wants/{unit}", path) for t in install["WantedBy"]]
    links += [(f"etc/systemd/system/{t}.requires/{unit}", path) for t in install["RequiredBy"]]
    links += [(f"etc/systemd/system/{alias}", path) for alias in install["Alias"]]
    for other in install["Also"]:
        if other not in seen:
            links += enable_links(fs, other, seen) or []
    return links


def unit_enabled(fs: rootfs.RootFS, unit: str) -> Optional[str]:
    """enabled | static | disabled | masked | None (not installed), from the links in etc/systemd/system.

    The same answer as ``systemctl --root is-enabled`` for what we enable, without a command per
    machine (a no-op fleet run stays constant in cost) and without leaving the root.
    """
    if fs.readlink(f"etc/systemd/system/{unit}") == "/dev/null":
        return "masked"
    links = enable_links(fs, unit)
    if links is None:
        return None
    if not links:
        return "static"
    return "enabled" if all(fs.readlink(link) == target for link, target in links) else "disabled"


def step_enable(setup: Setup, unit: str) -> List[str]:
    """Enable ``unit`` in the image as ``systemctl enable`` would ([Install] links, Also= included)."""
    state = unit_enabled(setup.fs, unit)
    if state in ("enabled", "static"):
        return []
    if state is None:
        raise SetupError(f"{unit} is not installed in the image {setup.fs.root}; install systemd (networkd/resolved) "
                         "in it")
    if state == "masked":
        raise SetupError(f"{unit} is masked in the image {setup.fs.root} (etc/systemd/system/{unit} -> /dev/null); "
                         "unmask it in the image or do not ask to enable it")
    if not setup.dry:
        for link, target in enable_links(setup.fs, unit) or []:
            if setup.fs.readlink(link) != target:
                setup.fs.symlink(target, link)
    return [f"enable {unit} in the image"]


def wants_networkd(params: dict) -> bool:
    """enable_networkd, or by default when the root gets a network file (static address or links)."""
    if params.get("enable_networkd") is not None:
        return bool(params["enable_networkd"])
    return bool(params.get("address") or params.get("address6") or params.get("network_links"))


def network_files(params: dict) -> List[Tuple[str, str, str]]:
    """(path in the root, text, label) of every in-container networkd file the options ask for."""
    static = params.get("address") or params.get("address6")
    files = []
    if static:
        files.append((HOST0_NETWORK, host0_network(params.get("address"), params.get("gateway"), params.get("dns"),
                                                   params.get("address6"), params.get("gateway6")), "host0 address"))
    for link in params.get("network_links") or []:
        if not (static and link == "host0"):
            files.append((link_network_path(link), dhcp_network(link), f"{link} DHCP"))
    return files


def step_network(setup: Setup, params: dict) -> List[str]:
    """The root's networkd configuration for every link the machine gets, and networkd enabled.

    When the fleet asked for it by default (``_network_auto``) and the image has no networkd,
    nothing is written and a warning says so; asked for explicitly, that is an error.
    """
    if not wants_networkd(params) and not network_files(params):
        return []
    if params.get("_network_auto") and unit_enabled(setup.fs, NETWORKD_UNIT) is None:
        warn = getattr(setup.module, "warn", None)
        if warn:
            warn(f"image {setup.fs.root}: systemd-networkd is not installed in the image, so its links "
                 f"({', '.join(params.get('network_links') or [])}) get no network configuration; install it "
                 "(Debian 13: package systemd-networkd) or set image.network_links: [] to silence this")
        return []
    actions = []
    for rel, text, label in network_files(params):
        actions += _file_step(setup, rel, text, 0o644, label)
    if wants_networkd(params):
        actions += step_enable(setup, NETWORKD_UNIT)
    return actions


def step_securetty(setup: Setup) -> List[str]:
    actions = []
    for rel in SECURETTY_FILES:
        found = setup.fs.read_with_stat(rel)
        if found is None:
            continue
        text, info = found
        missing = securetty_missing(text)
        if missing:
            new = text + ("" if not text or text.endswith("\n") else "\n") + "".join(f"{tty}\n" for tty in missing)
            mode = info.st_mode & 0o7777
            actions += _file_step(setup, rel, new, mode, "securetty (machinectl login)")
    return actions


# ---------------------------------------------------------------- entry points

def ensure_post_setup(module, root: str, params: dict, fresh: bool = False,
                      diffs: Optional[list] = None, dry: Optional[bool] = None) -> Tuple[bool, List[str]]:
    """Apply the first-boot preparation options to ``root``; (changed, actions in words).

    ``fresh`` marks a root this run just created (staging): only then are the
    machine-id, the clone identity files and SSH host keys reset, never on a root
    that booted. ``dry`` (default: check mode) decides and reports without writing.
    Raises SetupError, or rootfs.RootError when the root holds something refused.
    """
    try:
        with rootfs.RootFS(root) as fs:
            setup = Setup(module, fs, module.check_mode if dry is None else dry, diffs)
            actions = _steps(setup, params, fresh)
    except rootfs.RootError as exc:
        raise SetupError(str(exc)) from None
    except OSError as exc:
        # The root changed under us or holds an unexpected type; nothing outside it was touched.
        where = f" ({exc.filename})" if exc.filename else ""
        raise SetupError(f"preparing the root {root}: {exc.strerror or exc}{where}; nothing outside the root was "
                         "touched (container roots are untrusted)") from None
    return bool(actions), actions


def _steps(setup: Setup, params: dict, fresh: bool) -> List[str]:
    actions: List[str] = []
    if fresh and params.get("reset_machine_id", True):
        actions += step_machine_id(setup)
    if fresh and params.get("regenerate_ssh_host_keys", True):
        actions += step_ssh_host_keys(setup)
    if params.get("hostname"):
        actions += _file_step(setup, "etc/hostname", f"{params['hostname']}\n", 0o644, "hostname")
    if params.get("root_password") or params.get("root_password_hash"):
        actions += step_root_password(setup, params)
    if params.get("authorized_keys") is not None:
        actions += step_authorized_keys(setup, params["authorized_keys"])
    actions += step_network(setup, params)
    if params.get("enable_resolved"):
        actions += step_enable(setup, RESOLVED_UNIT)
    if params.get("securetty_fix"):
        actions += step_securetty(setup)
    return actions


def wants_post_setup(params: dict) -> bool:
    """Whether any option asks for post-setup of an existing root."""
    return any(params.get(key) for key in ("hostname", "root_password", "root_password_hash", "address",
                                           "address6", "network_links", "enable_networkd", "enable_resolved",
                                           "securetty_fix")) \
        or params.get("authorized_keys") is not None
