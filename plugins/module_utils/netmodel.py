# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""The fleet's network model (pure): one attachment per machine, its links, addresses planned fleet-wide.

- **Attachment.** A machine is attached by exactly one of ``zone: NAME``, ``bridge: NAME`` or
  ``network: veth | host | none``. The layers (defaults, host defaults, the machine) are merged
  with one rule: the most specific layer that sets any of these keys wins *as a whole*, so a
  machine that says ``bridge: br-lab`` drops an inherited ``zone``.
- **Links.** The container-side links a machine gets (``host0`` of its veth, ``mv-*``, ``iv-*``,
  moved interfaces, extra veths): the image preparation writes a networkd file for each (DHCP
  unless a static address is given).
- **Address plan.** Static addresses are checked against the subnets of the host's zones and
  bridges (declared in the network role's variables, or managed on the host): inside the subnet,
  not the host's own address, not network or broadcast, unique on the host, below the DHCP pool.
  Every error at once, before any change; warnings for what cannot be checked.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils import networkd, unitfile
from ansible_collections.corral.nspawn.plugins.module_utils.names import zone_ifname
from ansible_collections.corral.nspawn.plugins.module_utils.nspawn_settings import as_bool

ATTACHMENT_KEYS = ("zone", "bridge", "network")
NETWORK_MODES = ("veth", "host", "none")
VETH_KINDS = ("zone", "bridge", "veth")   # attachments with a host0 link inside the container
# settings keys that add links inside the container, and the prefix systemd-nspawn gives their name
LINK_SETTINGS = (("macvlan", "mv-"), ("ipvlan", "iv-"), ("interface", ""), ("virtual_ethernet_extra", ""))
IFNAMSIZ = 15


# ---------------------------------------------------------------- attachment

def merge_attachment(layers: Iterable[Optional[dict]]) -> dict:
    """The most specific layer that sets any attachment key wins as a whole (earlier layers first; None inherits)."""
    chosen: dict = {}
    for layer in layers:
        found = {k: layer[k] for k in ATTACHMENT_KEYS if isinstance(layer, dict) and layer.get(k) is not None}
        if found:
            chosen = found
    return chosen


def attachment_errors(label: str, zone, bridge, network) -> List[str]:
    given = [k for k, v in (("zone", zone), ("bridge", bridge), ("network", network)) if v is not None]
    errors = []
    if len(given) > 1:
        errors.append(f"{label}: {' and '.join(given)} are given in the same layer; a machine has one attachment: "
                      "zone: NAME, bridge: NAME or network: veth|host|none")
    if network is not None and network not in NETWORK_MODES:
        errors.append(f"{label}.network: {network!r} is not one of {', '.join(NETWORK_MODES)} "
                      "(for a zone or bridge use zone: NAME or bridge: NAME)")
    return errors


def attachment(zone: Optional[str], bridge: Optional[str], network: Optional[str], settings: dict) -> dict:
    """``{kind, name}``: zone | bridge | veth | host | none (settings decide when no key is given)."""
    if zone is not None:
        return {"kind": "zone", "name": zone}
    if bridge is not None:
        return {"kind": "bridge", "name": bridge}
    if network is not None:
        return {"kind": network, "name": None}
    settings = settings if isinstance(settings, dict) else {}
    if settings.get("zone"):
        return {"kind": "zone", "name": settings["zone"]}
    if settings.get("bridge"):
        return {"kind": "bridge", "name": settings["bridge"]}
    if as_bool(settings.get("private_network")) is False:
        return {"kind": "host", "name": None}
    if as_bool(settings.get("virtual_ethernet")) is False:
        return {"kind": "none", "name": None}
    return {"kind": "veth", "name": None}   # systemd-nspawn@.service passes --network-veth


def network_settings(network: Optional[str]) -> dict:
    """The .nspawn settings a ``network`` mode stands for."""
    return {"host": {"private_network": False, "virtual_ethernet": False},
            "none": {"private_network": True, "virtual_ethernet": False},
            "veth": {"virtual_ethernet": True}}.get(network or "", {})


# ---------------------------------------------------------------- links inside the container

def _items(value) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value]


def _link_match(name: str) -> str:
    """A networkd Name= match for a link systemd-nspawn names: longer names are shortened by it, so match the prefix."""
    return name if len(name) <= IFNAMSIZ else name[:IFNAMSIZ - 1] + "*"


def container_links(kind: str, settings: dict) -> List[str]:
    """Names (networkd Name= matches) of the links the container gets: host0 first, then the others."""
    settings = settings if isinstance(settings, dict) else {}
    links = ["host0"] if kind in VETH_KINDS else []
    for key, prefix in LINK_SETTINGS:
        for item in _items(settings.get(key)):
            host_side, _sep, inside = item.partition(":")
            links.append(_link_match(inside or prefix + host_side))
    return [link for index, link in enumerate(links) if link not in links[:index]]


