# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Live network state (links, addresses, routes), read over rtnetlink; links deleted through pyroute2.

The pyroute2 import is guarded: modules call :func:`require` first, which fails with
``missing_required_lib`` when pyroute2 is not installed on the host. The
snapshot is plain data (:class:`HostNet`) so planning code stays pure.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional

# pyroute2 is imported where a link is deleted, not here: its import costs 0.2-0.5 s on a test host, more
# than a whole no-op networks run spends reading (read() below uses the socket module). Finding it is cheap.
HAS_PYROUTE2 = importlib.util.find_spec("pyroute2") is not None
PYROUTE2_IMPORT_ERROR = None if HAS_PYROUTE2 else "ModuleNotFoundError: No module named 'pyroute2'"

IFF_UP = 0x1
MAIN_TABLE = 254
# rtnetlink (linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h): what read() asks and the attributes it reads
NLMSG_ERROR, NLMSG_DONE, DUMP_REQUEST = 2, 3, 0x301          # DUMP_REQUEST: NLM_F_REQUEST | NLM_F_DUMP
RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE = 18, 22, 26
IFLA_IFNAME, IFLA_MASTER, IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_INFO_KIND = 3, 10, 16, 18, 1
IFA_ADDRESS, RTA_DST, RTA_OIF, RTA_TABLE = 1, 1, 4, 15
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
HEADER = struct.Struct("=IHHII")     # nlmsghdr: length, type, flags, sequence, port
IFINFO = struct.Struct("=BxHiII")    # ifinfomsg: family, type, index, flags, change
IFADDR = struct.Struct("=BBBBI")     # ifaddrmsg: family, prefix length, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags


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


def _attrs(data: bytes, offset: int = 0) -> Dict[int, bytes]:
    """The netlink attributes of ``data`` from ``offset`` on: {type: payload} (nested/byte-order bits dropped)."""
    found = {}
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found[kind & 0x3FFF] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return found


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _u32(raw: Optional[bytes]) -> Optional[int]:
    return struct.unpack("=I", raw[:4])[0] if raw else None


def _dump(sock: socket.socket, kind: int, request: bytes) -> Iterator[bytes]:
    """The body of every message that answers one dump request (``request``: its family header)."""
    sock.send(HEADER.pack(HEADER.size + len(request), kind, DUMP_REQUEST, kind, 0) + request)
    while True:
        data, offset = sock.recv(1 << 20), 0
        while offset + HEADER.size <= len(data):
            length, mtype = HEADER.unpack_from(data, offset)[:2]
            if mtype == NLMSG_DONE:
                return
            body = data[offset + HEADER.size:offset + length]
            if mtype == NLMSG_ERROR and struct.unpack_from("=i", body)[0]:
                code = -struct.unpack_from("=i", body)[0]
                raise OSError(code, f"rtnetlink dump (type {kind}): {os.strerror(code)}")
            if mtype != NLMSG_ERROR:
                yield body
            offset += max(HEADER.size, (length + 3) & ~3)


def _links(sock: socket.socket) -> Dict[int, Link]:
    links = {}
    for body in _dump(sock, RTM_GETLINK, IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
        index, flags = IFINFO.unpack_from(body)[2:4]
        attrs = _attrs(body, IFINFO.size)
        oper = attrs.get(IFLA_OPERSTATE)
        links[index] = Link(name=_text(attrs.get(IFLA_IFNAME, b"")), index=index, up=bool(flags & IFF_UP),
                            kind=_text(_attrs(attrs.get(IFLA_LINKINFO, b"")).get(IFLA_INFO_KIND, b"")),
                            operstate=OPERSTATES[oper[0]] if oper and oper[0] < len(OPERSTATES) else "",
                            master=_u32(attrs.get(IFLA_MASTER)))
    for link in links.values():  # IFLA_MASTER is an index; keep names only
        link.master = links[link.master].name if link.master in links else None
    return links


def read() -> HostNet:
    """Read links, their addresses and the main routing table (IPv4 and IPv6): four dumps on one socket."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        by_index = _links(sock)
        for body in _dump(sock, RTM_GETADDR, IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            family, prefix, _flags, _scope, index = IFADDR.unpack_from(body)
            address = _attrs(body, IFADDR.size).get(IFA_ADDRESS)
            if index in by_index and address:
                by_index[index].addresses.append(f"{socket.inet_ntop(family, address)}/{prefix}")
        routes = []
        for family, default in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            for body in _dump(sock, RTM_GETROUTE, RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)):
                dst_len, table = RTMSG.unpack_from(body)[1], RTMSG.unpack_from(body)[4]
                attrs = _attrs(body, RTMSG.size)
                if (_u32(attrs.get(RTA_TABLE)) or table) != MAIN_TABLE:
                    continue
                dst = socket.inet_ntop(family, attrs[RTA_DST]) if RTA_DST in attrs else default
                link = by_index.get(_u32(attrs.get(RTA_OIF)))
                routes.append((link.name if link else "", f"{dst}/{dst_len}"))
    return HostNet({link.name: link for link in by_index.values()}, routes)


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
