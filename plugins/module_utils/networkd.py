# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""systemd-networkd files for container bridges and zones: validate, render, plan (pure).

A bridge ``NAME`` is ``50-corral-NAME.netdev`` + ``50-corral-NAME.network`` (+ one
``50-corral-NAME-port-IFACE.network`` per enslaved port); a zone ``Z`` is the bridge
``vz-Z`` systemd-nspawn uses for ``Zone=Z``. The ``50-`` prefix sorts before the stock
``80-container-vz.network``, so networkd applies our file to the zone bridge.
Nothing here does I/O: network_io reads the networkd directory and netlink ONCE per module call
(``network_io.read() -> NetworkState``), ``plan_zone``/``plan_bridge``/``plan_absent`` decide each link
against that state (which then holds the planned files, so the next zone's pool pick and overlap check see
them), ``network_io`` writes the files and ``network_io.finish`` runs ONE ``networkctl reload`` for every
changed link of the call, then reconfigures and verifies them.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils import netlink, shared, unitfile
from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError
from ansible_collections.corral.nspawn.plugins.module_utils.files import FileResult, is_managed, plan_file_mode
from ansible_collections.corral.nspawn.plugins.module_utils.names import ifname_error, zone_ifname, zone_name_error
from ansible_collections.corral.nspawn.plugins.module_utils.values import line_error

NETWORK_DIR = shared.NETWORK_DIR
FILE_PREFIX = "50-corral-"
RESERVED_PREFIXES = ("ve-", "vb-", "vz-")  # names systemd-nspawn derives itself
DEFAULT_ZONE_POOL = "10.88.0.0/16"
ZONE_PREFIXLEN = 24
_MAC = re.compile(r"([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}")  # used with fullmatch

# Options shared by bridge and zone (argument spec dicts, reusable by roles and the fleet module).
COMMON_OPTION_SPEC = dict(
    state=dict(type="str", default="present", choices=["present", "absent"]),
    address=dict(type="list", elements="str"),
    dhcp_server=dict(type="bool"),
    dhcp_pool_offset=dict(type="int"),
    dhcp_pool_size=dict(type="int"),
    dhcp_dns=dict(type="list", elements="str"),
    dhcp_static_leases=dict(type="list", elements="dict", options=dict(
        mac=dict(type="str", required=True), address=dict(type="str", required=True))),
    ip_masquerade=dict(type="str", default="no", choices=["no", "ipv4", "ipv6", "both"]),
    timeout=dict(type="int", default=20),
)
BRIDGE_OPTION_SPEC = dict(
    name=dict(type="str", required=True),
    stp=dict(type="bool", default=False),
    mac_address=dict(type="str"),
    ports=dict(type="list", elements="str", default=[]),
    force=dict(type="bool", default=False),
    **copy.deepcopy(COMMON_OPTION_SPEC),
)
ZONE_OPTION_SPEC = dict(
    name=dict(type="str", required=True),
    pool=dict(type="str", default=DEFAULT_ZONE_POOL),
    netdev=dict(type="bool", default=True),
    **copy.deepcopy(COMMON_OPTION_SPEC),
)


# ---------------------------------------------------------------- paths

def netdev_path(ifname: str) -> str:
    return os.path.join(NETWORK_DIR, f"{FILE_PREFIX}{ifname}.netdev")


def network_path(ifname: str) -> str:
    return os.path.join(NETWORK_DIR, f"{FILE_PREFIX}{ifname}.network")


def port_path(ifname: str, port: str) -> str:
    return os.path.join(NETWORK_DIR, f"{FILE_PREFIX}{ifname}-port-{port}.network")


def owned_paths(ifname: str, names: Iterable[str]) -> List[str]:
    """Which of the file ``names`` in NETWORK_DIR belong to link ``ifname`` (for stale-file removal)."""
    mine = {os.path.basename(netdev_path(ifname)), os.path.basename(network_path(ifname))}
    port_prefix = f"{FILE_PREFIX}{ifname}-port-"
    return sorted(os.path.join(NETWORK_DIR, n) for n in names
                  if n in mine or (n.startswith(port_prefix) and n.endswith(".network")))


# ---------------------------------------------------------------- validation

