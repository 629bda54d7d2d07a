#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: network_prune
short_description: Remove the zones and bridges corral.nspawn created that are no longer declared
version_added: 0.1.0
description:
  - Declarative clean-up for M(corral.nspawn.zone) and M(corral.nspawn.bridge) - every zone and bridge
    whose C(/etc/systemd/network/50-corral-*) files carry the managed-file comment but that is not listed
    in O(zones) or O(bridges) is removed - its managed C(.netdev), C(.network) and port files, then its
    link (when it has no ports corral.nspawn did not attach), then C(networkctl reload).
  - Links and files corral.nspawn did not write are never touched - a bridge made by hand, or a
    C(50-corral-*) file without the managed comment, stays; a link whose C(.netdev) is not ours, or that has
    foreign ports (an interface enslaved by hand), is kept with a warning while our files are removed.
  - Refuses, before any change and naming the machines, to remove a zone or bridge that a declared machine
    (O(fleet.machines)) uses, that a C(.nspawn) file in O(settings_dir) staying on the host joins, or that a running container's
    port is attached to. Undeclared machines the fleet removes in the same run (O(fleet.prune=true)) do not
    count; the run that deletes the link checks that their ports are gone.
  - The masquerade and forward rules of a pruned network live in the table of M(corral.nspawn.nat); run it
    with O(corral.nspawn.nat#module:networks) set to the declared networks (the network role does this).
  - The network role runs this module when C(corral_network_prune=true). C(playbooks/site.yml) runs it after
    the fleet, so machines leave a zone before the zone goes.
author:
  - corral.nspawn contributors (@corral-nspawn)
extends_documentation_fragment:
  - corral.nspawn.lock
  - corral.nspawn.shared.settings_dir
options:
  zones:
    description: Declared zone names (C(vz-NAME) links); these are kept.
    type: list
    elements: str
    default: []
  bridges:
    description: Declared bridge names; these are kept.
    type: list
    elements: str
    default: []
  prune_all:
    description:
      - With O(zones) and O(bridges) both empty, allow removing every zone and bridge corral.nspawn created
        on the host. Without it such a run fails before any change (a host that lost its variables would
        otherwise lose its networks), as M(corral.nspawn.fleet) does for machines.
    type: bool
    default: false
  fleet:
    description:
      - The declared machines of this host, as given to M(corral.nspawn.fleet), so that a network a machine
        still uses is not removed. Only the machines' names and attachments (C(zone), C(bridge), C(network),
        C(settings.zone) / C(settings.bridge)) are read, from the same layers the fleet reads and merged the way
        it merges them - O(fleet.defaults), then O(fleet.host_defaults), then the machine, and for the attachment
        the most specific layer that sets any of C(zone), C(bridge) or C(network) wins as a whole. So a machine
        the host layer puts on bridge C(br0) under a fleet-wide zone C(apps) counts for C(br0) only.
    type: dict
    suboptions:
      machines:
        description: The fleet's O(corral.nspawn.fleet#module:machines).
        type: list
        elements: dict
        default: []
      defaults:
        description: The fleet's O(corral.nspawn.fleet#module:defaults).
        type: dict
        default: {}
      host_defaults:
        description:
          - The fleet's O(corral.nspawn.fleet#module:host_defaults) (the network role passes
            C(corral_fleet_host_defaults)); its attachment replaces the one of O(fleet.defaults) as a whole.
        type: dict
        default: {}
      prune:
        description:
          - The fleet removes undeclared fleet-managed machines before this module runs
            (O(corral.nspawn.fleet#module:prune)); their settings and ports do not keep a network.
        type: bool
        default: false
      prune_all:
        description:
          - The fleet's O(corral.nspawn.fleet#module:prune_all); with an empty O(fleet.machines) the fleet prunes only
            with it, so only then do undeclared machines count as removed.
        type: bool
        default: false
attributes:
  check_mode:
    description: Predicts the same C(changed) as a real run; removes no file, deletes no link, reloads nothing.
    support: full
  diff_mode:
    description: Whole-file before/after of every file removed, and a before/after of every link deleted.
    support: full
  platform:
    description: Hosts running systemd-networkd with pyroute2 installed.
    support: full
    platforms: posix
requirements:
  - pyroute2 (Debian package C(python3-pyroute2))
seealso:
  - module: corral.nspawn.zone
  - module: corral.nspawn.bridge
  - module: corral.nspawn.nat
  - module: corral.nspawn.fleet
"""

EXAMPLES = r"""
- name: Keep zone apps and bridge br0, remove every other zone and bridge corral.nspawn created
  corral.nspawn.network_prune:
    zones: [apps]
    bridges: [br0]
    fleet:
      machines:
        - {name: web, zone: apps}
        - {name: db, bridge: br0}
"""

RETURN = r"""
pruned:
  description: The zones and bridges removed (or that check mode predicts), with their files and what happens to the link.
  returned: always
  type: list
  elements: dict
  sample: [{kind: bridge, name: br-old, ifname: br-old, link: delete,
            files: [/etc/systemd/network/50-corral-br-old.netdev, /etc/systemd/network/50-corral-br-old.network]}]
changes:
  description: What changed, in words.
  returned: always
  type: list
  elements: str
  sample: [remove /etc/systemd/network/50-corral-br-old.netdev, delete link br-old]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.corral.nspawn.plugins.module_utils import lock, netlink, network_prune, network_prune_io
from ansible_collections.corral.nspawn.plugins.module_utils.errors import run_module


def prune(module) -> dict:
    netlink.require(module)
    return lock.run_locked(module, lambda: network_prune_io.run_prune(module))


def main():
    module = AnsibleModule(argument_spec=dict(network_prune.PRUNE_OPTION_SPEC, **lock.LOCK_SPEC), supports_check_mode=True)
    run_module(module, prune)


if __name__ == "__main__":
    main()
