# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container root filesystems: validate, read what is on disk, plan, build, remove.

A root is built in ``MACHINES_DIR/.corral/staging/NAME/root`` (same filesystem),
prepared there, and renamed to ``MACHINES_DIR/NAME`` only when complete, so an
interrupted run never leaves something that looks finished. The next run kills
processes still working in the staging dir, unmounts what they mounted there and
removes it before building again.

Everything corral keeps beside the roots lives in ``MACHINES_DIR/.corral/``, a
name no machine can have (machine names never start with a dot): staging and
backup dirs (each carries a build marker written when it is made; nothing
without one is ever discarded) and the build records ``records/NAME.json``
(written when corral built a root; only a root whose record matches it is ever
purged by the fleet). A container owns every file in its root, so nothing in a
root decides what the host deletes.

Public API (used by the image and fleet modules):
``IMAGE_OPTION_SPEC``, ``normalize(params)``, ``validate(params)``,
``ensure_image(module, params) -> dict``, ``ensure_post_setup(module, root, params)``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlparse

from ansible_collections.corral.nspawn.plugins.module_utils import images_backends as backends, rootfs, shared
from ansible_collections.corral.nspawn.plugins.module_utils.files import MANAGED_MARKER
from ansible_collections.corral.nspawn.plugins.module_utils.values import (
    authorized_key_error, crypt_hash_error, line_error,
)
from ansible_collections.corral.nspawn.plugins.module_utils import images_setup
from ansible_collections.corral.nspawn.plugins.module_utils.images_setup import SetupError, wants_post_setup  # noqa: F401 pylint: disable=unused-import
from ansible_collections.corral.nspawn.plugins.module_utils.images_setup_io import ensure_post_setup
from ansible_collections.corral.nspawn.plugins.module_utils.names import ifname_error, machine_name_error
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError, run

DEFAULT_MACHINES_DIR = shared.MACHINES_DIR
IMPORTD_DIR = "/var/lib/machines"  # systemd-importd always imports here
RECORD = ".corral-image"           # inside the root: the build id (legacy roots: how it was made)
STATE_DIR = ".corral"              # beside the roots; never a machine name (those cannot start with '.')
BUILD_MARKER = ".corral-build"     # inside every staging/backup dir corral made; only those are discarded
IMPORT_PREFIX = "corral-import-"   # importd names must be machine names: random per build, kept in the marker
CHECKSUM_ALGORITHMS = ("sha256", "sha384", "sha512", "sha1", "md5")
BTRFS_MAGIC = "btrfs"

IMAGE_OPTION_SPEC: Dict[str, dict] = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    machines_dir=dict(type="path", default=DEFAULT_MACHINES_DIR),
    source=dict(type="str", choices=list(backends.SOURCES)),
    force=dict(type="bool", default=False),
    suite=dict(type="str"),
    variant=dict(type="str"),
    components=dict(type="list", elements="str"),
    include=dict(type="list", elements="str"),
    exclude=dict(type="list", elements="str"),
    mirror=dict(type="str"),
    keyring=dict(type="path", no_log=False),
    arch=dict(type="str"),
    packages=dict(type="list", elements="str"),
    pacstrap_host_cache=dict(type="bool", default=True),
    pacstrap_init_keyring=dict(type="bool", default=True, no_log=False),
    releasever=dict(type="str"),
    repos=dict(type="list", elements="str"),
    mkosi_directory=dict(type="path"),
    extra_args=dict(type="list", elements="str"),
    path=dict(type="path"),
    url=dict(type="str"),
    checksum=dict(type="str"),
    validate_certs=dict(type="bool", default=True),
    importer=dict(type="str", choices=["auto", "importctl", "machinectl", "tar"], default="auto"),
    clone_from=dict(type="str"),
    hostname=dict(type="str"),
    reset_machine_id=dict(type="bool", default=True),
    regenerate_ssh_host_keys=dict(type="bool", default=True, no_log=False),
    root_password=dict(type="str", no_log=True),
    root_password_hash=dict(type="str", no_log=True),
    authorized_keys=dict(type="list", elements="str", no_log=False),
    enable_networkd=dict(type="bool"),
    enable_resolved=dict(type="bool", default=False),
    address=dict(type="str"),
    gateway=dict(type="str"),
    address6=dict(type="str"),
    gateway6=dict(type="str"),
    dns=dict(type="list", elements="str"),
    network_links=dict(type="list", elements="str"),
    securetty_fix=dict(type="bool", default=False),
    setup_running=dict(type="str", choices=["defer", "apply"], default="defer"),
)

IMAGE_MUTUALLY_EXCLUSIVE = [("root_password", "root_password_hash"), ("path", "url")]

# Options that belong to one group of sources only (anything else given with them is an error).
_OWNERS = {}
for _source, _keys in backends.SOURCE_KEYS.items():
    for _key in _keys:
        _OWNERS.setdefault(_key, set()).add(_source)
_OWNERS["validate_certs"] = {"tar", "raw"}
_OWNERS["importer"] = {"tar", "raw"}


class ImageError(Exception):
    """The image cannot be made as asked; the message names the option and what is allowed."""


# ---------------------------------------------------------------- validation (pure)

def normalize(params: dict) -> dict:
    """``params`` with every option of IMAGE_OPTION_SPEC present (defaults filled in)."""
    out = dict(params)
    for key, spec in IMAGE_OPTION_SPEC.items():
        if out.get(key) is None:
            out[key] = spec.get("default")
    return out


def _given(params: dict, key: str) -> bool:
    value = params.get(key)
    default = IMAGE_OPTION_SPEC.get(key, {}).get("default")
    return value is not None and value != default


