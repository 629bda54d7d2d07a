# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""First-boot preparation of a container root (post-setup), each step idempotent.

Every step decides from what is on disk, acts only outside check mode, and
returns the actions it took (or would take) in words. Paths are resolved inside
the root without following symlinks out of it: an image is untrusted data.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import secrets
import string
import tempfile
from typing import List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils import unitfile
from ansible_collections.corral.nspawn.plugins.module_utils.files import MANAGED_MARKER, ensure_file, read_text
from ansible_collections.corral.nspawn.plugins.module_utils.runner import run

HOST0_NETWORK = "etc/systemd/network/10-corral-host0.network"
SECURETTY_FILES = ("etc/securetty", "usr/share/factory/etc/securetty")
SECURETTY_TTYS = tuple(f"pts/{n}" for n in range(10))
NETWORKD_UNIT = "systemd-networkd.service"
RESOLVED_UNIT = "systemd-resolved.service"


class SetupError(Exception):
    """Post-setup cannot proceed; the message says why and what to do."""


# ---------------------------------------------------------------- pure helpers

def inside(root: str, rel: str) -> str:
    """Absolute path of ``rel`` under ``root``; refuses paths whose directory leaves the root or symlinks."""
    path = os.path.join(root, rel)
    real_root = os.path.realpath(root)
    parent = os.path.realpath(os.path.dirname(path))
    if parent != real_root and not parent.startswith(real_root + os.sep):
        raise SetupError(f"refusing to write {path}: its directory resolves to {parent}, outside the root {root}")
    if os.path.islink(path):
        raise SetupError(f"refusing to write {path}: it is a symlink (images are untrusted; remove the link)")
    return path


def host0_network(address: str, gateway: Optional[str] = None, dns: Optional[list] = None) -> str:
    """In-container networkd file giving host0 a static address (sorted before the stock DHCP one)."""
    iface = ipaddress.ip_interface(address)
    gw = gateway or str(next(iface.network.hosts()))
    network = [("Address", str(iface)), ("Gateway", gw)] + [("DNS", server) for server in dns or []]
    network += [("LinkLocalAddressing", "no"), ("IPv6AcceptRA", "no")]
    return unitfile.render([("Match", [("Virtualization", "container"), ("Name", "host0")]), ("Network", network)])


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


def hash_password(module, password: str, method: str = "6", salt: Optional[str] = None) -> str:
    """crypt(3) hash of ``password`` (the crypt module, else ``openssl passwd``); the secret goes by stdin."""
    salt = salt or "".join(secrets.choice(string.ascii_letters + string.digits + "./") for _index in range(16))
    hashed = _crypt(password, f"${method}${salt}$")
    if hashed:
        return hashed
    openssl = module.get_bin_path("openssl")
    if not openssl:
        raise SetupError("root_password: hashing needs Python's crypt module or the openssl command on the host; "
                         "give root_password_hash instead")
    out = run(module, [openssl, "passwd", f"-{method}", "-salt", salt, "-stdin"], data=password)[1]
    return out.strip()


def password_matches(module, password: str, crypted: Optional[str]) -> bool:
    spec = hash_salt(crypted)
    if spec is None:
        hashed = _crypt(password, crypted) if crypted and crypted.startswith("$") else None
        return bool(hashed) and hashed == crypted
    return hash_password(module, password, spec[0], spec[1]) == crypted


# ---------------------------------------------------------------- steps

def _file_step(module, root: str, rel: str, content: Optional[str], mode: int, label: str, diffs) -> List[str]:
    result = ensure_file(module, inside(root, rel), content, mode)
    if not result.changed:
        return []
    if diffs is not None and result.diff:
        diffs.append(result.diff)
    return [f"{label}: {result.action} {rel}"]


def step_machine_id(module, root: str, diffs) -> List[str]:
    """Empty /etc/machine-id: the container gets a new id on first boot (clones must not share one)."""
    actions = _file_step(module, root, "etc/machine-id", "", 0o444, "machine-id (emptied)", diffs)
    dbus = os.path.join(root, "var/lib/dbus/machine-id")
    if os.path.isfile(dbus) and not os.path.islink(dbus):
        actions.append("machine-id: remove var/lib/dbus/machine-id")
        if not module.check_mode:
            os.unlink(inside(root, "var/lib/dbus/machine-id"))
    return actions


def step_ssh_host_keys(module, root: str) -> List[str]:
    """Replace SSH host keys present in the root by new ones (clones must not share them)."""
    ssh_dir = inside(root, "etc/ssh")
    keys = sorted(glob.glob(os.path.join(ssh_dir, "ssh_host_*_key")))
    if not keys:
        return []
    keygen = module.get_bin_path("ssh-keygen")
    if not keygen:
        raise SetupError("regenerate_ssh_host_keys: the image has SSH host keys but ssh-keygen is not installed on "
                         "the host; install openssh-client or set regenerate_ssh_host_keys=false")
    if not module.check_mode:
        for path in glob.glob(os.path.join(ssh_dir, "ssh_host_*")):
            os.unlink(path)
        for key in keys:
            kind = os.path.basename(key)[len("ssh_host_"):-len("_key")]
            run(module, [keygen, "-q", "-t", kind, "-N", "", "-C", "root@container", "-f", key])
    return [f"ssh host keys: regenerate {', '.join(os.path.basename(k) for k in keys)}"]


