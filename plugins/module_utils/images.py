# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Container root filesystems, the pure half: options, validation, the plan and the result.

The image resource follows the one contract (docs/architecture.md); the I/O is in ``images_io``
(read, apply), ``images_tree_io`` (staging dirs, processes, mounts, removal) and
``images_backends_io`` (tools, fetch, build); ``images_backends`` renders their command lines::

    images_io.read(module, layout, items) -> List[ImageState]    batched, nothing changes, check mode OK
    plan(items, states) -> ImagesPlan                            pure, never builds; .items: {name: ItemPlan}
    images_io.apply(module, layout, plan) -> {name: outcome}     builds, removes, prepares; never in check mode
    result(item_plan, outcome=None) -> dict                      what the image module returns for one item
    images_io.ensure_image(module, params) -> dict               the one-item run (read -> plan -> apply)

``items`` are image parameter dicts (IMAGE_OPTION_SPEC; the fleet adds ``_running``, ``_network_auto``,
``_source_planned``, ``_predict_from``, ``_setup_unread``), in the order they are built (templates before their clones).

A root is built in ``MACHINES_DIR/.corral/staging/NAME/root`` (same filesystem), prepared there, and
renamed to ``MACHINES_DIR/NAME`` only when complete, so an interrupted run never leaves something that
looks finished. Everything corral keeps beside the roots lives in ``MACHINES_DIR/.corral/`` (a name no
machine can have): staging and backup dirs (each with a build marker; nothing without one is ever
discarded) and the build records ``records/NAME.json`` (only a root whose record matches is ever purged
by the fleet). A container owns every file in its root, so nothing in a root decides what the host deletes.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional
from urllib.parse import urlparse

from ansible_collections.corral.nspawn.plugins.module_utils import images_backends as backends, images_setup, shared
from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError
from ansible_collections.corral.nspawn.plugins.module_utils.files import MANAGED_MARKER
from ansible_collections.corral.nspawn.plugins.module_utils.names import ifname_error, machine_name_error
from ansible_collections.corral.nspawn.plugins.module_utils.plan import Plan
from ansible_collections.corral.nspawn.plugins.module_utils.values import (
    authorized_key_error, crypt_hash_error, line_error,
)


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
    machines_dir=dict(type="path", default=shared.MACHINES_DIR),
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


class ImageError(CorralError):
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
    return errors + _validate_source(params, source) + _validate_setup(params)


# Ubuntu release code names debootstrap knows (its scripts directory); a Debian host's default mirror has none.
UBUNTU_SUITES = ("trusty", "xenial", "bionic", "focal", "jammy", "kinetic", "lunar", "mantic", "noble",
                 "oracular", "plucky", "questing")


# The options each source cannot do without.
REQUIRED = {"debootstrap": ("suite",), "dnf": ("releasever", "packages"), "zypper": ("packages",),
            "mkosi": ("mkosi_directory",), "clone": ("clone_from",), "directory": ("path",)}


def _validate_source(params: dict, source: Optional[str]) -> List[str]:
    errors = [f"{key}: required with source={source}" for key in REQUIRED.get(source, ()) if not params.get(key)]
    if source in backends.IMPORT_SOURCES:
        errors += _validate_import(params, source)
    elif source == "debootstrap":
        if params.get("suite") in UBUNTU_SUITES and not params.get("mirror"):
            errors.append(f"mirror: required for the Ubuntu suite {params['suite']!r} (debootstrap's default mirror is "
                          "the host distribution's, which has no Ubuntu suites): give the URL of an Ubuntu archive, and "
                          "install the Ubuntu archive keyring on the host (Debian: package ubuntu-keyring; or give "
                          "keyring: PATH)")
        if params.get("variant") and not re.match(r"^[a-z][a-z0-9-]*$", params["variant"]):
            errors.append(f"variant: {params['variant']!r} is not a debootstrap variant (e.g. minbase, buildd)")
    elif source == "clone" and params.get("clone_from"):
        error = machine_name_error(params["clone_from"])
        if error:
            errors.append(f"clone_from: {error} (give the name of an image in machines_dir)")
        elif params["clone_from"] == params.get("name"):
            errors.append("clone_from: an image cannot be cloned from itself")
    elif source == "directory" and params.get("path") and not os.path.isabs(params["path"]):
        errors.append(f"path: {params['path']!r} must be an absolute path")
    return errors


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
    if source == "raw" and images_setup.wants_post_setup(params):
        errors.append("source=raw: post-setup options (hostname, root_password, authorized_keys, address, ...) "
                      "need a directory image; use source=tar or prepare the raw image yourself")
    return errors