def parse_address(value: str):
    """An interface address ``IP/PREFIX`` (host address inside its subnet) or ValueError."""
    if not isinstance(value, str) or "/" not in value:
        raise ValueError("give an address with its prefix length, like 10.20.0.1/24 or fd00:20::1/64")
    # ipaddress takes any text as an IPv6 scope id ('fe80::1%x\r[Match]...'): the value is written as given
    problem = line_error(value)
    if problem:
        raise ValueError(problem)
    iface = ipaddress.ip_interface(value.strip())
    net = iface.network
    if net.num_addresses > 2 and iface.ip in (net.network_address, getattr(net, "broadcast_address", None)):
        raise ValueError(f"{iface.ip} is the network or broadcast address of {net}; use a host address "
                         f"such as {next(net.hosts())}/{net.prefixlen}")
    return iface


def address_errors(values: Optional[List[str]], option: str = "address") -> Tuple[list, List[str]]:
    """Parse a list of interface addresses; return (interfaces, errors) naming the option."""
    parsed, errors = [], []
    for value in values or []:
        try:
            parsed.append(parse_address(value))
        except ValueError as exc:
            errors.append(f"{option}: {value!r} is not a valid address: {exc}")
    nets = [iface.network for iface in parsed]
    for i, net in enumerate(nets):
        for other in nets[i + 1:]:
            if net.version == other.version and net.overlaps(other):
                errors.append(f"{option}: {net} and {other} overlap")
    return parsed, errors


def _common_errors(params: dict) -> List[str]:
    """The problems of the options bridge and zone share: addresses, the DHCP server, the timeout."""
    addresses, errors = address_errors(params.get("address"))
    for key in ("dhcp_pool_offset", "dhcp_pool_size"):
        if params.get(key) is not None and params[key] < 0:
            errors.append(f"{key}: {params[key]} is not allowed; give a number >= 0")
    wants_dhcp = params.get("dhcp_server") or params.get("dhcp_static_leases")
    if wants_dhcp and addresses and not any(a.version == 4 for a in addresses):
        errors.append("dhcp_server: the DHCP server needs an IPv4 address in 'address'")
    for lease in params.get("dhcp_static_leases") or []:
        if not _MAC.fullmatch(lease["mac"]):
            errors.append(f"dhcp_static_leases: mac {lease['mac']!r} is not a MAC address like 02:00:00:00:00:01")
        try:
            if line_error(lease["address"]):
                raise ValueError(lease["address"])
            ip = ipaddress.ip_address(lease["address"])
            if addresses and not any(ip in a.network for a in addresses if a.version == ip.version):
                errors.append(f"dhcp_static_leases: address {ip} is outside every subnet in 'address'")
        except ValueError:
            errors.append(f"dhcp_static_leases: address {lease['address']!r} is not an IP address")
    for dns in params.get("dhcp_dns") or []:
        try:
            if line_error(dns):
                raise ValueError(dns)
            ipaddress.ip_address(dns)
        except ValueError:
            errors.append(f"dhcp_dns: {dns!r} is not an IP address")
    if params.get("timeout") is not None and params["timeout"] < 1:
        errors.append(f"timeout: {params['timeout']} is not allowed; give seconds >= 1")
    return errors


def bridge_errors(params: dict) -> List[str]:
    """All problems with bridge parameters, each naming option, value and the allowed form."""
    name = params["name"]
    errors = [f"name: {e}" for e in [ifname_error(name)] if e]
    if not errors and name.startswith(RESERVED_PREFIXES):
        errors.append(f"name: {name!r} starts with a prefix systemd-nspawn derives itself "
                      f"({', '.join(RESERVED_PREFIXES)}); use corral.nspawn.zone for vz- bridges")
    for port in params.get("ports") or []:
        error = ifname_error(port)
        if error:
            errors.append(f"ports: {error}")
        elif port == name:
            errors.append(f"ports: {port!r} is the bridge itself")
    if params.get("mac_address") and params["mac_address"] != "none" and not _MAC.fullmatch(params["mac_address"]):
        errors.append(f"mac_address: {params['mac_address']!r} is not a MAC address like 02:00:00:00:00:01 "
                      "or V(none)")
    return errors + _common_errors(params)


def zone_errors(params: dict) -> List[str]:
    """All problems with zone parameters."""
    errors = [f"name: {e}" for e in [zone_name_error(params["name"])] if e]
    try:
        pool = ipaddress.ip_network(params.get("pool") or DEFAULT_ZONE_POOL)
        if pool.version != 4 or pool.prefixlen > ZONE_PREFIXLEN:
            errors.append(f"pool: {pool} must be an IPv4 network of /{ZONE_PREFIXLEN} or larger")
    except ValueError as exc:
        errors.append(f"pool: {params.get('pool')!r} is not a network in CIDR form like 10.88.0.0/16 ({exc})")
    return errors + _common_errors(params)


