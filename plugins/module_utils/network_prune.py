# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Prune zones and bridges corral.nspawn created that are no longer declared: the pure half.

``network_prune_io.read()`` gathers the host as plain data (our networkd files, links and their ports,
the ``.nspawn`` files, running machines), ``plan()`` here decides and ``network_prune_io.run_prune()``
applies: files removed, links deleted, networkd reloaded. A zone or bridge is a candidate
only when one of its ``50-corral-*`` files carries the managed marker; links and files
corral.nspawn did not write are never touched. Anything still using a candidate (a declared
machine, a ``.nspawn`` file that stays, a running container's port) makes the whole plan an
error before anything changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils import netlink, networkd, shared, unitfile
from ansible_collections.corral.nspawn.plugins.module_utils.files import is_managed
from ansible_collections.corral.nspawn.plugins.module_utils.fleet import FLEET_MARKER, merge_layers
from ansible_collections.corral.nspawn.plugins.module_utils.names import veth_ifname, zone_ifname
from ansible_collections.corral.nspawn.plugins.module_utils.netmodel import attachment
from ansible_collections.corral.nspawn.plugins.module_utils.shared import SETTINGS_DIR

CONTAINER_PORT_PREFIXES = ("vb-", "ve-")  # host sides of the veths systemd-nspawn creates
FLEET_OPTION_SPEC = dict(
    machines=dict(type="list", elements="dict", default=[]),
    defaults=dict(type="dict", default={}),
    host_defaults=dict(type="dict", default={}),
    prune=dict(type="bool", default=False),
    prune_all=dict(type="bool", default=False),
)
PRUNE_OPTION_SPEC = dict(
    zones=dict(type="list", elements="str", default=[]),
    bridges=dict(type="list", elements="str", default=[]),
    prune_all=dict(type="bool", default=False),
    fleet=dict(type="dict", options=FLEET_OPTION_SPEC, apply_defaults=True),
    **shared.spec("settings_dir"),
)


@dataclass
class NetworkFiles:
    """Our prefixed files of one link: the managed ones (removable) and any without the marker."""

    managed: List[str] = field(default_factory=list)
    unmanaged: List[str] = field(default_factory=list)
    ports: List[str] = field(default_factory=list)  # interfaces our port files enslave


@dataclass
class MachineSettings:
    """What one ``/etc/systemd/nspawn/NAME.nspawn`` says about networking."""

    network: Optional[str] = None  # the link it joins: vz-ZONE or the bridge
    fleet: bool = False            # written by corral.nspawn.fleet


@dataclass
class HostState:
    files: Dict[str, str] = field(default_factory=dict)            # our prefixed networkd files {path: text}
    net: netlink.HostNet = field(default_factory=netlink.HostNet)
    settings: Dict[str, MachineSettings] = field(default_factory=dict)
    running: List[str] = field(default_factory=list)
    settings_dir: str = SETTINGS_DIR                                # where ``settings`` were read


@dataclass
class Victim:
    """One zone or bridge to prune and what happens to it."""

    kind: str       # zone | bridge
    name: str
    ifname: str
    files: List[str]
    link: str       # delete | keep | absent
    gone_first: List[str] = field(default_factory=list)  # container ports that must be gone before the link

    def as_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "ifname": self.ifname, "files": list(self.files),
                "link": self.link}


@dataclass
class PrunePlan:
    victims: List[Victim] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)


# ---------------------------------------------------------------- pure helpers

def kind_and_name(ifname: str) -> Tuple[str, str]:
    return ("zone", ifname[3:]) if ifname.startswith("vz-") else ("bridge", ifname)


def label(ifname: str) -> str:
    kind, name = kind_and_name(ifname)
    return f"zone {name} ({ifname})" if kind == "zone" else f"bridge {name}"


def _owner(path: str, text: str) -> Tuple[Optional[str], Optional[str]]:
    """``(link, enslaved port)`` a file of ours configures, from its content; (None, None) when unreadable."""
    try:
        doc = unitfile.parse(text)
    except unitfile.UnitFileError:
        return None, None
    if path.endswith(".netdev"):
        names = unitfile.get(doc, "NetDev", "Name")
        return (names[-1] if names else None), None
    bridge, names = unitfile.get(doc, "Network", "Bridge"), unitfile.get(doc, "Match", "Name")
    if bridge and names:
        return bridge[-1], names[-1]
    return (names[-1] if names else None), None


