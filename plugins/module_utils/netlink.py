# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Live network state read through pyroute2 (links, addresses, routes).

The import is guarded: modules call :func:`require` first, which fails with
``missing_required_lib`` when pyroute2 is not installed on the host. The
snapshot is plain data (:class:`HostNet`) so planning code stays pure.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

# pyroute2 is imported where netlink is read, not here: its import costs 0.1-0.3 s, and every module
# that only plans networks (the fleet, through networkd) would pay it on each run. Finding it is cheap.
HAS_PYROUTE2 = importlib.util.find_spec("pyroute2") is not None
PYROUTE2_IMPORT_ERROR = None if HAS_PYROUTE2 else "ModuleNotFoundError: No module named 'pyroute2'"

IFF_UP = 0x1
MAIN_TABLE = 254


@dataclass
class Link:
    """One network interface as the kernel reports it."""

    name: str
    index: int
    kind: str = ""
    up: bool = False
    operstate: str = ""
    master: Optional[str] = None
    addresses: List[str] = field(default_factory=list)  # interface form, e.g. 10.0.0.1/24

    def as_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "up": self.up, "operstate": self.operstate,
                "master": self.master, "addresses": list(self.addresses)}


@dataclass
class HostNet:
    """Snapshot of the host's links (with addresses) and main-table routes ``(ifname, network)``."""

    links: Dict[str, Link] = field(default_factory=dict)
    routes: List[tuple] = field(default_factory=list)

    def link(self, name: str) -> Optional[Link]:
        return self.links.get(name)

    def ports_of(self, bridge: str) -> List[str]:
        return sorted(link.name for link in self.links.values() if link.master == bridge)


def require(module) -> None:
    """Fail the module cleanly when pyroute2 is missing."""
    if not HAS_PYROUTE2:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib("pyroute2 (Debian: python3-pyroute2)"),
                         exception=PYROUTE2_IMPORT_ERROR)


def _attr(msg, name, default=None):
    value = msg.get_attr(name)
    return default if value is None else value


def _link_from_msg(msg) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    kind = (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or ""
    return Link(name=_attr(msg, "IFLA_IFNAME", ""), index=msg["index"], kind=kind,
                up=bool(msg["flags"] & IFF_UP), operstate=str(_attr(msg, "IFLA_OPERSTATE", "")).lower(),
                master=_attr(msg, "IFLA_MASTER"))


def read() -> HostNet:
    """Read links, their addresses and the main routing table (IPv4 and IPv6)."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        links = {}
        by_index = {}
        for msg in ipr.get_links():
            link = _link_from_msg(msg)
            links[link.name] = link
            by_index[link.index] = link
        for link in links.values():  # IFLA_MASTER is an index; keep names only
            link.master = by_index[link.master].name if link.master in by_index else None
        for msg in ipr.get_addr():
            link = by_index.get(msg["index"])
            if link is not None:
                link.addresses.append(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
        routes = []
        for family in (2, 10):  # AF_INET, AF_INET6
            for msg in ipr.get_routes(family=family, table=MAIN_TABLE):
                dst = msg.get_attr("RTA_DST") or ("0.0.0.0" if family == 2 else "::")
                link = by_index.get(msg.get_attr("RTA_OIF"))
                routes.append((link.name if link else "", f"{dst}/{msg['dst_len']}"))
    return HostNet(links, routes)


def host_subnets(net: HostNet, exclude_links=()) -> List[tuple]:
    """``(where, network)`` for every address and specific route on the host, minus ``exclude_links``.

    Default routes, link-local and loopback networks are left out: they overlap everything
    or nothing useful.
    """
    found = []
    for link in net.links.values():
        if link.name in exclude_links or link.name == "lo":
            continue
        for address in link.addresses:
            found.append((f"address {address} on {link.name}", ipaddress.ip_interface(address).network))
    for ifname, dst in net.routes:
        if ifname in exclude_links:
            continue
        network = ipaddress.ip_network(dst, strict=False)
        if network.prefixlen:
            found.append((f"route {dst} dev {ifname or '?'}", network))
    return [(where, network) for where, network in found
            if not (network.is_link_local or network.is_loopback or network.is_multicast)]


def wait_for(check, timeout: float, interval: float = 0.3):
    """Call ``check(read())`` until it returns None (success) or ``timeout`` passes; return last error."""
    deadline = time.monotonic() + timeout
    while True:
        net = read()
        error = check(net)
        if error is None or time.monotonic() >= deadline:
            return error, net
        time.sleep(interval)


def delete_link(name: str) -> None:
    """Remove one interface by name."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if found:
            ipr.link("del", index=found[0])