def _validate_setup(params: dict) -> List[str]:
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
    """``parse`` (ipaddress.ip_*) of ``value`` after the line check (ipaddress takes any text as an IPv6
    scope id); None when it is not one."""
    try:
        return parse(value) if isinstance(value, str) and not line_error(value) else None
    except ValueError:
        return None


def _validate_network(params: dict) -> List[str]:
    """address6/gateway6 (IPv6) and network_links (container-side interface names, a trailing * matches a prefix)."""
    errors = []
    address6, gateway6 = params.get("address6"), params.get("gateway6")
    if address6:
        iface = _ip(address6, ipaddress.ip_interface)
        if iface is None or iface.version != 6 or "/" not in address6 or iface.network.prefixlen == 128:
            errors.append(f"address6: {address6!r} must be an IPv6 address with prefix length, e.g. fd00:88::10/64")
    elif gateway6:
        errors.append("gateway6: only used together with address6")
    if gateway6 and getattr(_ip(gateway6, ipaddress.ip_address), "version", None) != 6:
        errors.append(f"gateway6: {gateway6!r} is not an IPv6 address")
    for index, link in enumerate(params.get("network_links") or []):
        name = link[:-1] if isinstance(link, str) and link.endswith("*") else link
        if ifname_error(name):
            errors.append(f"network_links[{index}]: {link!r} {ifname_error(name)} (a container-side interface name "
                          "such as host0, mv-eth0 or eth1; a trailing * matches names starting with it)")
    return errors


def _validate_address(params: dict) -> List[str]:
    errors = []
    address, gateway = params.get("address"), params.get("gateway")
    iface = _ip(address, ipaddress.ip_interface) if address else None
    if address and (iface is None or "/" not in address or iface.network.prefixlen == iface.max_prefixlen):
        errors.append(f"address: {address!r} must be an address with prefix length, e.g. 10.0.0.5/24")
        iface = None
    elif not address and (gateway or params.get("dns")):
        errors.append("gateway/dns: only used together with address")
    if gateway:
        parsed = _ip(gateway, ipaddress.ip_address)
        if parsed is None:
            errors.append(f"gateway: {gateway!r} is not an IP address")
        elif iface is not None and parsed.version != iface.version:
            errors.append(f"gateway: {gateway} is not of the same IP version as address")
    return errors + [f"dns: {server!r} is not an IP address" for server in params.get("dns") or []
                     if _ip(server, ipaddress.ip_address) is None]


# ---------------------------------------------------------------- paths and state (pure)

@dataclass
class Paths:
    """Where one image and corral's things beside it live (``machines_dir`` without a trailing slash)."""

    machines_dir: str
    name: str
    import_name: str = ""  # importd name of this build (random, recorded in the staging marker)

    def __post_init__(self) -> None:
        self.machines_dir = self.machines_dir.rstrip("/") or "/"
        self.root = os.path.join(self.machines_dir, self.name)
        self.raw = self.root + ".raw"
        self.state_dir = os.path.join(self.machines_dir, STATE_DIR)
        self.staging = os.path.join(self.state_dir, "staging", self.name)
        self.old = os.path.join(self.state_dir, "old", self.name)
        self.record = os.path.join(self.state_dir, "records", f"{self.name}.json")
        # where corral.nspawn before 0.2 kept staging/backup dirs (no build marker: reported, never removed)
        self.legacy = [os.path.join(self.machines_dir, f".corral-{kind}-{self.name}") for kind in ("staging", "old")]


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
    real: Optional[str] = None     # where a symlink really leads, and machines_dir really is (read resolves them)
    real_machines_dir: Optional[str] = None