# ---------------------------------------------------------------- overlap and subnets

def overlap_errors(addresses: list, taken: List[tuple], option: str = "address") -> List[str]:
    """One error per desired subnet that overlaps ``(where, network)`` entries already in use."""
    errors = []
    for iface in addresses:
        clashes = [where for where, network in taken
                   if iface.network.version == network.version and iface.network.overlaps(network)]
        if clashes:
            errors.append(f"{option}: {iface.network} ({iface}) overlaps {', '.join(clashes)}; choose a free subnet")
    return errors


def zone_address(name: str, pool: str, taken: List[tuple]) -> Optional[str]:
    """Deterministic ``/24`` for zone ``name`` in ``pool``: a hash picks the start, the first free one wins."""
    net = ipaddress.ip_network(pool)
    subnets = list(net.subnets(new_prefix=ZONE_PREFIXLEN))
    start = int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(subnets)
    for step in range(len(subnets)):
        candidate = subnets[(start + step) % len(subnets)]
        if not any(n.version == 4 and candidate.overlaps(n) for _where, n in taken):
            return f"{candidate.network_address + 1}/{ZONE_PREFIXLEN}"
    return None


def managed_network_docs(files: Dict[str, str]) -> List[tuple]:
    """Our managed ``.network`` files (``{path: text}``) that parse, as ``(path, document)`` in path order."""
    docs = []
    for path, text in sorted(files.items()):
        base = os.path.basename(path)
        if not (base.startswith(FILE_PREFIX) and base.endswith(".network") and is_managed(text)):
            continue
        try:
            docs.append((path, unitfile.parse(text)))
        except unitfile.UnitFileError:
            continue
    return docs


def managed_networks(files: Dict[str, str]) -> List[dict]:
    """Our managed ``.network`` files (``{path: text}``) as ``{path, name, addresses}``."""
    found = []
    for path, doc in managed_network_docs(files):
        names = unitfile.get(doc, "Match", "Name")
        addresses = unitfile.get(doc, "Network", "Address")
        if names and addresses:
            found.append({"path": path, "name": names[-1], "addresses": addresses})
    return found


def managed_subnets(networks: List[dict], exclude: str = "") -> List[tuple]:
    """``(where, network)`` of other managed bridges/zones, for the overlap check."""
    taken = []
    for net in networks:
        if net["name"] == exclude:
            continue
        for address in net["addresses"]:
            try:
                taken.append((f"managed link {net['name']} ({net['path']})",
                              ipaddress.ip_interface(address).network))
            except ValueError:
                continue
    return taken


# ---------------------------------------------------------------- rendering

def render_netdev(ifname: str, stp: bool = False, mac_address: Optional[str] = None) -> str:
    netdev = [("Name", ifname), ("Kind", "bridge")]
    if mac_address:
        netdev.append(("MACAddress", mac_address))
    return unitfile.render([("NetDev", netdev), ("Bridge", [("STP", "yes" if stp else "no")])])


def render_network(ifname: str, params: dict, addresses: List[str], dhcp_server: bool) -> str:
    """The ``.network`` of a bridge or zone: static addresses, optional DHCP server, no NAT by default."""
    network = [("Address", a) for a in addresses]
    network.append(("ConfigureWithoutCarrier", "yes"))  # addresses exist before the first container
    if dhcp_server:
        network.append(("DHCPServer", "yes"))
    if params.get("ip_masquerade", "no") != "no":
        network.append(("IPMasquerade", params["ip_masquerade"]))
    if any(ipaddress.ip_interface(a).version == 6 for a in addresses):
        network.append(("IPv6SendRA", "yes"))
    server = []
    for key, option in (("PoolOffset", "dhcp_pool_offset"), ("PoolSize", "dhcp_pool_size")):
        if params.get(option) is not None:
            server.append((key, str(params[option])))
    if params.get("dhcp_dns"):
        server.append(("DNS", " ".join(params["dhcp_dns"])))
    doc = [("Match", [("Name", ifname)]), ("Network", network), ("DHCPServer", server if dhcp_server else [])]
    for lease in (params.get("dhcp_static_leases") or []) if dhcp_server else []:
        doc.append(("DHCPServerStaticLease", [("MACAddress", lease["mac"].lower()), ("Address", lease["address"])]))
    return unitfile.render(doc)


