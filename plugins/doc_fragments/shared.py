# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options several modules share, one sub-fragment each (mirrors module_utils/shared.py SPECS).

    Use as C(corral.nspawn.shared.machines_dir), C(corral.nspawn.shared.settings_dir),
    C(corral.nspawn.shared.units_dir) and C(corral.nspawn.shared.wait) (O(wait) and O(timeout)).
    """

    DOCUMENTATION = r"""
options: {}
"""

    MACHINES_DIR = r"""
options:
  machines_dir:
    description:
      - Directory of the container roots (C(NAME) or C(NAME.raw)) and templates.
      - Must be an absolute path. C(systemd-nspawn@.service) and C(machinectl) look for machines in
        C(/var/lib/machines); change it only for tests or special setups.
    type: path
    default: /var/lib/machines
"""

    SETTINGS_DIR = r"""
options:
  settings_dir:
    description:
      - Directory of the C(NAME.nspawn) settings files.
      - Must be an absolute path. Only in C(/etc/systemd/nspawn) and C(/run/systemd/nspawn) does systemd-nspawn
        apply privileged keys (for example C(Bind=) and C(Capability=)); change it only for tests or special setups.
    type: path
    default: /etc/systemd/nspawn
"""

    UNITS_DIR = r"""
options:
  units_dir:
    description:
      - Directory holding the C(systemd-nspawn@NAME.service.d) drop-in directories.
      - Must be an absolute path. systemd reads the drop-ins from C(/etc/systemd/system); change it only for tests or
        special setups.
    type: path
    default: /etc/systemd/system
"""

    WAIT = r"""
options:
  wait:
    description:
      - Wait until each container the module starts or restarts has booted, that is until the systemd inside it
        reports V(running); V(degraded) is accepted with a warning naming the failed units.
      - A container whose C(.nspawn) file says C(Boot=no) or C(ProcessTwo=yes) runs a command, not an init; it is
        waited for until its unit is active.
      - A container that dies while booting, or the end of O(timeout), fails with the unit status and the last lines
        of its journal.
    type: bool
    default: true
  timeout:
    description: Seconds to wait with O(wait=true), a whole number, at least 1.
    type: int
    default: 120
"""
