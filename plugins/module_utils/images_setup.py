# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""First-boot preparation of a container root (post-setup): the pure planner.

One table (``STEPS``) holds every step once: when it applies, what it must know about the root,
how it plans, and the words it predicts for a root that does not exist yet. Nothing here does
I/O; ``images_setup_io`` reads the root (through ``rootfs``), and applies the plan::

    reads(params, fresh) -> [(kind, name)]          what read must look at (pure)
    images_setup_io.read(module, fs, params, fresh) -> RootState     batched, nothing changes
    plan(params, state, fresh) -> SetupPlan         pure: changes, diffs, warnings, actions
    images_setup_io.apply(module, fs, plan)         does exactly the actions; never in check mode
    predict(params) -> [words]                      a fresh root check mode cannot read yet

``fresh`` marks a root this run just created: only then are the machine-id, the clone identity
files and the SSH host keys reset, never on a root that booted.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass, field
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils import unitfile
from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError
from ansible_collections.corral.nspawn.plugins.module_utils.files import MANAGED_MARKER, plan_file_mode
from ansible_collections.corral.nspawn.plugins.module_utils.plan import Plan

HOST0_NETWORK = "etc/systemd/network/10-corral-host0.network"
SECURETTY_FILES = ("etc/securetty", "usr/share/factory/etc/securetty")
SECURETTY_TTYS = tuple(f"pts/{n}" for n in range(10))
NETWORKD_UNIT = "systemd-networkd.service"
RESOLVED_UNIT = "systemd-resolved.service"
UNIT_DIRS = ("etc/systemd/system", "run/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")
# Per-installation secrets a clone must not share with its template (systemd regenerates them at boot).
IDENTITY_FILES = ("var/lib/systemd/credential.secret", "var/lib/systemd/random-seed")

Read = Tuple[str, str]   # (kind, name): file | lstat | dir | list | unit | tool | password


class SetupError(CorralError):
    """Post-setup cannot proceed; the message says why and what to do."""


@dataclass
class UnitState:
    """A unit in the root: enabled | static | disabled | masked | None (not installed), and its links."""

    state: Optional[str]
    links: List[Tuple[str, str]] = field(default_factory=list)   # (link, target) systemctl enable makes
    current: Dict[str, Optional[str]] = field(default_factory=dict)   # link -> where it points now


@dataclass
class RootState:
    """What read found in one root, keyed by the (kind, name) a step asked for."""

    root: str
    seen: Dict[Read, object] = field(default_factory=dict)

    def get(self, kind: str, name: str):
        return self.seen.get((kind, name))


@dataclass
class SetupPlan(Plan):
    """actions: ("write", rel, text, mode, owner) | ("unlink", rel) | ("mkdir", rel, mode)
    | ("symlink", target, rel) | ("hostkeys", keygen, keys, names)."""

    def add(self, words: str, actions: Tuple[tuple, ...] = (), diff: Optional[dict] = None) -> None:
        self.changes.append(words)
        self.actions.extend(actions)
        if diff:
            self.diffs.append(diff)


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
            # host0's file keeps its historical name
            path = HOST0_NETWORK if link == "host0" else f"etc/systemd/network/10-corral-{link.rstrip('*')}.network"
            files.append((path, dhcp_network(link), f"{link} DHCP"))
    return files


def install_section(text: str) -> dict:
    """{WantedBy, RequiredBy, Alias, Also: [..]} of a unit file's [Install] section (unreadable text: none)."""
    found = unitfile.values(text, strict=False).get("Install", {})
    return {key: [word for value in found.get(key, []) for word in value.split()]
            for key in ("WantedBy", "RequiredBy", "Alias", "Also")}


def install_links(path: str, unit: str, install: dict) -> List[Tuple[str, str]]:
    """The (link, target) pairs ``systemctl enable`` makes for one unit file (Also= not followed)."""
    links = [(f"etc/systemd/system/{t}.wants/{unit}", path) for t in install["WantedBy"]]
    links += [(f"etc/systemd/system/{t}.requires/{unit}", path) for t in install["RequiredBy"]]
    return links + [(f"etc/systemd/system/{alias}", path) for alias in install["Alias"]]


def enabled_state(masked: bool, links: Optional[List[Tuple[str, str]]], current: Dict[str, Optional[str]]):
    """The answer of ``systemctl --root is-enabled`` for what we enable, from the links read."""
    if masked:
        return "masked"
    if links is None:
        return None
    if not links:
        return "static"
    return "enabled" if all(current.get(link) == target for link, target in links) else "disabled"


# ---------------------------------------------------------------- planning steps (pure)