def validate(params: dict) -> List[str]:
    """Every problem with the options, before anything is read or changed."""
    errors = []
    error = machine_name_error(params.get("name"))
    if error:
        errors.append(f"name: {error}")
    if not os.path.isabs(params.get("machines_dir") or ""):
        errors.append(f"machines_dir: {params.get('machines_dir')!r} must be an absolute path")
    if params.get("state") == "absent":
        return errors
    source = params.get("source")
    for key, owners in _OWNERS.items():
        if _given(params, key) and source not in owners:
            errors.append(f"{key}: only used with source={'/'.join(sorted(owners))}, not with source={source}")
    if source:
        errors += _validate_source(params, source)
    errors += _validate_setup(params, source)
    return errors


# Ubuntu release code names debootstrap knows (its scripts directory); a Debian host's default mirror has none.
UBUNTU_SUITES = ("trusty", "xenial", "bionic", "focal", "jammy", "kinetic", "lunar", "mantic", "noble",
                 "oracular", "plucky", "questing")


def _require(params: dict, keys, source: str) -> List[str]:
    return [f"{key}: required with source={source}" for key in keys if not params.get(key)]


def _validate_source(params: dict, source: str) -> List[str]:
    if source == "debootstrap":
        errors = _require(params, ["suite"], source)
        if params.get("suite") in UBUNTU_SUITES and not params.get("mirror"):
            errors.append(f"mirror: required for the Ubuntu suite {params['suite']!r} (debootstrap's default mirror is "
                          "the host distribution's, which has no Ubuntu suites): give the URL of an Ubuntu archive, and "
                          "install the Ubuntu archive keyring on the host (Debian: package ubuntu-keyring; or give "
                          "keyring: PATH)")
        if params.get("variant") and not re.match(r"^[a-z][a-z0-9-]*$", params["variant"]):
            errors.append(f"variant: {params['variant']!r} is not a debootstrap variant (e.g. minbase, buildd)")
        return errors
    if source == "dnf":
        return _require(params, ["releasever", "packages"], source)
    if source == "zypper":
        return _require(params, ["packages"], source)
    if source == "mkosi":
        return _require(params, ["mkosi_directory"], source)
    if source in backends.IMPORT_SOURCES:
        return _validate_import(params, source)
    if source == "clone":
        errors = _require(params, ["clone_from"], source)
        if params.get("clone_from"):
            error = machine_name_error(params["clone_from"])
            if error:
                errors.append(f"clone_from: {error} (give the name of an image in machines_dir)")
            elif params["clone_from"] == params.get("name"):
                errors.append("clone_from: an image cannot be cloned from itself")
        return errors
    if source == "directory":
        errors = _require(params, ["path"], source)
        if params.get("path") and not os.path.isabs(params["path"]):
            errors.append(f"path: {params['path']!r} must be an absolute path")
        return errors
    return []


def _validate_import(params: dict, source: str) -> List[str]:
    errors = []
    if bool(params.get("path")) == bool(params.get("url")):
        errors.append(f"path/url: give exactly one of them with source={source}")
    if params.get("url") and urlparse(params["url"]).scheme not in ("http", "https", "file"):
        errors.append(f"url: {params['url']!r} must be an http://, https:// or file:// URL")
    if params.get("checksum"):
        algorithm, _sep, digest = params["checksum"].partition(":")
        if algorithm not in CHECKSUM_ALGORITHMS or not re.fullmatch(r"[0-9a-fA-F]+", digest or ""):
            errors.append(f"checksum: {params['checksum']!r} must be ALGORITHM:HEXDIGEST with ALGORITHM one of "
                          f"{', '.join(CHECKSUM_ALGORITHMS)}")
    if source == "raw" and wants_post_setup(params):
        errors.append("source=raw: post-setup options (hostname, root_password, authorized_keys, address, ...) "
                      "need a directory image; use source=tar or prepare the raw image yourself")
    return errors


def _validate_setup(params: dict, source: Optional[str]) -> List[str]:
    errors = []
    if params.get("hostname"):
        error = machine_name_error(params["hostname"])
        if error:
            errors.append(f"hostname: {error}")
    if params.get("root_password_hash"):
        # checked for its real form: ':' or a line break would add lines to the image's /etc/shadow
        error = crypt_hash_error(params["root_password_hash"])
        if error:
            errors.append(f"root_password_hash: the value (not shown, it is a secret) {error}")
    errors += _validate_address(params) + _validate_network(params)
    for index, key in enumerate(params.get("authorized_keys") or []):
        error = authorized_key_error(key.strip())
        if error:
            errors.append(f"authorized_keys[{index}]: {key!r} {error}; give one key per list item")
    return errors


def _ip(value, parse):
    """``parse`` (ipaddress.ip_*) after the line check: ipaddress takes any text as an IPv6 scope id."""
    if not isinstance(value, str) or line_error(value):
        raise ValueError(value)
    return parse(value)