def group_files(files: Dict[str, str]) -> Dict[str, NetworkFiles]:
    """Our files by the link they belong to; a file counts only at the path the modules would give it."""
    groups: Dict[str, NetworkFiles] = {}
    for path, text in sorted(files.items()):
        link, port = _owner(path, text)
        if link is None:
            continue
        expected = networkd.port_path(link, port) if port else (
            networkd.netdev_path(link) if path.endswith(".netdev") else networkd.network_path(link))
        if os.path.basename(expected) != os.path.basename(path):
            continue
        group = groups.setdefault(link, NetworkFiles())
        (group.managed if is_managed(text) else group.unmanaged).append(path)
        if port and is_managed(text):
            group.ports.append(port)
    return groups


def machine_network(item: dict, defaults: dict, host_defaults: Optional[dict] = None) \
        -> Tuple[Optional[str], Optional[str]]:
    """``(name, link)`` one declared fleet machine joins: its layers (``defaults``, ``host_defaults``, the
    machine) merged by the fleet's own merge (``fleet.merge_layers``: the most specific layer that sets
    zone, bridge or network wins whole), then the fleet's attachment rule (``netmodel.attachment``: the
    keys, else ``settings.zone`` / ``settings.bridge``). A zone or bridge in ``settings`` next to
    ``network: veth|host|none`` still counts: the fleet writes it into the machine's ``.nspawn`` file."""
    merged = merge_layers(defaults, host_defaults, item)
    settings = merged.get("settings") if isinstance(merged.get("settings"), dict) else {}
    found = attachment(merged.get("zone"), merged.get("bridge"), merged.get("network"), settings)
    if found["kind"] not in ("zone", "bridge"):  # network: veth|host|none next to settings.zone / settings.bridge
        found = {"kind": "zone", "name": settings.get("zone")} if settings.get("zone") else \
            {"kind": "bridge", "name": settings.get("bridge")}
    if not found["name"]:
        return merged.get("name"), None
    return merged.get("name"), zone_ifname(found["name"]) if found["kind"] == "zone" else found["name"]


def settings_network(text: str) -> MachineSettings:
    """Zone=/Bridge= and the fleet marker of a ``.nspawn`` file (unparsable: no network, not ours)."""
    fleet = any(FLEET_MARKER in line for line in text.splitlines()[:3])
    try:
        doc = unitfile.parse(text)
    except unitfile.UnitFileError:
        return MachineSettings(None, fleet)
    zone, bridge = unitfile.get(doc, "Network", "Zone"), unitfile.get(doc, "Network", "Bridge")
    link = zone_ifname(zone[-1]) if zone else (bridge[-1] if bridge else None)
    return MachineSettings(link, fleet)


def port_owner(port: str, machines: Iterable[str]) -> Optional[str]:
    """The machine whose veth (host side, named like systemd-nspawn names it) is ``port``."""
    for name in sorted(set(machines)):
        if port in (veth_ifname(name, bridged=True), veth_ifname(name)):
            return name
    return None


# ---------------------------------------------------------------- the plan

def _users(ifname: str, declared: Dict[str, Optional[str]], state: HostState, leaving: List[str]) -> List[str]:
    """Why ``ifname`` must stay: declared machines on it (``declared``: machine -> link), .nspawn files that stay
    (``leaving``: undeclared fleet machines the fleet removes first)."""
    errors = []
    users = sorted(m for m, link in declared.items() if link == ifname)
    if users:
        errors.append(f"{label(ifname)} is used by declared machine(s) {', '.join(users)}; remove them in the same "
                      "change or keep it declared")
    staying = sorted(m for m, s in state.settings.items()
                     if s.network == ifname and m not in declared and m not in leaving)
    if staying:
        errors.append(f"{label(ifname)} is joined by machine(s) {', '.join(staying)} in {state.settings_dir} that are not "
                      "declared and are not removed by this run (fleet prune is off, or the fleet did not create "
                      "them)")
    return errors


def _ports(ifname: str, group: NetworkFiles, declared: Dict[str, Optional[str]], state: HostState,
           leaving_machines: List[str]) -> Tuple[List[str], List[str], List[str]]:
    """Ports of the live link: (running containers that block, container ports leaving first, foreign)."""
    known = set(declared) | set(state.settings) | set(state.running)
    blocking, leaving, foreign = [], [], []
    for port in state.net.ports_of(ifname):
        if port in group.ports:
            continue  # enslaved by our own port file: released with the link
        if not port.startswith(CONTAINER_PORT_PREFIXES):
            foreign.append(port)
            continue
        owner = port_owner(port, known)
        if owner is not None and (owner in leaving_machines or owner in declared):
            leaving.append(port)  # removed by the fleet, or a declared machine moving elsewhere on restart
        else:
            blocking.append(f"{owner} (port {port})" if owner else f"port {port}")
    return blocking, leaving, foreign


