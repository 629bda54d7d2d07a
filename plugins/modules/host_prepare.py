#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_prepare
short_description: Check and prepare a container host in one call (packages, networkd, machined, machines.target, sysctls)
version_added: 0.1.0
description:
  - Everything the C(corral.nspawn.host) role checks on a host, in one module invocation, so that a host
    that is already prepared costs one round trip.
  - Reads the OS family from C(/etc/os-release) (C(ID), then C(ID_LIKE)) and returns it, so no facts need to
    be gathered. A family other than Debian, RedHat or Archlinux fails before any change, naming it.
  - With O(check_packages=true), asks the package database (C(dpkg-query), C(rpm) or C(pacman), no Python
    bindings needed) which of the wanted packages are installed and returns the missing ones in
    RV(missing_packages). The module never installs packages - the host role installs the missing ones with
    M(ansible.builtin.package) and calls the module again. While packages are missing, the units they ship
    cannot be asked about, so the unit steps are skipped and listed in RV(pending).
  - Enables and starts C(systemd-networkd.service) (O(networkd)), and restarts it when it runs without its
    D-Bus connection (seen on fresh hosts - every later C(networkctl reload) would time out).
  - Checks that C(systemd-machined) answers (C(machinectl list), which also activates it) and fails with what
    is missing when it does not; enables C(machines.target) (O(machines_target)).
  - Writes O(sysctls) to O(sysctl_file) and sets the live values that differ. The file is left alone when
    O(sysctls) is empty.
author:
  - corral.nspawn contributors (@corral-nspawn)
extends_documentation_fragment:
  - corral.nspawn.lock
options:
  check_packages:
    description:
      - Ask which of the wanted packages (O(packages), O(bootstrap_packages), O(extra_packages)) are installed and
        return the missing ones. V(false) leaves packages out entirely.
    type: bool
    default: true
  packages:
    description:
      - Base packages. Not given or empty means the family's default - Debian C(systemd-container nftables
        python3-nftables python3-pyroute2), RedHat C(systemd-container systemd-networkd nftables python3-nftables
        python3-pyroute2), Archlinux C(nftables python-pyroute2).
    type: list
    elements: str
  bootstrap_packages:
    description:
      - Packages with the tool that builds container roots. Not given means the family's default (C(debootstrap)
        on Debian, C(arch-install-scripts) on Archlinux, none on RedHat); V([]) means none.
    type: list
    elements: str
  extra_packages:
    description: More packages to check.
    type: list
    elements: str
    default: []
  networkd:
    description: Enable and start C(systemd-networkd.service) and check that it answers on D-Bus.
    type: bool
    default: true
  machines_target:
    description: Enable C(machines.target), so that enabled containers start at boot.
    type: bool
    default: true
  sysctls:
    description:
      - "Kernel settings to keep, persistently in O(sysctl_file) and live, as a dict of name to value (for example
        C(net.ipv4.ip_forward) to C(1)). Names are dotted words; values are numbers or words of letters, digits
        and C(._/:-). An empty dict leaves O(sysctl_file) and the live values alone."
    type: dict
    default: {}
  sysctl_file:
    description: The C(sysctl.d) file this module owns for O(sysctls).
    type: path
    default: /etc/sysctl.d/60-corral-nspawn.conf
attributes:
  check_mode:
    description: Predicts the same C(changed) as a real run; writes nothing, starts and enables nothing.
    support: full
  diff_mode:
    description: Whole-file before/after of O(sysctl_file), and before/after of every live sysctl that differs.
    support: full
  platform:
    description: systemd hosts of the Debian, RedHat or Archlinux family; tested on Debian 12 and 13.
    support: full
    platforms: posix
notes:
  - The C(corral.nspawn.host) role is this module plus the package installation when something is missing.
seealso:
  - module: corral.nspawn.fleet
  - module: corral.nspawn.zone
"""

EXAMPLES = r"""
- name: Check the host (one call when it is already prepared)
  corral.nspawn.host_prepare:
    sysctls:
      net.ipv4.ip_forward: 1
  register: prepared

- name: Install what is missing
  ansible.builtin.package:
    name: "{{ prepared.missing_packages }}"
    state: present
  when: prepared.missing_packages | length > 0

- name: Now the units the packages ship
  corral.nspawn.host_prepare:
    sysctls:
      net.ipv4.ip_forward: 1
  when: prepared.missing_packages | length > 0
"""

RETURN = r"""
os_family:
  description: The OS family read from C(/etc/os-release) (named as Ansible's C(ansible_facts.os_family)).
  returned: always
  type: str
  sample: Debian
os_release:
  description: C(ID), C(ID_LIKE), C(VERSION_ID) and C(PRETTY_NAME) from C(/etc/os-release).
  returned: always
  type: dict
  sample: {ID: debian, ID_LIKE: "", VERSION_ID: "12", PRETTY_NAME: "Debian GNU/Linux 12 (bookworm)"}
wanted_packages:
  description: The packages checked (empty with O(check_packages=false)).
  returned: always
  type: list
  elements: str
  sample: [systemd-container, nftables, python3-nftables, python3-pyroute2, debootstrap]
missing_packages:
  description: The wanted packages that are not installed, in the order wanted.
  returned: always
  type: list
  elements: str
  sample: [debootstrap]
pending:
  description: The unit steps left for after the missing packages are installed (empty when none are missing).
  returned: always
  type: list
  elements: str
  sample: [enable and start systemd-networkd, check systemd-machined, enable machines.target]
units:
  description: C(UnitFileState) and C(ActiveState) of C(systemd-networkd.service) and C(machines.target) as read before any change.
  returned: when no package is missing
  type: dict
  sample: {systemd-networkd.service: {UnitFileState: enabled, ActiveState: active}}
changes:
  description: What changed (or would change in check mode), in words.
  returned: always
  type: list
  elements: str
  sample: ["enable and start systemd-networkd.service", "sysctl net.ipv4.ip_forward: 0 -> 1"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.corral.nspawn.plugins.module_utils import hostprep, hostprep_io, lock
from ansible_collections.corral.nspawn.plugins.module_utils.errors import run_module


def main():
    module = AnsibleModule(argument_spec=dict(hostprep.OPTION_SPEC, **lock.LOCK_SPEC), supports_check_mode=True)
    run_module(module, lambda m: lock.run_locked(m, lambda: hostprep_io.run_prepare(m)))


if __name__ == "__main__":
    main()