def step_root_password(module, root: str, params: dict) -> List[str]:
    path = inside(root, "etc/shadow")
    text = read_text(path)
    if text is None:
        raise SetupError(f"root_password: {path} does not exist; is {root} a complete root?")
    current = shadow_root_hash(text)
    if params.get("root_password_hash"):
        wanted = params["root_password_hash"]
        if current == wanted:
            return []
    elif password_matches(module, params["root_password"], current):
        return []
    else:
        wanted = hash_password(module, params["root_password"])
    if not module.check_mode:
        _write_keeping_owner(module, path, shadow_with_root_hash(text, wanted))
    return ["root password: set (etc/shadow)"]


def _write_keeping_owner(module, path: str, content: str) -> None:
    """Atomic replace that keeps the file's owner, group and mode (shadow's group lives in the image)."""
    info = os.stat(path)
    fd, tmp = tempfile.mkstemp(prefix=".corral-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chown(tmp, info.st_uid, info.st_gid)
        os.chmod(tmp, info.st_mode & 0o7777)
        os.rename(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def step_authorized_keys(module, root: str, keys: List[str], diffs) -> List[str]:
    ssh_dir = inside(root, "root/.ssh")
    actions = []
    if not os.path.isdir(ssh_dir):
        actions.append("authorized_keys: create root/.ssh")
        if not module.check_mode:
            os.makedirs(ssh_dir, mode=0o700)
    if module.check_mode and not os.path.isdir(ssh_dir):
        return actions + ["authorized_keys: create root/.ssh/authorized_keys"]
    return actions + _file_step(module, root, "root/.ssh/authorized_keys", authorized_keys_text(keys), 0o600,
                                "authorized_keys", diffs)


def step_enable(module, root: str, unit: str) -> List[str]:
    """``systemctl --root`` enable (follows the unit's [Install] section, Also= included)."""
    systemctl = module.get_bin_path("systemctl")
    if not systemctl:
        raise SetupError(f"enabling {unit} in the image needs systemctl on the host")
    rc, out, _err = run(module, [systemctl, f"--root={root}", "is-enabled", unit], check=False)
    if out.strip() in ("enabled", "enabled-runtime", "static", "alias"):
        return []
    if out.strip() in ("", "not-found") and rc != 0 and not _unit_exists(root, unit):
        raise SetupError(f"{unit} is not installed in the image {root}; install systemd (networkd/resolved) in it")
    if not module.check_mode:
        run(module, [systemctl, f"--root={root}", "enable", unit])
    return [f"enable {unit} in the image"]


def _unit_exists(root: str, unit: str) -> bool:
    return any(os.path.lexists(os.path.join(root, d, unit))
               for d in ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system"))


def step_securetty(module, root: str, diffs) -> List[str]:
    actions = []
    for rel in SECURETTY_FILES:
        text = read_text(inside(root, rel))
        if text is None:
            continue
        missing = securetty_missing(text)
        if missing:
            new = text + ("" if not text or text.endswith("\n") else "\n") + "".join(f"{tty}\n" for tty in missing)
            mode = os.stat(os.path.join(root, rel)).st_mode & 0o7777
            actions += _file_step(module, root, rel, new, mode, "securetty (machinectl login)", diffs)
    return actions


def ensure_post_setup(module, root: str, params: dict, fresh: bool = False,
                      diffs: Optional[list] = None) -> Tuple[bool, List[str]]:
    """Apply the first-boot preparation options to ``root``; (changed, actions in words).

    ``fresh`` marks a root this run just created (staging): only then are the
    machine-id emptied and SSH host keys regenerated, never on a root that booted.
    """
    actions: List[str] = []
    if fresh and params.get("reset_machine_id", True):
        actions += step_machine_id(module, root, diffs)
    if fresh and params.get("regenerate_ssh_host_keys", True):
        actions += step_ssh_host_keys(module, root)
    if params.get("hostname"):
        actions += _file_step(module, root, "etc/hostname", f"{params['hostname']}\n", 0o644, "hostname", diffs)
    if params.get("root_password") or params.get("root_password_hash"):
        actions += step_root_password(module, root, params)
    if params.get("authorized_keys") is not None:
        actions += step_authorized_keys(module, root, params["authorized_keys"], diffs)
    if params.get("address"):
        actions += _file_step(module, root, HOST0_NETWORK,
                              host0_network(params["address"], params.get("gateway"), params.get("dns")),
                              0o644, "host0 address", diffs)
    if params.get("enable_networkd") or (params.get("enable_networkd") is None and params.get("address")):
        actions += step_enable(module, root, NETWORKD_UNIT)
    if params.get("enable_resolved"):
        actions += step_enable(module, root, RESOLVED_UNIT)
    if params.get("securetty_fix"):
        actions += step_securetty(module, root, diffs)
    return bool(actions), actions


def wants_post_setup(params: dict) -> bool:
    """Whether any option asks for post-setup of an existing root."""
    return any(params.get(key) for key in ("hostname", "root_password", "root_password_hash", "address",
                                           "enable_networkd", "enable_resolved", "securetty_fix")) \
        or params.get("authorized_keys") is not None