def _victim(ifname: str, group: NetworkFiles, state: HostState, leaving: List[str], foreign: List[str],
            result: PrunePlan) -> None:
    """A candidate nothing holds: its files go; its link is deleted, kept or already absent."""
    kind, name = kind_and_name(ifname)
    link = "absent" if state.net.link(ifname) is None else "delete"
    netdev = networkd.netdev_path(ifname)
    if link == "delete" and netdev in group.unmanaged:
        link = "keep"
        result.warnings.append(f"{label(ifname)}: the link is kept, {netdev} was not written by corral.nspawn")
    elif link == "delete" and foreign:
        link = "keep"
        result.warnings.append(f"{label(ifname)}: the link is kept, it has ports corral.nspawn did not attach "
                               f"({', '.join(foreign)}); its corral.nspawn files are removed")
    for path in group.unmanaged:
        result.warnings.append(f"{label(ifname)}: {path} is kept, it was not written by corral.nspawn")
    result.victims.append(Victim(kind, name, ifname, list(group.managed), link, leaving if link == "delete" else []))


def plan(keep: Iterable[str], declared: Dict[str, Optional[str]], state: HostState, fleet_prune: bool,
         prune_all: bool = False) -> PrunePlan:
    """What pruning means on this host.

    ``keep``: declared links (``vz-ZONE``, bridge names); ``declared``: declared machine -> link it
    joins; ``fleet_prune``: undeclared fleet machines are removed (by the fleet, first);
    ``prune_all``: an empty ``keep`` may remove every network we made.
    """
    keep = set(keep)
    leaving = sorted(m for m, s in state.settings.items() if s.fleet and m not in declared) if fleet_prune else []
    result = PrunePlan()
    candidates = [(i, g) for i, g in sorted(group_files(state.files).items()) if i not in keep and g.managed]
    if candidates and not keep and not prune_all:
        # the fleet's rule too: a host that lost its variables must not lose its networks
        result.errors.append("zones and bridges are empty, so pruning would remove every zone and bridge "
                             f"corral.nspawn created on this host ({', '.join(i for i, _g in candidates)}); a host "
                             "that lost its variables looks exactly like this. Set prune_all=true (role: "
                             "corral_network_prune_all) to remove them all")
    for ifname, group in candidates:
        errors = _users(ifname, declared, state, leaving)
        blocking, leaving_ports, foreign = _ports(ifname, group, declared, state, leaving)
        if blocking:
            errors.append(f"{label(ifname)} has running container(s) attached: {', '.join(blocking)}")
        result.errors += errors
        if not errors:
            _victim(ifname, group, state, leaving_ports, foreign, result)
    return result


def declared_machines(machines: List[dict], defaults: dict, host_defaults: Optional[dict] = None) \
        -> Tuple[Dict[str, Optional[str]], List[str]]:
    """``{machine: link}`` from the fleet's input (its ``defaults`` and ``host_defaults`` layers too), and
    errors for items without a name."""
    found, errors = {}, []
    for index, item in enumerate(machines or []):
        name, link = machine_network(item, defaults, host_defaults)
        if not isinstance(name, str) or not name:
            errors.append(f"fleet.machines[{index}].name: missing; every declared machine needs its name")
            continue
        found[name] = link
    return found, errors


def link_diff(victim: Victim, net: netlink.HostNet) -> dict:
    link = net.link(victim.ifname)
    ports = ", ".join(net.ports_of(victim.ifname)) or "none"
    before = f"{victim.ifname}: present ({link.kind or 'link'}, ports: {ports})\n"
    return {"before_header": f"link {victim.ifname}", "after_header": f"link {victim.ifname} (pruned)",
            "before": before, "after": "absent\n"}


def still_attached(victims: List[Victim], net: netlink.HostNet) -> List[str]:
    """Container ports that were to be gone before their link is deleted but are still there."""
    return [f"{v.ifname}: {port}" for v in victims if v.link == "delete"
            for port in net.ports_of(v.ifname) if port in v.gone_first]