@dataclass
class ImageState:
    """What read found for one item: its options, where it lives, and what building or preparing needs."""

    params: dict
    paths: Paths
    current: Current
    method: str = ""                                     # how a build would make it, in words
    warnings: List[str] = field(default_factory=list)
    setup: Optional[images_setup.RootState] = None       # the existing root, read for its preparation
    setup_words: List[str] = field(default_factory=list)   # a build's preparation, as far as it can be known
    setup_warnings: List[str] = field(default_factory=list)


def json_lines(text: Optional[str]) -> Optional[dict]:
    """The JSON object in ``text`` (lines starting with '#' are comments); None for anything else."""
    if text is None:
        return None
    try:
        data = json.loads("".join(line for line in text.splitlines(keepends=True) if not line.startswith("#")))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def build_id_text(build_id: str) -> str:
    """The in-root half of the build record: only the id, so a copy of a root is told apart from it."""
    return f"# {MANAGED_MARKER}: build id of this root (its record is kept by the host).\n" + \
        json.dumps({"build_id": build_id}) + "\n"


# ---------------------------------------------------------------- plan (pure)

@dataclass
class ItemPlan(Plan):
    """One image: what to do (``action``), and everything its result reports."""

    params: dict = field(default_factory=dict)
    paths: Optional[Paths] = None
    current: Current = field(default_factory=Current)
    action: str = "none"        # none | create | rebuild | remove
    cleanup: List[str] = field(default_factory=list)
    stop: bool = False
    method: str = ""
    setup: Optional[images_setup.SetupPlan] = None   # preparation of the existing root
    setup_words: List[str] = field(default_factory=list)
    setup_warnings: List[str] = field(default_factory=list)
    deferred: List[str] = field(default_factory=list)


@dataclass
class ImagesPlan(Plan):
    items: Dict[str, ItemPlan] = field(default_factory=dict)


def plan_item(params: dict, paths: Paths, current: Current) -> ItemPlan:
    """Decide what to do; raises ImageError for what must not be done."""
    if current.foreign:
        raise ImageError(f"{', '.join(current.foreign)}: not made by corral.nspawn (no build marker {BUILD_MARKER} in "
                         "it); refusing to remove or reuse it - move it away by hand")
    todo = ItemPlan(params=params, paths=paths, current=current, cleanup=list(current.leftovers))
    todo.changes += [f"remove leftovers of an interrupted build: {p}" for p in current.leftovers]
    todo.warnings += [f"{p}: left by an older corral.nspawn build (it has no build marker, so it is not removed); "
                      "delete it by hand once nothing uses it" for p in current.legacy]
    if params["state"] == "absent":
        return _plan_absent(params, paths, current, todo)
    if not current.exists:
        if not params.get("source"):
            raise ImageError(f"source: required to create {paths.root} (it does not exist)")
        todo.action = "create"
        todo.changes.append(f"create {paths.raw if params['source'] == 'raw' else paths.root} from "
                            f"{describe_source(params)}")
        return todo
    if current.kind == "symlink":
        target = current.real or os.path.normpath(os.path.join(paths.machines_dir, current.target or ""))
        if not target.startswith((current.real_machines_dir or paths.machines_dir) + os.sep):
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


def _plan_absent(params: dict, paths: Paths, current: Current, todo: ItemPlan) -> ItemPlan:
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


def describe_source(params: dict) -> str:
    source = params["source"]
    detail = {"debootstrap": params.get("suite"), "clone": params.get("clone_from"),
              "directory": params.get("path"), "tar": params.get("path") or params.get("url"),
              "raw": params.get("path") or params.get("url"), "mkosi": params.get("mkosi_directory"),
              "dnf": f"releasever {params.get('releasever')}"}.get(source)
    return f"{source} ({detail})" if detail else source


