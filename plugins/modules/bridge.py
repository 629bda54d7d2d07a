#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: bridge
short_description: A persistent host bridge for systemd-nspawn containers (C(Bridge=))
version_added: 0.1.0
description:
  - Writes a systemd-networkd C(.netdev) (C(Kind=bridge), STP, MAC address) and C(.network) (addresses,
    optional DHCP server with pool and static leases, no masquerading by default) as
    C(/etc/systemd/network/50-corral-NAME.netdev) and C(.network), and one
    C(50-corral-NAME-port-IFACE.network) per enslaved port in O(ports). Every file starts with a
    managed-file comment.
  - Applies them now with C(networkctl reload), only when a file changed (or the live link is not as
    configured), then verifies through netlink (pyroute2) that the bridge exists, is up and has its
    addresses; a failed verification is an error that shows the observed state.
  - Refuses to take over an existing link of the same name that it did not create, unless O(force=true).
  - Containers join it with C(Bridge=NAME) in their C(.nspawn) file (M(corral.nspawn.settings)); their
    host-side links are named C(vb-MACHINE).
  - DHCP server is off unless O(dhcp_server=true) or O(dhcp_static_leases) are given.
author:
  - corral.nspawn contributors (@corral-nspawn)
options:
  name:
    description:
      - Bridge interface name, at most 15 characters. Names starting with C(ve-), C(vb-) or C(vz-) are
        reserved for links systemd-nspawn creates (use M(corral.nspawn.zone) for C(vz-) bridges).
    type: str
    required: true
  stp:
    description: Spanning tree protocol on the bridge (C(STP=) in C([Bridge])).
    type: bool
    default: false
  mac_address:
    description:
      - C(MACAddress=) of the bridge. Omit for the persistent address systemd derives from the machine ID;
        V(none) lets the kernel choose.
    type: str
  ports:
    description:
      - Host interfaces to enslave to the bridge (for example an uplink NIC, so containers sit on the LAN).
        Each gets a C(.network) with C(Bridge=NAME); ports removed from the list have their file removed.
    type: list
    elements: str
    default: []
  force:
    description: Manage a same-name link that already exists although corral.nspawn did not create it.
    type: bool
    default: false
extends_documentation_fragment:
  - corral.nspawn.lock
  - corral.nspawn.network
attributes:
  check_mode:
    description: Predicts the same C(changed) as a real run; writes no file and reloads nothing.
    support: full
  diff_mode:
    description: Whole-file before/after of every C(.netdev)/C(.network) file.
    support: full
  platform:
    description: Hosts running systemd-networkd (systemd 249 or newer) with pyroute2 installed.
    support: full
    platforms: posix
requirements:
  - pyroute2 (Debian package C(python3-pyroute2))
seealso:
  - module: corral.nspawn.zone
  - module: corral.nspawn.nat
"""

EXAMPLES = r"""
- name: A bridge for containers with a DHCP server
  corral.nspawn.bridge:
    name: corralbr0
    address:
      - 10.20.0.1/24
      - fd00:20::1/64
    dhcp_server: true
    dhcp_pool_offset: 100
    dhcp_pool_size: 50
    dhcp_static_leases:
      - mac: "02:00:00:00:20:05"
        address: 10.20.0.5

- name: Put containers on the LAN through eth1 (no address on the host side)
  corral.nspawn.bridge:
    name: lanbr
    ports: [eth1]

- name: Remove the bridge and its files
  corral.nspawn.bridge:
    name: corralbr0
    state: absent
"""

RETURN = r"""
ifname:
  description: The bridge interface name.
  returned: always
  type: str
  sample: corralbr0
address:
  description: Addresses configured on the bridge (normalised).
  returned: always
  type: list
  elements: str
  sample: [10.20.0.1/24]
files:
  description: Files written or removed, with the action taken (or that check mode predicts).
  returned: always
  type: list
  elements: dict
  sample: [{path: /etc/systemd/network/50-corral-corralbr0.network, action: create}]
link:
  description: The live link as read through netlink after the run (null when absent or not read).
  returned: always
  type: dict
  sample: {name: corralbr0, kind: bridge, up: true, operstate: "no-carrier", master: null, addresses: [10.20.0.1/24]}
changes:
  description: What changed, in words.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.corral.nspawn.plugins.module_utils import network_io, networkd


def main():
    network_io.run_module(networkd.BRIDGE_OPTION_SPEC, networkd.bridge_errors, network_io.bridge)


if __name__ == "__main__":
    main()