# ---------------------------------------------------------------- the host's networks

@dataclass
class Net:
    """A zone or bridge of the host as far as addresses are concerned."""

    kind: str                       # zone | bridge
    name: str                       # zone name or bridge name
    link: str                       # vz-NAME or the bridge name
    interfaces: list = field(default_factory=list)   # the host's addresses on it (ip_interface)
    dhcp: bool = False
    pool_offset: Optional[int] = None
    pool_size: Optional[int] = None
    leases: list = field(default_factory=list)       # static lease addresses (ip_address)
    where: str = ""                 # declared | on the host


def _parsed(values, parse=ipaddress.ip_interface) -> list:
    """The ``values`` that ``parse`` takes (the zone/bridge module reports the others)."""
    out = []
    for value in values or []:
        try:
            out.append(parse(str(value)))
        except ValueError:
            continue
    return out


def _int(value) -> Optional[int]:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def host_networks(files: Dict[str, str]) -> Dict[str, Net]:
    """Managed zone/bridge ``.network`` files (``{path: text}``) -> ``{link: Net}``."""
    nets = {}
    for path, doc in networkd.managed_network_docs(files):
        names = unitfile.get(doc, "Match", "Name")
        if not names or unitfile.get(doc, "Network", "Bridge"):
            continue   # a port file (enslaves an interface), not a bridge or zone
        link = names[-1]
        kind, name = ("zone", link[3:]) if link.startswith("vz-") else ("bridge", link)
        nets[link] = Net(kind, name, link, _parsed(unitfile.get(doc, "Network", "Address")),
                         "yes" in unitfile.get(doc, "Network", "DHCPServer"),
                         _int((unitfile.get(doc, "DHCPServer", "PoolOffset") or [None])[-1]),
                         _int((unitfile.get(doc, "DHCPServer", "PoolSize") or [None])[-1]),
                         _parsed(unitfile.get(doc, "DHCPServerStaticLease", "Address"), ipaddress.ip_address),
                         f"on the host ({path})")
    return nets


def _declared(kind: str, item: dict) -> Net:
    link = zone_ifname(item["name"]) if kind == "zone" else item["name"]
    dhcp = item.get("dhcp_server") is not False if kind == "zone" else bool(
        item.get("dhcp_server") or item.get("dhcp_static_leases"))
    leases = [lease.get("address") for lease in item.get("dhcp_static_leases") or [] if isinstance(lease, dict)]
    return Net(kind, item["name"], link, _parsed(item.get("address")), dhcp, _int(item.get("dhcp_pool_offset")),
               _int(item.get("dhcp_pool_size")), _parsed(leases, ipaddress.ip_address), f"corral_network_{kind}s")


def known_networks(zones: List[dict], bridges: List[dict], on_host: Dict[str, Net]) -> Dict[str, Net]:
    """Declared zones and bridges (the network role's variables) over what is managed on the host.

    A declared zone without an address keeps the subnet it has on the host, else gets the one the
    zone module derives from its name (the first free /24 of its pool, given the other networks).
    """
    nets = dict(on_host)
    pending = []
    for kind, items in (("zone", zones), ("bridge", bridges)):
        for item in items or []:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            net = _declared(kind, item)
            if item.get("state") == "absent":
                nets.pop(net.link, None)
                continue
            if not net.interfaces and kind == "zone":
                net.interfaces = (on_host.get(net.link) or Net(kind, "", "")).interfaces
                if not net.interfaces:
                    pending.append((net, item.get("pool") or networkd.DEFAULT_ZONE_POOL))
            nets[net.link] = net
    for net, pool in pending:
        taken = [(n.link, i.network) for n in nets.values() for i in n.interfaces]
        try:
            derived = networkd.zone_address(net.name, pool, taken)
        except ValueError:
            derived = None
        net.interfaces = _parsed([derived] if derived else [])
    return nets


# ---------------------------------------------------------------- address plan

@dataclass
class Wanted:
    """One machine's attachment and static addresses, as the planner sees it."""

    name: str
    kind: str
    network: Optional[str]                     # zone or bridge name
    addresses: List[Tuple[str, str]] = field(default_factory=list)   # (option, IP/PREFIX)


@dataclass
class AddressPlan:
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)


def pool_range(net: Net, subnet) -> Optional[Tuple[object, object]]:
    """First and last address networkd's DHCP server leases on ``subnet`` (IPv4), or None."""
    if not net.dhcp or subnet.version != 4 or subnet.num_addresses < 4:
        return None
    first = subnet.network_address + (net.pool_offset or 1)
    last = subnet.broadcast_address - 1
    if net.pool_size:
        last = min(last, first + net.pool_size - 1)
    return (first, last) if first <= last else None


