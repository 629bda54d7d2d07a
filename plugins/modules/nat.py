#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nat
short_description: NAT, forwarding and port forwards for containers in one nftables table it owns
version_added: 0.1.0
description:
  - Owns one nftables table (C(inet corral) by default) and nothing else. It holds masquerading of
    container subnets out of the uplinks, forward accepts for container links (C(ve-*), C(vb-*), C(vz-*),
    the bridges and zones managed by corral.nspawn, and O(links)) plus return traffic, input accepts for
    DHCP (udp 67) and DNS (53) from container links, and port forwards (DNAT) for IPv4 and IPv6.
  - Port forwards work from outside and from the host itself, including V(127.0.0.1) (an output-hook
    DNAT plus C(net.ipv4.conf.all.route_localnet=1), with a rule in our table that drops 127.0.0.0/8
    arriving from other interfaces; see O(localhost)). C(::1) cannot be forwarded (the kernel never
    routes it off the host); use the host's IPv6 address.
  - The table is read back as JSON (libnftables through the C(nftables) Python binding, or C(nft -j))
    and compared semantically; when it differs it is replaced in one atomic transaction. Other tables
    (systemd's C(io.systemd.nat), docker, libvirt, firewalld, iptables-nft) are never changed.
  - Base chains of other tables on the forward or input hook that drop by policy (or end in a catch-all
    drop/reject) drop container traffic no matter what our table accepts. They are reported as warnings
    naming table and chain, and with O(integrate=true) our accepts are inserted at the top of them,
    tagged with the comment C(corral.nspawn:TABLE).
  - Persistent across reboots - the table is written to C(/etc/nftables.d/TABLE.nft) and loaded at boot
    by C(corral-nft-TABLE.service) (ordered after C(nftables.service), whose stock configuration flushes
    the ruleset, and started now; a restart or reload of C(nftables.service) loads our table again);
    forwarding (and route_localnet) are set in C(/etc/sysctl.d/90-corral-nat-TABLE.conf) and applied now.
    Rules added by O(integrate) are live only (the other table's owner reloads them).
  - The nft transaction is applied and read back first; the persisted ruleset, the boot unit and the
    sysctls are written only after it succeeded, so a ruleset nft refuses leaves all of them unchanged.
author:
  - corral.nspawn contributors (@corral-nspawn)
extends_documentation_fragment:
  - corral.nspawn.lock
options:
  table:
    description: Name of the C(inet) table this module owns.
    type: str
    default: corral
  state:
    description: V(absent) deletes the table, our integrate rules, the boot unit and the files.
    type: str
    default: present
    choices: [present, absent]
  masquerade:
    description:
      - Source subnets (CIDR) to masquerade, IPv4 or IPv6. When omitted, the subnets of every bridge and
        zone managed by M(corral.nspawn.bridge) and M(corral.nspawn.zone) on this host.
    type: list
    elements: str
  uplinks:
    description:
      - Interfaces masqueraded traffic leaves through (a trailing C(*) matches a prefix). Empty means any
        interface that is not a container link.
    type: list
    elements: str
    default: []
  links:
    description: Further container links (names or C(prefix*) patterns) to accept forwarding and DHCP/DNS from.
    type: list
    elements: str
    default: []
  networks:
    description:
      - Zones and bridges managed by corral.nspawn (their link names, C(vz-NAME) for a zone) whose subnets are
        masqueraded (when O(masquerade) is omitted) and whose links are accepted for forwarding. When omitted,
        every zone and bridge corral.nspawn manages on this host.
      - The network role passes its declared zones and bridges here when C(corral_network_prune) is on, so a
        zone or bridge that is being pruned loses its rules in the same run, and check mode shows that.
    type: list
    elements: str
  forwards:
    description: Port forwards from the host to containers (DNAT of traffic addressed to any local address).
    type: list
    elements: dict
    default: []
    suboptions:
      proto:
        description: Protocol.
        type: str
        default: tcp
        choices: [tcp, udp]
      host_port:
        description: Port on the host, 1..65535; each once per protocol and address family.
        type: int
        required: true
      address:
        description:
          - Container address (IPv4 or IPv6). An address outside every managed subnet is applied with a warning.
        type: str
        required: true
      port:
        description: Port in the container; defaults to O(forwards[].host_port).
        type: int
  localhost:
    description:
      - Make IPv4 forwards reachable through V(127.0.0.1) on the host. Sets C(net.ipv4.conf.all.route_localnet=1)
        and masquerades such connections to the bridge address; our table drops 127.0.0.0/8 that arrives on
        any interface but C(lo), which the kernel would otherwise do for us.
      - route_localnet is set back to C(0) (live and in the sysctl file) when no IPv4 forward needs it any more,
        with V(false), or with O(state=absent), before that drop rule goes; only when corral had set it.
    type: bool
    default: true
  integrate:
    description: Insert our forward and DHCP/DNS accepts into other tables' blocking chains (see description).
    type: bool
    default: false
  force:
    description: Replace a same-name table that corral.nspawn did not create.
    type: bool
    default: false
attributes:
  check_mode:
    description: Predicts the same C(changed) as a real run; writes no file, sets no sysctl, applies no rule.
    support: full
  diff_mode:
    description: The table before/after in nft syntax, and whole-file before/after of the files.
    support: full
  platform:
    description: Linux hosts with nftables (kernel 5.2 or newer for C(inet) NAT) and systemd.
    support: full
    platforms: posix
requirements:
  - python3-nftables (libnftables binding) or the C(nft) command
seealso:
  - module: corral.nspawn.zone
  - module: corral.nspawn.bridge
"""

EXAMPLES = r"""
- name: Masquerade all managed zones/bridges out of eth0, forward 8080 to a web container
  corral.nspawn.nat:
    uplinks: [eth0]
    forwards:
      - proto: tcp
        host_port: 8080
        address: 10.88.10.2
        port: 80
      - host_port: 8080
        address: fd00:88:10::2
        port: 80

- name: Explicit subnets, and accept container traffic in a docker-style drop chain
  corral.nspawn.nat:
    masquerade: [10.88.10.0/24, 10.20.0.0/24]
    integrate: true

- name: Remove the table and its boot unit
  corral.nspawn.nat:
    state: absent
"""

RETURN = r"""
table:
  description: The table this module owns.
  returned: always
  type: str
  sample: inet corral
backend:
  description: How nftables was reached.
  returned: always
  type: str
  sample: libnftables (python3-nftables)
chains:
  description: Rule count per chain of the desired table (empty with O(state=absent)).
  returned: always
  type: dict
  sample: {forward: 6, input: 8, prerouting: 1, output: 1, postrouting: 2}
blockers:
  description: Base chains of other tables that may drop container traffic.
  returned: always
  type: list
  elements: dict
  sample: [{family: ip, table: filter, chain: FORWARD, hook: forward, reason: policy drop}]
sysctl:
  description: Kernel settings kept in the sysctl.d file and applied.
  returned: always
  type: dict
  sample: {net.ipv4.ip_forward: "1"}
masquerade:
  description: Subnets masqueraded.
  returned: always
  type: list
  elements: str
links:
  description: Container links (names and patterns) forwarding and DHCP/DNS are accepted from.
  returned: always
  type: list
  elements: str
forwards:
  description: Port forwards, normalised (port filled in, address canonical).
  returned: always
  type: list
  elements: dict
changes:
  description: What changed, in words.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.corral.nspawn.plugins.module_utils import lock, nat, nat_io
from ansible_collections.corral.nspawn.plugins.module_utils.errors import run_module


def main():
    module = AnsibleModule(argument_spec=dict(nat.NAT_OPTION_SPEC, **lock.LOCK_SPEC), supports_check_mode=True)
    run_module(module, lambda m: lock.run_locked(m, lambda: nat_io.run(m)))


if __name__ == "__main__":
    main()