def _file(state: RootState, rel: str, content: str, mode: int, label: str, out: SetupPlan) -> None:
    """Write-if-different (content, then mode) for one file inside the root."""
    found = state.get("file", rel)
    text, have = (found[0], found[1].st_mode & 0o7777) if found else (None, None)
    result = plan_file_mode(os.path.join(state.root, rel), text, have, content, mode)
    if result.changed:
        out.add(f"{label}: {result.action} {rel}", (("write", rel, content, mode, None),), result.diff)


def _remove(state: RootState, rel: str, label: str, out: SetupPlan, regular_only: bool = True) -> None:
    mode = state.get("lstat", rel)
    if mode is not None and not (regular_only and not stat.S_ISREG(mode)):
        out.add(f"{label}: remove {rel}", (("unlink", rel),))


def plan_machine_id(_params: dict, state: RootState, out: SetupPlan) -> None:
    """Empty /etc/machine-id: the container gets a new id on first boot (clones must not share one)."""
    _file(state, "etc/machine-id", "", 0o444, "machine-id (emptied)", out)
    _remove(state, "var/lib/dbus/machine-id", "machine-id", out)
    for rel in IDENTITY_FILES:
        _remove(state, rel, "clone identity", out, regular_only=False)


def plan_host_keys(_params: dict, state: RootState, out: SetupPlan) -> None:
    """Replace SSH host keys present in the root by new ones (clones must not share them)."""
    names = state.get("list", "etc/ssh") or []
    keys = [n for n in names if n.startswith("ssh_host_") and n.endswith("_key")]
    if not keys:
        return
    keygen = state.get("tool", "ssh-keygen")
    if not keygen:
        raise SetupError("regenerate_ssh_host_keys: the image has SSH host keys but ssh-keygen is not installed on "
                         "the host; install openssh-client or set regenerate_ssh_host_keys=false")
    out.add(f"ssh host keys: regenerate {', '.join(keys)}", (("hostkeys", keygen, keys, names),))


def plan_password(params: dict, state: RootState, out: SetupPlan) -> None:
    """root's hash in etc/shadow; read found whether root_password already matches (and hashed it if not)."""
    found = state.get("file", "etc/shadow")
    if found is None:
        raise SetupError(f"root_password: {os.path.join(state.root, 'etc/shadow')} does not exist; is {state.root} "
                         "a complete root?")
    text, info = found
    wanted = params.get("root_password_hash") or state.get("password", "etc/shadow")
    if wanted and shadow_root_hash(text) != wanted:
        # Keep the file's owner, group and mode (of the file we read): shadow's group lives in the image.
        write = ("write", "etc/shadow", shadow_with_root_hash(text, wanted), info.st_mode & 0o7777,
                 (info.st_uid, info.st_gid))
        out.add("root password: set (etc/shadow)", (write,))


def plan_authorized_keys(params: dict, state: RootState, out: SetupPlan) -> None:
    if not state.get("dir", "root/.ssh"):
        out.add("authorized_keys: create root/.ssh", (("mkdir", "root/.ssh", 0o700),))
    body = "".join(key.strip() + "\n" for key in params["authorized_keys"] if key.strip())
    _file(state, "root/.ssh/authorized_keys", f"# {MANAGED_MARKER}: root's authorized keys.\n{body}", 0o600,
          "authorized_keys", out)


def plan_enable(unit: str, state: RootState, out: SetupPlan) -> None:
    """Enable ``unit`` in the image as ``systemctl enable`` would ([Install] links, Also= included)."""
    found = state.get("unit", unit)
    if found.state in ("enabled", "static"):
        return
    if found.state is None:
        raise SetupError(f"{unit} is not installed in the image {state.root}; install systemd (networkd/resolved) "
                         "in it")
    if found.state == "masked":
        raise SetupError(f"{unit} is masked in the image {state.root} (etc/systemd/system/{unit} -> /dev/null); "
                         "unmask it in the image or do not ask to enable it")
    links = tuple(("symlink", target, link) for link, target in found.links if found.current.get(link) != target)
    out.add(f"enable {unit} in the image", links)


def plan_network(params: dict, state: RootState, out: SetupPlan) -> None:
    """The root's networkd configuration for every link the machine gets, and networkd enabled.

    When the fleet asked for it by default (``_network_auto``) and the image has no networkd,
    nothing is written and a warning says so; asked for explicitly, that is an error.
    """
    if params.get("_network_auto") and state.get("unit", NETWORKD_UNIT).state is None:
        out.warnings.append(
            f"image {state.root}: systemd-networkd is not installed in the image, so its links "
            f"({', '.join(params.get('network_links') or [])}) get no network configuration; install it "
            "(Debian 13: package systemd-networkd) or set image.network_links: [] to silence this")
        return
    for rel, text, label in network_files(params):
        _file(state, rel, text, 0o644, label, out)
    if wants_networkd(params):
        plan_enable(NETWORKD_UNIT, state, out)