def build_bridge_files(params: dict) -> Dict[str, str]:
    """``{path: text}`` for a bridge (validated params; ``address`` a list of interface addresses)."""
    name = params["name"]
    files = {netdev_path(name): render_netdev(name, params.get("stp", False), params.get("mac_address")),
             network_path(name): render_network(name, params, params.get("address") or [],
                                                bool(params.get("dhcp_server") or params.get("dhcp_static_leases")))}
    for port in params.get("ports") or []:   # a port file enslaves the interface to the bridge
        files[port_path(name, port)] = unitfile.render([("Match", [("Name", port)]), ("Network", [("Bridge", name)])])
    return files


def build_zone_files(params: dict) -> Dict[str, str]:
    """``{path: text}`` for zone ``vz-NAME`` (``address`` resolved already, DHCP server on unless false)."""
    ifname = zone_ifname(params["name"])
    dhcp = params.get("dhcp_server") is not False
    files = {network_path(ifname): render_network(ifname, params, params.get("address") or [], dhcp)}
    if params.get("netdev", True):
        files[netdev_path(ifname)] = render_netdev(ifname)
    return files


def plan_files(desired: Dict[str, str], existing: Iterable[str]) -> Dict[str, Optional[str]]:
    """Desired files plus ``None`` (remove) for every existing file of ours that is no longer wanted."""
    plan: Dict[str, Optional[str]] = dict(desired)
    for path in existing:
        plan.setdefault(path, None)
    return plan


# ---------------------------------------------------------------- ownership and verification

def takeover_error(ifname: str, link_exists: bool, netdev_text: Optional[str], force: bool,
                   network_text: Optional[str] = None) -> Optional[str]:
    """Refuse to manage a live bridge we did not create, unless forced.

    Either of our files marks the link as ours: a .netdev deleted by hand is drift to repair,
    not a foreign bridge.
    """
    if not link_exists or force or is_managed(netdev_text) or is_managed(network_text):
        return None
    return (f"name: a link named {ifname!r} already exists and is not managed by corral.nspawn "
            f"(no managed {netdev_path(ifname)}); refusing to take it over. Use another name, or force=true "
            "to manage it from now on")


def verify_error(ifname: str, link, addresses: List[str]) -> Optional[str]:
    """None when ``link`` (netlink.Link or None) exists, is up and carries every address; else what is wrong."""
    if link is None:
        return f"link {ifname} does not exist"
    problems = []
    if link.kind and link.kind != "bridge":
        problems.append(f"kind is {link.kind!r}, not 'bridge'")
    if not link.up:
        problems.append("link is not up")
    have = {str(ipaddress.ip_interface(a)) for a in link.addresses}
    missing = [a for a in addresses if str(ipaddress.ip_interface(a)) not in have]
    if missing:
        problems.append(f"missing address(es) {', '.join(missing)}")
    if not problems:
        return None
    return (f"link {ifname}: {'; '.join(problems)} (observed: kind={link.kind or '?'}, up={link.up}, "
            f"operstate={link.operstate}, addresses={sorted(have)})")


# ---------------------------------------------------------------- the resource contract: plan

class NetworkError(CorralError):
    """A zone or bridge that cannot be planned, or networkd did not take it; ``details`` for fail_json."""


@dataclass
class LinkPlan:
    """What one zone or bridge needs: its files, its live repair, the link to delete (absent)."""

    ifname: str
    present: bool = True
    addresses: List[str] = field(default_factory=list)
    files: List[FileResult] = field(default_factory=list)
    changes: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    exists: bool = False
    must_exist: bool = False
    live_error: Optional[str] = None
    remove_link: bool = False

    def result(self, link) -> dict:
        """The zone/bridge module's result (``link``: the netlink.Link it has, or None)."""
        out = dict(changed=bool(self.changes), ifname=self.ifname, address=self.addresses, changes=self.changes,
                   files=[{"path": r.path, "action": r.action} for r in self.files if r.changed],
                   link=link.as_dict() if link else None)
        diffs = [r.diff for r in self.files if r.changed and r.diff]
        if diffs:
            out["diff"] = diffs
        return out