def _validate_network(params: dict) -> List[str]:
    """address6/gateway6 (IPv6) and network_links (container-side interface names, a trailing * matches a prefix)."""
    errors = []
    if params.get("address6"):
        try:
            iface = _ip(params["address6"], ipaddress.ip_interface)
            if iface.version != 6 or "/" not in params["address6"] or iface.network.prefixlen == 128:
                raise ValueError
        except ValueError:
            errors.append(f"address6: {params['address6']!r} must be an IPv6 address with prefix length, "
                          "e.g. fd00:88::10/64")
    elif params.get("gateway6"):
        errors.append("gateway6: only used together with address6")
    if params.get("gateway6"):
        try:
            if _ip(params["gateway6"], ipaddress.ip_address).version != 6:
                raise ValueError
        except ValueError:
            errors.append(f"gateway6: {params['gateway6']!r} is not an IPv6 address")
    for index, link in enumerate(params.get("network_links") or []):
        name = link[:-1] if isinstance(link, str) and link.endswith("*") else link
        if ifname_error(name):
            errors.append(f"network_links[{index}]: {link!r} {ifname_error(name)} (a container-side interface name "
                          "such as host0, mv-eth0 or eth1; a trailing * matches names starting with it)")
    return errors


def _validate_address(params: dict) -> List[str]:
    errors = []
    iface = None
    if params.get("address"):
        try:
            iface = _ip(params["address"], ipaddress.ip_interface)
            if "/" not in params["address"] or iface.network.prefixlen == iface.max_prefixlen:
                raise ValueError
        except ValueError:
            errors.append(f"address: {params['address']!r} must be an address with prefix length, e.g. 10.0.0.5/24")
            iface = None
    elif params.get("gateway") or params.get("dns"):
        errors.append("gateway/dns: only used together with address")
    if params.get("gateway"):
        try:
            gateway = _ip(params["gateway"], ipaddress.ip_address)
            if iface is not None and gateway.version != iface.version:
                errors.append(f"gateway: {params['gateway']} is not of the same IP version as address")
        except ValueError:
            errors.append(f"gateway: {params['gateway']!r} is not an IP address")
    for server in params.get("dns") or []:
        try:
            _ip(server, ipaddress.ip_address)
        except ValueError:
            errors.append(f"dns: {server!r} is not an IP address")
    return errors


# ---------------------------------------------------------------- paths and current state

@dataclass
class Paths:
    machines_dir: str
    name: str
    import_name: str = ""  # importd name of this build (random, recorded in the staging marker)

    @property
    def root(self) -> str:
        return os.path.join(self.machines_dir, self.name)

    @property
    def raw(self) -> str:
        return self.root + ".raw"

    @property
    def state_dir(self) -> str:
        return os.path.join(self.machines_dir, STATE_DIR)

    @property
    def staging(self) -> str:
        return os.path.join(self.state_dir, "staging", self.name)

    @property
    def old(self) -> str:
        return os.path.join(self.state_dir, "old", self.name)

    @property
    def record(self) -> str:
        return os.path.join(self.state_dir, "records", f"{self.name}.json")

    def legacy_leftovers(self) -> List[str]:
        """Staging/backup dirs of corral.nspawn before 0.2 (no build marker: reported, never removed)."""
        candidates = [os.path.join(self.machines_dir, f".corral-{kind}-{self.name}") for kind in ("staging", "old")]
        return [p for p in candidates if os.path.lexists(p)]


def new_import_name() -> str:
    """A fresh importd image name for one build (importd only takes valid machine names)."""
    return IMPORT_PREFIX + secrets.token_hex(8)


@dataclass
class Current:
    exists: bool = False
    kind: str = "absent"           # absent | directory | raw | symlink
    target: Optional[str] = None   # where a symlink points
    record: Optional[dict] = None  # source options it was built with
    leftovers: List[str] = field(default_factory=list)  # our staging/backup dirs (build marker checked)
    foreign: List[str] = field(default_factory=list)    # at our staging paths but without our marker
    legacy: List[str] = field(default_factory=list)     # old-style leftovers, reported only
    running: bool = False
    built: bool = False            # corral built this very root (build record beside it matches)
    built_reason: str = ""         # why not, in words


def _read_confined(root: str, rel: str) -> Optional[str]:
    """A small regular file inside an untrusted root, read without following its symlinks."""
    try:
        with rootfs.RootFS(root) as fs:
            return fs.read_text(rel, limit=64 * 1024)
    except (OSError, rootfs.RootError, UnicodeDecodeError):
        return None


def _json_lines(text: Optional[str]) -> Optional[dict]:
    if text is None:
        return None
    try:
        data = json.loads("".join(line for line in text.splitlines(keepends=True) if not line.startswith("#")))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def read_record(root: str) -> Optional[dict]:
    """The in-root record (untrusted: the container may have written it), read through the root-confined API."""
    return _json_lines(_read_confined(root, RECORD))


def build_id_text(build_id: str) -> str:
    """The in-root half of the build record: only the id, so a copy of a root is told apart from it."""
    return f"# {MANAGED_MARKER}: build id of this root (its record is kept by the host).\n" + \
        json.dumps({"build_id": build_id}) + "\n"


