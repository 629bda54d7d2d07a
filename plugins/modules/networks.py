#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: networks
short_description: Zones, bridges and the NAT table of one host in one call
version_added: 0.1.0
description:
  - What M(corral.nspawn.zone) does for each item of O(zones), M(corral.nspawn.bridge) for each item of O(bridges) and
    M(corral.nspawn.nat) for O(nat), in that order, in one module invocation - the same code with the same options,
    so a host with any number of zones and bridges costs one round trip. The network role calls it; the three
    modules stay for direct use.
  - Every item is validated against its own module's options (types, choices, defaults) and checks before any
    change; errors name the item (C(zones[apps]), C(bridges[br0]), C(nat)), the option and the value.
  - With zones or bridges and O(networkd=true), enables and starts C(systemd-networkd.service) first (Debian does not
    enable it; its links are the zones and bridges).
  - A failure part way (a link that does not come up, C(networkctl reload) failing) reports RV(changes) made so far
    and C(changed) accordingly.
author:
  - corral.nspawn contributors (@corral-nspawn)
extends_documentation_fragment:
  - corral.nspawn.lock
options:
  zones:
    description:
      - Zones, each a dict of M(corral.nspawn.zone) options (C(name) required; C(state), C(address), C(pool), C(netdev),
        C(dhcp_server), C(dhcp_pool_offset), C(dhcp_pool_size), C(dhcp_dns), C(dhcp_static_leases), C(ip_masquerade),
        C(timeout)), with that module's defaults.
    type: list
    elements: dict
    default: []
  bridges:
    description:
      - Bridges, each a dict of M(corral.nspawn.bridge) options (C(name) required; C(state), C(address), C(ports), C(stp),
        C(mac_address), C(force), the C(dhcp_*) options, C(ip_masquerade), C(timeout)), with that module's defaults.
    type: list
    elements: dict
    default: []
  nat:
    description:
      - The options of M(corral.nspawn.nat) (C(table), C(state), C(masquerade), C(uplinks), C(links), C(networks),
        C(forwards), C(localhost), C(integrate), C(force)), applied after the zones and bridges. Not given leaves
        NAT alone.
    type: dict
  networkd:
    description: With zones or bridges, enable and start C(systemd-networkd.service) first.
    type: bool
    default: true
attributes:
  check_mode:
    description: Predicts the same C(changed) as a real run, as each of the three modules does.
    support: full
  diff_mode:
    description: The diffs of every zone, bridge and the NAT table, in that order.
    support: full
  platform:
    description: Hosts running systemd-networkd with pyroute2 (zones, bridges) and nftables (NAT).
    support: full
    platforms: posix
requirements:
  - pyroute2 (Debian package C(python3-pyroute2)) for zones and bridges
  - python3-nftables (libnftables binding) or the C(nft) command for NAT
seealso:
  - module: corral.nspawn.zone
  - module: corral.nspawn.bridge
  - module: corral.nspawn.nat
"""

EXAMPLES = r"""
- name: One zone, one bridge, NAT with a port forward, in one call
  corral.nspawn.networks:
    zones:
      - name: apps
        address: [10.88.0.1/24]
    bridges:
      - name: br-corral
        address: [10.89.0.1/24]
        dhcp_server: true
    nat:
      forwards:
        - {proto: tcp, host_port: 8080, address: 10.88.0.10, port: 80}
"""

RETURN = r"""
zones:
  description: Each zone's result (what M(corral.nspawn.zone) returns), by name.
  returned: always
  type: dict
  sample: {apps: {changed: false, ifname: vz-apps, address: [10.88.0.1/24], changes: [], files: []}}
bridges:
  description: Each bridge's result (what M(corral.nspawn.bridge) returns), by name.
  returned: always
  type: dict
  sample: {br-corral: {changed: false, ifname: br-corral, address: [10.89.0.1/24], changes: [], files: []}}
nat:
  description: What M(corral.nspawn.nat) returns; null without O(nat).
  returned: always
  type: dict
  sample: {changed: false, table: inet corral, changes: []}
changes:
  description: What changed (or would in check mode), in words, each prefixed by its item.
  returned: always
  type: list
  elements: str
  sample: ["zones[apps]: create /etc/systemd/network/50-corral-vz-apps.netdev", "nat: replace table inet corral"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.corral.nspawn.plugins.module_utils import lock, networks
from ansible_collections.corral.nspawn.plugins.module_utils.errors import run_module


def main():
    module = AnsibleModule(argument_spec=dict(networks.OPTION_SPEC, **lock.LOCK_SPEC), supports_check_mode=True)
    run_module(module, lambda m: lock.run_locked(m, lambda: networks.run_networks(m)))


if __name__ == "__main__":
    main()
