# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options shared by corral.nspawn.bridge and corral.nspawn.zone.

    Mirrors COMMON_OPTION_SPEC in plugins/module_utils/networkd.py.
    """

    DOCUMENTATION = r"""
options:
  state:
    description:
      - V(present) writes the C(.netdev)/C(.network) files, reloads systemd-networkd when they changed and
        verifies the live link.
      - V(absent) removes the files this module wrote and deletes the link when it has no ports left.
    type: str
    default: present
    choices: [present, absent]
  address:
    description:
      - Addresses of the host on this link, each C(IP/PREFIX) with a host address, for example
        V(10.20.0.1/24) or V(fd00:20::1/64). The subnet is what containers on the link use.
      - A subnet that overlaps an address or route already on the host, or another bridge or zone managed
        by corral.nspawn, is refused.
      - An IPv6 address also turns on router advertisements (C(IPv6SendRA=yes)).
    type: list
    elements: str
  dhcp_server:
    description:
      - Run systemd-networkd's DHCP server on the link (C(DHCPServer=yes)), so containers with the stock
        C(host0) configuration get an address, a default route and DNS. Needs an IPv4 O(address).
    type: bool
  dhcp_pool_offset:
    description: C(PoolOffset=) of the DHCP server, the first leased address relative to the subnet start.
    type: int
  dhcp_pool_size:
    description: C(PoolSize=) of the DHCP server, how many addresses it leases.
    type: int
  dhcp_dns:
    description: DNS servers the DHCP server hands out (C(DNS=) in C([DHCPServer])); default is the host's own.
    type: list
    elements: str
  dhcp_static_leases:
    description: Fixed leases (C([DHCPServerStaticLease]) sections); turn the DHCP server on.
    type: list
    elements: dict
    suboptions:
      mac:
        description: MAC address of the container's C(host0), for example V(02:00:00:00:20:05).
        type: str
        required: true
      address:
        description: IPv4 address inside the link's subnet.
        type: str
        required: true
  ip_masquerade:
    description:
      - C(IPMasquerade=) of systemd-networkd. Off by default because M(corral.nspawn.nat) owns NAT; turning it
        on makes networkd add its own rules in the C(io.systemd.nat) table.
    type: str
    default: 'no'
    choices: ['no', ipv4, ipv6, both]
  timeout:
    description: Seconds to wait for systemd-networkd to bring the link up with its addresses.
    type: int
    default: 20
"""