def read_host_record(paths: Paths) -> Optional[dict]:
    """The build record beside the roots (host-owned dir no container reaches)."""
    try:
        with open(paths.record, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def verify_built(paths: Paths, kind: str, record: Optional[dict]) -> Tuple[bool, str]:
    """(True, "") when this very root is the one corral built, else (False, why).

    The record names the root's inode (a root replaced by hand has another one)
    and a random build id that is also inside the root (an inode reused for a
    hand-made root does not carry it).
    """
    if record is None:
        return False, "no corral.nspawn build record"
    path = paths.raw if kind == "raw" else paths.root
    try:
        st = os.lstat(path)
    except OSError:
        return False, "it does not exist"
    if kind not in ("directory", "raw") or record.get("kind") != kind or \
            [st.st_dev, st.st_ino] != [record.get("dev"), record.get("ino")]:
        return False, "it is not the root corral.nspawn built (replaced since)"
    if kind == "directory":
        inside = _json_lines(_read_confined(path, RECORD)) or {}
        if not record.get("build_id") or inside.get("build_id") != record.get("build_id"):
            return False, "its build id does not match the build record"
    return True, ""


def write_host_record(paths: Paths, kind: str, params: dict, build_id: str) -> None:
    """Record beside the roots that corral built this root (after it is in place: its inode is final)."""
    st = os.lstat(paths.raw if kind == "raw" else paths.root)
    data = {"name": paths.name, "kind": kind, "dev": st.st_dev, "ino": st.st_ino, "build_id": build_id,
            "source": backends.source_record(params), "built": int(time.time())}
    directory = os.path.dirname(paths.record)
    _private_dirs(paths, directory)
    tmp = f"{paths.record}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(tmp, paths.record)
    _fsync_dir(directory)


def drop_host_record(paths: Paths) -> None:
    try:
        os.unlink(paths.record)
    except FileNotFoundError:
        pass


def _private_dirs(paths: Paths, directory: str) -> None:
    """Create machines_dir/.corral/... (0700); refuse a symlink or file where our dir belongs."""
    for path in (paths.state_dir, directory):
        if os.path.lexists(path) and (os.path.islink(path) or not os.path.isdir(path)):
            raise ImageError(f"{path} is not a directory (a symlink or file where corral.nspawn keeps its state); "
                             "refusing to use it")
        os.makedirs(path, mode=0o700, exist_ok=True)


def read_marker(path: str) -> Optional[dict]:
    """The build marker of one of our staging/backup dirs (None: not ours)."""
    marker = os.path.join(path, BUILD_MARKER)
    if os.path.islink(path) or not os.path.isdir(path) or os.path.islink(marker) or not os.path.isfile(marker):
        return None
    try:
        with open(marker, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("name") == os.path.basename(path) else None


def make_marked_dir(paths: Paths, path: str, import_name: str = "") -> None:
    """A new staging/backup dir with our build marker written at once (only marked dirs are ever discarded)."""
    _private_dirs(paths, os.path.dirname(path))
    os.mkdir(path, 0o700)
    fd = os.open(os.path.join(path, BUILD_MARKER), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"name": paths.name, "import_name": import_name, "pid": os.getpid()}, handle)
        handle.flush()
        os.fsync(handle.fileno())


def is_running(module, name: str, known: Optional[bool] = None) -> bool:
    """Registered with machined, or its systemd-nspawn@ unit active (works without machined too).

    ``known``: the caller already read the unit's state (the fleet's one batched ``show``), so
    no command per machine is needed.
    """
    if os.path.exists(f"/run/systemd/machines/{name}"):
        return True
    if known is not None:
        return known
    systemctl = module.get_bin_path("systemctl")
    if not systemctl:
        return False
    out = run(module, [systemctl, "is-active", f"systemd-nspawn@{name}.service"], check=False)[1]
    return out.strip() in ("active", "activating", "reloading", "deactivating")


def read_current(module, paths: Paths, running: Optional[bool] = None) -> Current:
    current = Current(running=is_running(module, paths.name, running), legacy=paths.legacy_leftovers())
    for path in (paths.staging, paths.old):
        if os.path.lexists(path):
            (current.leftovers if read_marker(path) is not None else current.foreign).append(path)
    if os.path.islink(paths.root):
        current.exists, current.kind, current.target = True, "symlink", os.readlink(paths.root)
    elif os.path.isdir(paths.root):
        current.exists, current.kind = True, "directory"
    elif os.path.isfile(paths.raw):
        current.exists, current.kind = True, "raw"
    if current.exists:
        record = read_host_record(paths)
        current.built, current.built_reason = verify_built(paths, current.kind, record)
        # Drift is compared with what corral recorded; a legacy root has only its in-root record (untrusted,
        # used for the drift warning only, never to decide a deletion).
        legacy = read_record(paths.root) if current.kind == "directory" and record is None else None
        current.record = (record or {}).get("source") if current.built else (
            legacy if legacy and "source" in legacy else None)
    return current


# ---------------------------------------------------------------- plan (pure)

@dataclass
class Plan:
    action: str = "none"        # none | create | rebuild | remove
    cleanup: List[str] = field(default_factory=list)
    stop: bool = False
    warnings: List[str] = field(default_factory=list)
    changes: List[str] = field(default_factory=list)


def plan(params: dict, paths: Paths, current: Current) -> Plan:
    """Decide what to do; raises ImageError for what must not be done."""
    if current.foreign:
        raise ImageError(f"{', '.join(current.foreign)}: not made by corral.nspawn (no build marker {BUILD_MARKER} in "
                         "it); refusing to remove or reuse it - move it away by hand")
    todo = Plan(cleanup=list(current.leftovers))
    todo.changes += [f"remove leftovers of an interrupted build: {p}" for p in current.leftovers]
    todo.warnings += [f"{p}: left by an older corral.nspawn build (it has no build marker, so it is not removed); "
                      "delete it by hand once nothing uses it" for p in current.legacy]
    if params["state"] == "absent":
        return _plan_absent(params, paths, current, todo)
    if not current.exists:
        if not params.get("source"):
            raise ImageError(f"source: required to create {paths.root} (it does not exist)")
        todo.action = "create"
        todo.changes.append(f"create {_target(paths, params)} from {describe_source(params)}")
        return todo
    if current.kind == "symlink":
        target = os.path.realpath(paths.root)
        if not target.startswith(os.path.realpath(paths.machines_dir) + os.sep):
            raise ImageError(f"{paths.root} is a symlink to {current.target}, outside machines_dir; "
                             "refusing to manage it (remove the link or point machines_dir there)")
    if params.get("source"):
        differences = backends.drift(current.record, backends.source_record(params))
        unknown = current.record is None and current.kind == "directory"
        if params["force"] and (differences or unknown):
            if current.running:
                raise ImageError(f"force: {params['name']} is running; stop it before rebuilding its root")
            todo.action = "rebuild"
            why = "; ".join(differences) or "not built by corral.nspawn"
            todo.changes.append(f"rebuild {paths.root} from {describe_source(params)} (force: {why})")
        elif differences:
            todo.warnings.append(f"image {params['name']} exists and was built with other source options "
                                 f"({'; '.join(differences)}); not rebuilt (force=true rebuilds it)")
    return todo


def _plan_absent(params: dict, paths: Paths, current: Current, todo: Plan) -> Plan:
    if not current.exists:
        return todo
    if current.running:
        if not params["force"]:
            raise ImageError(f"state=absent: {params['name']} is running; stop it first or set force=true "
                             "(which terminates it)")
        todo.stop = True
        todo.changes.append(f"terminate running machine {params['name']}")
    todo.action = "remove"
    if current.kind == "symlink":
        todo.changes.append(f"remove symlink {paths.root} (its target {current.target} is left alone)")
    else:
        todo.changes.append(f"remove {paths.raw if current.kind == 'raw' else paths.root}")
    return todo


def _target(paths: Paths, params: dict) -> str:
    return paths.raw if params.get("source") == "raw" else paths.root


def describe_source(params: dict) -> str:
    source = params["source"]
    detail = {"debootstrap": params.get("suite"), "clone": params.get("clone_from"),
              "directory": params.get("path"), "tar": params.get("path") or params.get("url"),
              "raw": params.get("path") or params.get("url"), "mkosi": params.get("mkosi_directory"),
              "dnf": f"releasever {params.get('releasever')}"}.get(source)
    return f"{source} ({detail})" if detail else source


def predicted_setup(module, params: dict, paths: Paths) -> List[str]:
    """Check mode: the preparation a new root will get, in the words the real run will use.

    A copy (clone, directory) starts as its source, so preparing the source in a dry run gives
    exactly the real run's actions. ``_source_planned``: the source does not exist yet (a template the
    fleet builds earlier in the same run); ``_predict_from`` then names what it will be a copy of, if
    known. Other sources: the generic prediction.
    """
    source = params.get("_predict_from")
    if not params.get("_source_planned") and params["source"] in backends.COPY_SOURCES:
        source = copy_source(params, paths)
    if source and os.path.isdir(source):
        try:
            # a template built in this run had its own fresh reset (machine-id, host keys) before the copy
            return ensure_post_setup(module, source, params, fresh=not params.get("_source_planned"), dry=True)[1]
        except (SetupError, OSError):
            pass  # unreadable source: the real run reports it; predict the generic way
    return images_setup.predict(params)


def setup_words(params: dict, actions: List[str]) -> List[str]:
    """What a fresh build reports for its preparation: the actions done for a copy (check mode read its
    source), the generic words for an archive or a bootstrap, whose content check mode cannot read."""
    return actions if params["source"] in backends.COPY_SOURCES else images_setup.predict(params)


# ---------------------------------------------------------------- processes, mounts, filesystems

def _unescape(field_text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_text)


def parse_mountinfo(text: str) -> List[tuple]:
    """[(mount point, fs type)] from /proc/self/mountinfo text."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if sep and len(fields) >= 5 and right.split():
            mounts.append((_unescape(fields[4]), right.split()[0]))
    return mounts


def _mountinfo() -> List[tuple]:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return parse_mountinfo(handle.read())


def mounts_under(path: str, mounts: Optional[List[tuple]] = None) -> List[str]:
    """Mount points at or below ``path``, deepest first (the order to unmount them)."""
    real = os.path.realpath(path)
    found = [point for point, _fstype in (mounts if mounts is not None else _mountinfo())
             if point == real or point.startswith(real + os.sep)]
    return sorted(set(found), key=lambda p: (-p.count(os.sep), p))


def fs_type(path: str, mounts: Optional[List[tuple]] = None) -> str:
    """File system type of the mount holding ``path`` (longest mount point prefix)."""
    real = os.path.realpath(path)
    best, kind = "", "unknown"
    for point, fstype in mounts if mounts is not None else _mountinfo():
        if (real == point or real.startswith(point.rstrip(os.sep) + os.sep)) and len(point) >= len(best):
            best, kind = point, fstype
    return kind


def is_subvolume(path: str) -> bool:
    """A btrfs subvolume's top directory always has inode 256."""
    try:
        return not os.path.islink(path) and os.stat(path).st_ino == 256 and fs_type(path) == BTRFS_MAGIC
    except OSError:
        return False


def path_uses(path: str, argv: List[str], root: str, cwd: str) -> bool:
    """Whether a process (its argv, root and cwd) works in ``path`` (pure)."""
    def within(value: str) -> bool:
        return value == path or value.startswith(path + os.sep)
    return any(within(arg) for arg in argv) or within(root) or within(cwd)


def processes_using(path: str) -> List[int]:
    """PIDs of processes left working in ``path`` (e.g. debootstrap and its chrooted dpkg after a kill -9)."""
    real, pids = os.path.realpath(path), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = [a.decode("utf-8", "replace") for a in handle.read().split(b"\0") if a]
            root, cwd = os.readlink(f"/proc/{entry}/root"), os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if path_uses(real, argv, root, cwd):
            pids.append(int(entry))
    return pids


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _kill_all(pids: List[int], timeout: float = 10) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)