def plan_securetty(_params: dict, state: RootState, out: SetupPlan) -> None:
    for rel in SECURETTY_FILES:
        found = state.get("file", rel)
        missing = securetty_missing(found[0]) if found else []
        if missing:
            text = found[0]
            new = text + ("" if not text or text.endswith("\n") else "\n") + "".join(f"{tty}\n" for tty in missing)
            _file(state, rel, new, found[1].st_mode & 0o7777, "securetty (machinectl login)", out)


# ---------------------------------------------------------------- the one step table

class Step(NamedTuple):
    wanted: Callable[[dict, bool], bool]         # (params, fresh): does this step run
    reads: Callable[[dict], List[Read]]          # what read must look at for it
    plan: Callable[[dict, RootState, SetupPlan], None]
    predict: Callable[[dict], List[str]]         # words for a fresh root check mode cannot read


def _network_reads(params: dict) -> List[Read]:
    unit = [("unit", NETWORKD_UNIT)] if wants_networkd(params) or params.get("_network_auto") else []
    return [("file", rel) for rel, _text, _label in network_files(params)] + unit


STEPS = (
    Step(lambda p, fresh: fresh and p.get("reset_machine_id", True),
         lambda p: [("file", "etc/machine-id"), ("lstat", "var/lib/dbus/machine-id")]
         + [("lstat", rel) for rel in IDENTITY_FILES],
         plan_machine_id, lambda p: ["machine-id: empty etc/machine-id"]),
    Step(lambda p, fresh: fresh and p.get("regenerate_ssh_host_keys", True),
         lambda p: [("list", "etc/ssh"), ("tool", "ssh-keygen")],
         plan_host_keys, lambda p: ["ssh host keys: regenerate if present"]),
    Step(lambda p, fresh: bool(p.get("hostname")), lambda p: [("file", "etc/hostname")],
         lambda p, state, out: _file(state, "etc/hostname", f"{p['hostname']}\n", 0o644, "hostname", out),
         lambda p: ["hostname: create etc/hostname"]),
    Step(lambda p, fresh: bool(p.get("root_password") or p.get("root_password_hash")),
         lambda p: [("file", "etc/shadow"), ("password", "etc/shadow")],
         plan_password, lambda p: ["root password: set (etc/shadow)"]),
    Step(lambda p, fresh: p.get("authorized_keys") is not None,
         lambda p: [("dir", "root/.ssh"), ("file", "root/.ssh/authorized_keys")],
         plan_authorized_keys, lambda p: ["authorized_keys: create root/.ssh/authorized_keys"]),
    Step(lambda p, fresh: wants_networkd(p) or bool(network_files(p)), _network_reads, plan_network,
         lambda p: [f"{label}: create {rel}" for rel, _text, label in network_files(p)]
         + ([f"enable {NETWORKD_UNIT} in the image"] if wants_networkd(p) else [])),
    Step(lambda p, fresh: bool(p.get("enable_resolved")), lambda p: [("unit", RESOLVED_UNIT)],
         lambda p, state, out: plan_enable(RESOLVED_UNIT, state, out),
         lambda p: [f"enable {RESOLVED_UNIT} in the image"]),
    Step(lambda p, fresh: bool(p.get("securetty_fix")), lambda p: [("file", rel) for rel in SECURETTY_FILES],
         plan_securetty, lambda p: ["securetty: add pts/0-9"]),
)


def _steps(params: dict, fresh: bool) -> List[Step]:
    return [step for step in STEPS if step.wanted(params, fresh)]


def reads(params: dict, fresh: bool = False) -> List[Read]:
    """Everything the wanted steps need to know about the root, in step order, each once."""
    wanted: List[Read] = []
    for step in _steps(params, fresh):
        wanted += [item for item in step.reads(params) if item not in wanted]
    return wanted


def plan(params: dict, state: RootState, fresh: bool = False) -> SetupPlan:
    """Pure: the changes (words), diffs, warnings and actions that bring the root to ``params``."""
    out = SetupPlan()
    for step in _steps(params, fresh):
        step.plan(params, state, out)
    return out


def predict(params: dict, fresh: bool = True) -> List[str]:
    """The preparation a root that does not exist yet will get (check mode cannot read it)."""
    return [words for step in _steps(params, fresh) for words in step.predict(params)]


def wants_post_setup(params: dict) -> bool:
    """Whether any option asks for post-setup of an existing root."""
    return bool(_steps(params, False))