@dataclass
class NetworkState:
    """What network_io.read saw: our files in the networkd directory (text, mode) and the host's links."""

    ours: Dict[str, str] = field(default_factory=dict)
    modes: Dict[str, int] = field(default_factory=dict)
    net: netlink.HostNet = field(default_factory=netlink.HostNet)
    pending: List[tuple] = field(default_factory=list)   # the links planned in this call: (plan, result, label, timeout)

    def taken(self, ifname: str) -> List[tuple]:
        """Subnets in use elsewhere: host addresses/routes (not on ``ifname``) and other managed links."""
        return netlink.host_subnets(self.net, exclude_links={ifname}) + managed_subnets(
            managed_networks(self.ours), exclude=ifname)

    def existing(self, ifname: str) -> List[str]:
        return owned_paths(ifname, [os.path.basename(p) for p in self.ours])

    def record(self, plan: LinkPlan) -> None:
        """The state as it is once ``plan``'s files are written (for the next link of the same call)."""
        for result in plan.files:
            if result.action == "remove":
                self.ours.pop(result.path, None)
            elif result.changed:
                self.ours[result.path], self.modes[result.path] = result.content, 0o644


def _file_results(state: NetworkState, files: Dict[str, Optional[str]]) -> List[FileResult]:
    return [plan_file_mode(path, state.ours.get(path), state.modes.get(path, 0o644), text)
            for path, text in sorted(files.items())]


def plan_present(state: NetworkState, ifname: str, desired: Dict[str, str], addresses: List[str],
                 must_exist: bool) -> LinkPlan:
    """Files in place, networkd reloaded when they changed (or the live state is off), link verified."""
    problems = overlap_errors([parse_address(a) for a in addresses], state.taken(ifname))
    if problems:
        raise NetworkError("; ".join(problems))
    link = state.net.link(ifname)
    plan = LinkPlan(ifname, True, addresses, _file_results(state, plan_files(desired, state.existing(ifname))),
                    exists=link is not None, must_exist=must_exist)
    plan.changes = [f"{r.action} {r.path}" for r in plan.files if r.changed]
    plan.live_error = verify_error(ifname, link, addresses) if (plan.exists or must_exist) else None
    if plan.live_error and not plan.changes:
        plan.changes.append(f"repair live state ({plan.live_error})")
    if plan.exists and any(r.path == netdev_path(ifname) and r.action == "update" for r in plan.files):
        plan.warnings.append(f"{netdev_path(ifname)} changed: networkd applies .netdev changes to an existing "
                             f"{ifname} only when it is recreated (networkctl delete {ifname}; networkctl reload) "
                             "or at the next boot")
    return plan


def plan_absent(state: NetworkState, ifname: str) -> LinkPlan:
    """Remove our files; delete the link when we managed it and nothing is attached."""
    was_ours = is_managed(state.ours.get(netdev_path(ifname))) or is_managed(state.ours.get(network_path(ifname)))
    plan = LinkPlan(ifname, False, files=_file_results(state, {p: None for p in state.existing(ifname)}))
    plan.changes = [f"remove {r.path}" for r in plan.files if r.changed]
    link, ports = state.net.link(ifname), state.net.ports_of(ifname)
    plan.remove_link = bool(link) and was_ours and not ports
    if link and was_ours and ports:
        plan.warnings.append(f"{ifname} still has ports ({', '.join(ports)}); the link is left in place")
    if plan.remove_link:
        plan.changes.append(f"delete link {ifname}")
    return plan


def plan_bridge(params: dict, state: NetworkState) -> LinkPlan:
    name = params["name"]
    if params["state"] == "absent":
        return plan_absent(state, name)
    link = state.net.link(name)
    error = takeover_error(name, link is not None, state.ours.get(netdev_path(name)), params["force"],
                           state.ours.get(network_path(name)))
    if error:
        raise NetworkError(error, link=link.as_dict())
    params = dict(params, address=[str(parse_address(a)) for a in params.get("address") or []])
    return plan_present(state, name, build_bridge_files(params), params["address"], must_exist=True)


def plan_zone(params: dict, state: NetworkState) -> LinkPlan:
    """Addresses: the given ones, else the ones our file already has, else the deterministic pick from ``pool``."""
    ifname = zone_ifname(params["name"])
    if params["state"] == "absent":
        return plan_absent(state, ifname)
    addresses = [str(parse_address(a)) for a in params.get("address") or []]
    addresses = addresses or next((e["addresses"] for e in managed_networks(state.ours) if e["name"] == ifname), [])
    if not addresses:
        picked = zone_address(params["name"], params["pool"], state.taken(ifname))
        if picked is None:
            raise NetworkError(f"pool: no free /{ZONE_PREFIXLEN} left in {params['pool']} for zone "
                               f"{params['name']!r}; give 'address' or a larger pool")
        addresses = [picked]
    params = dict(params, address=addresses)
    return plan_present(state, ifname, build_zone_files(params), addresses, must_exist=params["netdev"])