def _unmount_all(module, path: str) -> None:
    for point in mounts_under(path):
        if run(module, ["umount", point], check=False)[0] != 0:
            run(module, ["umount", "--lazy", point], check=False)
    left = mounts_under(path)
    if left:
        raise ImageError(f"cannot remove {path}: still mounted: {', '.join(left)}")


def remove_tree(module, path: str) -> None:
    """Remove a file, a symlink (never its target), a subvolume or a directory tree (no symlinks followed)."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif is_subvolume(path) and module.get_bin_path("btrfs"):
        # Instant for a plain subvolume; one holding nested subvolumes is emptied file by file
        # (root may rmdir empty subvolumes since Linux 4.18).
        if run(module, backends.remove_subvolume(path), check=False)[0] != 0:
            shutil.rmtree(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def discard(module, path: str) -> None:
    """Remove our own staging/backup dir: stop processes still in it, unmount what they mounted, delete it.

    Only a dir carrying our build marker is ever touched (a live machine is never one of them).
    """
    marker = read_marker(path)
    if marker is None:
        raise ImageError(f"{path}: no corral.nspawn build marker in it; not removed")
    imported = marker.get("import_name") or ""
    if imported.startswith(IMPORT_PREFIX) and machine_name_error(imported) is None:
        _discard_import(module, imported)
    _kill_all(processes_using(path))
    _unmount_all(module, path)
    remove_tree(module, path)


def _discard_import(module, name: str) -> None:
    """What an interrupted importd import of this build left in /var/lib/machines (the name is ours, random)."""
    leftovers = [p for p in (os.path.join(IMPORTD_DIR, name), os.path.join(IMPORTD_DIR, name + ".raw"))
                 if os.path.lexists(p)]
    if leftovers and is_running(module, name):
        module.warn(f"{name}: a machine of that name runs; the import leftover {leftovers[0]} is not removed")
        return
    for path in leftovers:
        if not os.path.islink(path):
            _kill_all(processes_using(path))
            _unmount_all(module, path)
        remove_tree(module, path)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- tools and importers

def choose_importer(module, params: dict, paths: Paths) -> str:
    """importctl (systemd 256+), machinectl (systemd-importd, booted host), or plain tar."""
    wanted, source = params["importer"], params["source"]
    importd_ok = paths.machines_dir.rstrip("/") == IMPORTD_DIR
    if wanted in ("importctl", "machinectl"):
        if not importd_ok:
            raise ImageError(f"importer={wanted}: systemd-importd imports only into {IMPORTD_DIR}, not into "
                             f"machines_dir={paths.machines_dir}; use importer=tar or importer=auto")
        return wanted
    if wanted == "auto" and importd_ok and os.path.isdir("/run/systemd/system"):
        for tool in ("importctl", "machinectl"):
            if module.get_bin_path(tool):
                return tool
    if source == "raw":
        raise ImageError("source=raw needs systemd-importd (importctl or machinectl import-raw) on a host booted "
                         f"with systemd, and machines_dir={IMPORTD_DIR}")
    return "tar"


def copy_method(src: str, machines_dir: str) -> str:
    """btrfs snapshot when both the source and the machines dir are btrfs, else cp --reflink=auto."""
    if is_subvolume(src) and fs_type(machines_dir) == BTRFS_MAGIC:
        return "snapshot"
    return "copy"


def copy_source(params: dict, paths: Paths) -> str:
    if params["source"] == "clone":
        return os.path.join(paths.machines_dir, params["clone_from"])
    return params["path"]


def check_tools(module, params: dict, paths: Paths, warnings: List[str]) -> None:
    """Fail before any change when the host lacks what the source needs."""
    source = params["source"]
    if source in backends.TOOLS and not module.get_bin_path(backends.TOOLS[source]):
        raise ImageError(f"source={source} needs the {backends.TOOLS[source]!r} command on the host, which is not "
                         f"installed (not found in PATH); install it or choose another source")
    if source in backends.IMPORT_SOURCES:
        tool = choose_importer(module, params, paths)
        if not module.get_bin_path(tool):
            raise ImageError(f"source={source} with importer={tool}: {tool!r} is not installed on the host")
        if params.get("path") and not os.path.isfile(params["path"]):
            raise ImageError(f"path: {params['path']} does not exist or is not a file")
    if source == "clone" and is_running(module, params["clone_from"]):
        raise ImageError(f"clone_from: {params['clone_from']} is running; a running container owns its root and could "
                         "make the copy read host files through links it swaps in; stop it, or clone from a template "
                         "that is never booted")
    if source in backends.COPY_SOURCES:
        src = copy_source(params, paths)
        if not os.path.isdir(src):
            message = f"{'clone_from' if source == 'clone' else 'path'}: {src} is not an existing directory"
            if module.check_mode and source == "clone":
                if not params.get("_source_planned"):   # the fleet builds it earlier in the same run: no warning
                    warnings.append(message + " (yet); a real run fails unless an earlier task creates it")
            else:
                raise ImageError(message)


def build_method(module, params: dict, paths: Paths) -> str:
    """How a root of this source will be made, in words (returned as ``method``)."""
    source = params["source"]
    if source in backends.IMPORT_SOURCES:
        importer = choose_importer(module, params, paths)
        return f"{importer} import-{source}" if importer != "tar" else "tar extract"
    if source in backends.COPY_SOURCES:
        src = copy_source(params, paths)
        if not os.path.isdir(src):
            return "copy"
        return "btrfs snapshot" if copy_method(src, paths.machines_dir) == "snapshot" else "cp --reflink=auto"
    return source


def _guarded(module, argv: List[str]) -> List[str]:
    """Children die with the module (a killed run must not leave a builder writing into staging)."""
    setpriv = module.get_bin_path("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] + argv if setpriv else argv


# ---------------------------------------------------------------- making a root in staging

def fetch(module, params: dict, staging: str) -> str:
    """Local path of the archive (downloaded into staging for a URL), checksum verified."""
    url = params.get("url")
    if not url:
        local = params["path"]
    elif url.startswith("file://"):
        local = urlparse(url).path
    else:
        from ansible.module_utils.urls import open_url
        local = os.path.join(staging, "download-" + (os.path.basename(urlparse(url).path) or "image"))
        response = open_url(url, validate_certs=params["validate_certs"], timeout=60)
        with open(local, "wb") as handle:
            shutil.copyfileobj(response, handle, 1024 * 1024)
    if params.get("checksum"):
        verify_checksum(local, params["checksum"])
    return local


def verify_checksum(path: str, checksum: str) -> None:
    algorithm, _sep, expected = checksum.partition(":")
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    if digest.hexdigest().lower() != expected.lower():
        raise ImageError(f"checksum: {path} has {algorithm}:{digest.hexdigest()}, expected {checksum}; nothing imported")


def new_root_dir(module, machines_dir: str, target: str) -> None:
    """An empty root: a btrfs subvolume where machines_dir is btrfs (so it can be snapshotted later), else a dir."""
    if fs_type(machines_dir) == BTRFS_MAGIC and module.get_bin_path("btrfs"):
        run(module, backends.create_subvolume(target))
        os.chmod(target, 0o755)
    else:
        os.mkdir(target, 0o755)


def make_root(module, params: dict, paths: Paths, target: str) -> None:
    """Build the root of ``params['source']`` at ``target`` (inside the staging dir)."""
    source = params["source"]
    if source in backends.BUILDERS:
        if source != "mkosi":
            new_root_dir(module, paths.machines_dir, target)
        for argv in backends.bootstrap_commands(params, target):
            run(module, _guarded(module, [module.get_bin_path(argv[0])] + argv[1:]))
    elif source in backends.IMPORT_SOURCES:
        archive = fetch(module, params, os.path.dirname(target))
        importer = choose_importer(module, params, paths)
        if importer == "tar":
            new_root_dir(module, paths.machines_dir, target)
            run(module, _guarded(module, backends.tar_extract(archive, target)))
        else:
            for argv in backends.importer_commands(importer, source, archive, paths.import_name):
                run(module, argv)
            imported = os.path.join(IMPORTD_DIR, paths.import_name + (".raw" if source == "raw" else ""))
            os.rename(imported, target)
    else:
        src = copy_source(params, paths)
        method = copy_method(src, paths.machines_dir)
        if method == "snapshot":
            try:
                run(module, _guarded(module, backends.copy_commands(method, src, target)[0]))
                return
            except CommandError:
                remove_tree(module, target)  # e.g. another btrfs file system: copy instead
        new_root_dir(module, paths.machines_dir, target)
        run(module, _guarded(module, backends.copy_commands("copy", src, target)[0]))


def build(module, params: dict, paths: Paths, todo: Plan, timings: dict) -> List[str]:
    """Staging build, post-setup in staging, then rename into place; staging is removed on any failure."""
    os.makedirs(paths.machines_dir, mode=0o700, exist_ok=True)
    build_id = secrets.token_hex(16)
    paths.import_name = new_import_name() if params["source"] in backends.IMPORT_SOURCES else ""
    make_marked_dir(paths, paths.staging, paths.import_name)
    raw = params["source"] == "raw"
    target = os.path.join(paths.staging, "root.raw" if raw else "root")
    actions: List[str] = []
    try:
        started = time.monotonic()
        make_root(module, params, paths, target)
        timings["build"] = round(time.monotonic() - started, 3)
        started = time.monotonic()
        if not raw:
            actions += setup_words(params, ensure_post_setup(module, target, params, fresh=True)[1])
            # Never open(target/RECORD): an imported tarball may have put a symlink there.
            with rootfs.RootFS(target) as fs:
                fs.write(RECORD, build_id_text(build_id), 0o644, owner=(0, 0))
        timings["setup"] = round(time.monotonic() - started, 3)
        swap_into_place(module, paths, target, paths.raw if raw else paths.root, todo.action == "rebuild")
        write_host_record(paths, "raw" if raw else "directory", params, build_id)
    finally:
        if os.path.lexists(paths.staging):
            discard(module, paths.staging)
    return actions


def swap_into_place(module, paths: Paths, built: str, final: str, replace: bool) -> None:
    if replace:
        make_marked_dir(paths, paths.old)
        os.rename(final, os.path.join(paths.old, os.path.basename(built)))
        drop_host_record(paths)
    os.rename(built, final)
    _fsync_dir(paths.machines_dir)
    if replace:
        discard(module, paths.old)


# ---------------------------------------------------------------- removal

def stop_machine(module, name: str, timeout: float = 60) -> None:
    machinectl = module.get_bin_path("machinectl")
    if machinectl and os.path.exists(f"/run/systemd/machines/{name}"):
        run(module, [machinectl, "terminate", name], check=False)
    systemctl = module.get_bin_path("systemctl")
    if systemctl:
        run(module, [systemctl, "stop", f"systemd-nspawn@{name}.service"], check=False)
    deadline = time.monotonic() + timeout
    while is_running(module, name):
        if time.monotonic() > deadline:
            raise ImageError(f"force: {name} is still running {timeout:.0f} s after terminate; not removed")
        time.sleep(0.5)


def remove_image(module, paths: Paths, current: Current) -> None:
    """state=absent: the user named this root, so it goes whether or not corral built it; its record too."""
    drop_host_record(paths)
    if current.kind == "symlink":
        os.unlink(paths.root)
        return
    path = paths.raw if current.kind == "raw" else paths.root
    if current.kind == "directory":
        busy = processes_using(path)
        mounted = mounts_under(path)
        if busy or mounted:
            raise ImageError(f"state=absent: {path} is in use (processes {busy}, mounts {mounted}); "
                             "stop what uses it first")
    remove_tree(module, path)
    _fsync_dir(paths.machines_dir)


def purge_built(module, machines_dir: str, name: str) -> dict:
    """The fleet's purge: remove a root only when corral built this very root; honours check mode.

    Returns ``removed`` (bool), ``path`` and ``kept`` (why a root that exists was kept, else "").
    A root corral did not build (hand-made, imported with machinectl, adopted) is never deleted here.
    """
    paths = Paths(machines_dir.rstrip("/") or "/", name)
    current = read_current(module, paths)
    path = paths.raw if current.kind == "raw" else paths.root
    if not current.exists or not current.built:
        if not current.exists and not module.check_mode:
            drop_host_record(paths)
        return {"removed": False, "path": path, "kept": current.built_reason if current.exists else ""}
    if not module.check_mode:
        remove_image(module, paths, current)
    return {"removed": True, "path": path, "kept": ""}


# ---------------------------------------------------------------- entry point

def _state_line(current: Current, params: dict) -> str:
    if not current.exists:
        return "absent"
    built = f", built from {describe_source(current.record)}" if current.record else ""
    return f"{current.kind}{built}"


def ensure_image(module, params: dict) -> dict:
    """Reconcile one image (state present/absent) and its post-setup; honours check and diff mode.

    Returns changed, created, rebuilt, removed, image_path, method, changes (words), restart_required,
    elapsed (seconds), timings and diff (a list of before/after dicts, empty when unchanged).
    Warnings (drift) go through module.warn.
    Raises ImageError, SetupError or CommandError; nothing is changed before validation passed.
    """
    started = time.monotonic()
    params = normalize(params)
    errors = validate(params)
    if errors:
        raise ImageError("; ".join(errors))
    paths = Paths(params["machines_dir"].rstrip("/") or "/", params["name"])
    current = read_current(module, paths, params.get("_running"))
    todo = plan(params, paths, current)
    warnings, timings, diffs, deferred = list(todo.warnings), {}, [], []
    method = ""
    if todo.action in ("create", "rebuild"):
        check_tools(module, params, paths, warnings)
        method = build_method(module, params, paths)
    changes = list(todo.changes)
    if not module.check_mode:
        begin = time.monotonic()
        for leftover in todo.cleanup:
            discard(module, leftover)
        timings["cleanup"] = round(time.monotonic() - begin, 3)
        if todo.stop:
            stop_machine(module, params["name"])
        if todo.action == "remove":
            remove_image(module, paths, current)
    if todo.action in ("create", "rebuild"):
        if module.check_mode:
            changes += predicted_setup(module, params, paths)
        else:
            changes += build(module, params, paths, todo, timings)
    elif params["state"] == "present" and current.kind in ("directory", "symlink"):
        begin = time.monotonic()
        changes += existing_root_setup(module, params, paths, current, diffs, warnings, deferred)
        timings["setup"] = round(time.monotonic() - begin, 3)
    for warning in warnings:
        module.warn(warning)
    result = _result(params, paths, current, todo, changes, timings, diffs, started)
    result["method"] = method
    result["deferred"] = deferred
    result["pending_restart"] = bool(deferred)
    return result


def existing_root_setup(module, params: dict, paths: Paths, current: Current, diffs: list, warnings: List[str],
                        deferred: List[str]) -> List[str]:
    """Post-setup of a root that exists; for a running machine only with setup_running=apply.

    A running container owns its root; by default nothing is written into it
    while it runs: the changes are reported as deferred (and pending a restart)
    and made by the first run that finds the machine stopped.
    """
    root = os.path.realpath(paths.root)
    if not current.running or params.get("setup_running") == "apply":
        return ensure_post_setup(module, root, params, diffs=diffs)[1]
    deferred += ensure_post_setup(module, root, params, dry=True)[1]
    if deferred:
        warnings.append(f"image {params['name']}: the machine is running, so its first-boot preparation is deferred "
                        f"until a run finds it stopped ({'; '.join(deferred)}); stop it and re-run, or set "
                        "setup_running=apply to write into the running root")
    return []


def _result(params, paths, current, todo, changes, timings, diffs, started) -> dict:
    path = paths.raw if (current.kind == "raw" or params.get("source") == "raw") else paths.root
    after = "absent" if params["state"] == "absent" else (
        f"{'raw' if params.get('source') == 'raw' else 'directory'}, built from {describe_source(params)}"
        if todo.action in ("create", "rebuild") else _state_line(current, params))
    changed = bool(changes)
    image_diff = {"before_header": path, "after_header": path, "before": f"{path}: {_state_line(current, params)}\n",
                  "after": f"{path}: {after}\n" + "".join(f"  {change}\n" for change in changes)}
    return dict(changed=changed, image_path=path, created=todo.action == "create",
                rebuilt=todo.action == "rebuild", removed=todo.action == "remove",
                changes=changes,
                restart_required=changed and params["state"] == "present" and todo.action != "create",
                elapsed=round(time.monotonic() - started, 3), timings=timings,
                diff=[image_diff] + diffs if changed else [])