def _check_one(wanted: Wanted, option: str, value: str, net: Net, plan: AddressPlan) -> None:
    label = f"machines[{wanted.name}].{option}"
    where = f"{wanted.kind} {wanted.network} ({net.link}, {net.where})"
    iface = ipaddress.ip_interface(value)
    own = [i for i in net.interfaces if i.version == iface.version]
    if not own:
        plan.errors.append(f"{label}: {value} is IPv{iface.version}, but {where} has no IPv{iface.version} "
                           f"subnet (its addresses: {', '.join(map(str, net.interfaces)) or 'none'})")
        return
    subnet = next((i.network for i in own if iface.ip in i.network), None)
    if subnet is None:
        plan.errors.append(f"{label}: {value} is outside the subnet of {where}: "
                           f"{', '.join(str(i.network) for i in own)}; give an address inside it")
        return
    if iface.network.prefixlen != subnet.prefixlen:
        plan.errors.append(f"{label}: {value} has prefix length /{iface.network.prefixlen}, but the subnet of "
                           f"{where} is {subnet}; give /{subnet.prefixlen}")
    if any(iface.ip == i.ip for i in own):
        plan.errors.append(f"{label}: {value} is the host's own address on {where} (the machines' gateway); "
                           "give another address of the subnet")
    elif subnet.num_addresses > 2 and iface.ip == subnet.network_address:
        plan.errors.append(f"{label}: {value} is the network address of {subnet}; give a host address")
    elif subnet.version == 4 and subnet.num_addresses > 2 and iface.ip == subnet.broadcast_address:
        plan.errors.append(f"{label}: {value} is the broadcast address of {subnet}; give a host address")
    pool = pool_range(net, subnet)
    if pool and pool[0] <= iface.ip <= pool[1]:
        plan.warnings.append(f"{label}: {value} is inside the DHCP pool of {where} ({pool[0]}-{pool[1]}): its DHCP "
                             "server may lease it to another machine; keep static addresses below the pool "
                             f"(below {pool[0]}, or raise dhcp_pool_offset)")


def plan_addresses(machines: List[Wanted], nets: Dict[str, Net], forwards: Optional[List[dict]] = None,
                   declared_zones: Optional[List[str]] = None) -> AddressPlan:
    """Every static address of the host's machines checked at once (pure); errors and warnings."""
    plan = AddressPlan()
    owners: Dict[object, List[str]] = {}
    warned = set()
    for wanted in machines:
        link = zone_ifname(wanted.network) if wanted.kind == "zone" else wanted.network if wanted.kind == "bridge" else None
        net = nets.get(link) if link else None
        if wanted.kind == "zone" and net is None and wanted.network not in warned:
            warned.add(wanted.network)
            plan.warnings.append(
                f"zone {wanted.network!r} is declared by no corral_network_zones entry and not managed by corral on this "
                f"host (declared: {', '.join(declared_zones or []) or 'none'}): systemd-nspawn then creates "
                f"vz-{wanted.network} with a random subnet outside corral's management (no address checks, not in the "
                "NAT masquerade list); add it to corral_network_zones")
        for option, value in wanted.addresses:
            owners.setdefault(ipaddress.ip_interface(value).ip, []).append(f"{wanted.name}.{option}")
            if wanted.kind not in VETH_KINDS:
                plan.errors.append(f"machines[{wanted.name}].{option}: {value} needs a virtual Ethernet link "
                                   f"(zone, bridge or network: veth), but the machine has network: {wanted.kind}")
            elif net is not None:
                _check_one(wanted, option, value, net, plan)
            elif wanted.kind == "bridge":
                plan.warnings.append(f"machines[{wanted.name}].{option}: {value} not checked: bridge "
                                     f"{wanted.network} is neither in corral_network_bridges nor managed by corral "
                                     "on this host, so its subnet is unknown")
    for address, names in sorted(owners.items(), key=lambda item: str(item[0])):
        if len(names) > 1:
            plan.errors.append(f"machines[{', '.join(names)}]: {address} is given to {len(names)} machines; "
                               "a static address must be unique on the host")
    plan.warnings += forward_warnings(forwards or [], set(owners), nets)
    return plan


def forward_warnings(forwards: List[dict], static: set, nets: Dict[str, Net]) -> List[str]:
    """Port forwards whose target is no declared machine's static address nor a fixed DHCP lease."""
    known = set(static).union(*(net.leases for net in nets.values()))
    warnings = []
    for forward in forwards:
        if not isinstance(forward, dict):
            continue
        try:
            target = ipaddress.ip_address(str(forward.get("address")))
        except ValueError:
            continue   # the nat module refuses it
        if target not in known:
            warnings.append(f"corral_network_port_forwards: {forward.get('proto', 'tcp')}/{forward.get('host_port')} "
                            f"-> {target} targets no declared machine's static address (nor a fixed DHCP lease) "
                            "on this host; the forward leads nowhere until a machine has that address")
    return warnings