def plan_one(state: ImageState) -> ItemPlan:
    """Pure: the whole plan of one image from what read found (its changes include the preparation's).

    An existing root's preparation is made now, or deferred while the machine runs (setup_running=defer):
    a running container owns its root; by default nothing is written into it while it runs: the
    changes are reported as deferred (and pending a restart) and made by the first run that finds it stopped.
    """
    todo = plan_item(state.params, state.paths, state.current)
    todo.warnings += state.warnings
    if todo.action in ("create", "rebuild"):
        todo.method, todo.setup_words, todo.setup_warnings = state.method, state.setup_words, state.setup_warnings
        todo.changes += todo.setup_words
    elif state.setup is not None:
        setup = images_setup.plan(todo.params, state.setup)
        todo.warnings += setup.warnings
        if not state.current.running or todo.params.get("setup_running") == "apply":
            todo.setup = setup
            todo.changes += setup.changes
            todo.diffs += setup.diffs
        else:
            todo.deferred = setup.changes
            if setup.changes:
                todo.warnings.append(f"image {todo.params['name']}: the machine is running, so its first-boot "
                                     f"preparation is deferred until a run finds it stopped ({'; '.join(setup.changes)}"
                                     "); stop it and re-run, or set setup_running=apply to write into the running root")
    return todo


def plan(items: List[dict], states: List[ImageState]) -> ImagesPlan:
    """Pure: every image's plan (``items`` and ``states`` in the same order, as read returned them)."""
    out = ImagesPlan()
    for _item, state in zip(items, states):
        out.merge(out.items.setdefault(state.paths.name, plan_one(state)))
    return out


def _state_line(current: Current) -> str:
    if not current.exists:
        return "absent"
    built = f", built from {describe_source(current.record)}" if current.record else ""
    return f"{current.kind}{built}"


def result(todo: ItemPlan, outcome: Optional[dict] = None) -> dict:
    """The image module's result for one item: from the plan alone (check mode) or after apply (``outcome``).

    ``warnings`` are the caller's to emit (module.warn); ``diff`` is a list of before/after dicts.
    """
    params, current, paths = todo.params, todo.current, todo.paths
    built = todo.action in ("create", "rebuild")
    changes = list(todo.changes)
    if built and outcome is not None:   # the preparation the build did, in place of the prediction
        changes = changes[:len(changes) - len(todo.setup_words)] + list(outcome.get("setup_words", []))
    path = paths.raw if (current.kind == "raw" or params.get("source") == "raw") else paths.root
    after = "absent" if params["state"] == "absent" else (
        f"{'raw' if params.get('source') == 'raw' else 'directory'}, built from {describe_source(params)}"
        if built else _state_line(current))
    image_diff = {"before_header": path, "after_header": path, "before": f"{path}: {_state_line(current)}\n",
                  "after": f"{path}: {after}\n" + "".join(f"  {change}\n" for change in changes)}
    warnings = todo.warnings + ((outcome or {}).get("warnings", []) if outcome is not None else todo.setup_warnings)
    return dict(changed=bool(changes), image_path=path, created=todo.action == "create",
                rebuilt=todo.action == "rebuild", removed=todo.action == "remove", changes=changes,
                restart_required=bool(changes) and params["state"] == "present" and todo.action != "create",
                timings=(outcome or {}).get("timings", {}), method=todo.method, deferred=todo.deferred,
                pending_restart=bool(todo.deferred), warnings=warnings,
                diff=[image_diff] + todo.diffs if changes else [])


# ---------------------------------------------------------------- helpers of the I/O halves (pure)

def copy_source(params: dict, paths: Paths) -> str:
    if params["source"] == "clone":
        return os.path.join(paths.machines_dir, params["clone_from"])
    return params["path"]


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


def path_uses(path: str, argv: List[str], root: str, cwd: str) -> bool:
    """Whether a process (its argv, root and cwd) works in ``path`` (pure)."""
    def within(value: str) -> bool:
        return value == path or value.startswith(path + os.sep)
    return any(within(arg) for arg in argv) or within(root) or within(cwd)
