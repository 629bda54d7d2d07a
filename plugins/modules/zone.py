#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: zone
short_description: A systemd-nspawn network zone (C(Zone=NAME), bridge C(vz-NAME)) with a fixed subnet
version_added: 0.1.0
description:
  - Containers with C(Zone=NAME) in their C(.nspawn) file share the bridge C(vz-NAME). systemd's stock
    C(80-container-vz.network) gives such a bridge a random subnet from a pool; this module writes
    C(/etc/systemd/network/50-corral-vz-NAME.network) (sorted before the stock file, so it wins) with a
    deterministic subnet and a DHCP server, so containers get stable addresses.
  - Without O(address) the subnet is derived from the zone name, a C(/24) inside O(pool) (a hash picks
    the start, the first subnet free on the host is taken), and kept on later runs.
  - With O(netdev=true) a C(.netdev) creates the bridge right away and at every boot, before the first
    container starts. systemd-nspawn removes a zone bridge when its last container stops; a later run
    of this module (or the next container start, or a reboot) brings it back.
  - Applies changes with C(networkctl reload) only when a file changed, and verifies through netlink
    (pyroute2) that the bridge is up with its addresses.
  - The DHCP server is on unless O(dhcp_server=false).
  - The same overlap checks as M(corral.nspawn.bridge) apply (host addresses and routes, other managed
    bridges and zones).
author:
  - corral.nspawn contributors (@corral-nspawn)
options:
  name:
    description: Zone name; with the C(vz-) prefix it must fit in 15 characters (so at most 12).
    type: str
    required: true
  pool:
    description: IPv4 network a zone without O(address) takes its C(/24) from.
    type: str
    default: 10.88.0.0/16
  netdev:
    description: Also write C(50-corral-vz-NAME.netdev) so the bridge exists before any container starts.
    type: bool
    default: true
extends_documentation_fragment:
  - corral.nspawn.lock
  - corral.nspawn.network
attributes:
  check_mode:
    description: Predicts the same C(changed) as a real run; writes no file and reloads nothing.
    support: full
  diff_mode:
    description: Whole-file before/after of the C(.network) and C(.netdev) files.
    support: full
  platform:
    description: Hosts running systemd-networkd (systemd 249 or newer) with pyroute2 installed.
    support: full
    platforms: posix
requirements:
  - pyroute2 (Debian package C(python3-pyroute2))
seealso:
  - module: corral.nspawn.bridge
  - module: corral.nspawn.nat
  - module: corral.nspawn.settings
"""

EXAMPLES = r"""
- name: Zone "web" with a fixed subnet and DHCP
  corral.nspawn.zone:
    name: web
    address: 10.88.10.1/24

- name: Zone "db" with a subnet derived from its name
  corral.nspawn.zone:
    name: db

- name: Remove zone "old"
  corral.nspawn.zone:
    name: old
    state: absent
"""

RETURN = r"""
ifname:
  description: The zone's bridge interface name.
  returned: always
  type: str
  sample: vz-web
address:
  description: Addresses of the host on the zone bridge (the derived one when O(address) was omitted).
  returned: always
  type: list
  elements: str
  sample: [10.88.10.1/24]
files:
  description: Files written or removed, with the action taken (or that check mode predicts).
  returned: always
  type: list
  elements: dict
  sample: [{path: /etc/systemd/network/50-corral-vz-web.network, action: create}]
link:
  description: The live bridge as read through netlink (null when it does not exist or was not read).
  returned: always
  type: dict
  sample: {name: vz-web, kind: bridge, up: true, operstate: "no-carrier", master: null, addresses: [10.88.10.1/24]}
changes:
  description: What changed, in words.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.corral.nspawn.plugins.module_utils import network_io, networkd


def main():
    network_io.run_module(networkd.ZONE_OPTION_SPEC, networkd.zone_errors, network_io.zone)


if __name__ == "__main__":
    main()
