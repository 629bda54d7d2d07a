#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: machine_info
short_description: List systemd-nspawn machines and images with their state and configuration
version_added: 0.1.0
description:
  - Lists the running machines (as systemd-machined reports them) and the images it finds
    (C(/var/lib/machines) and the other image directories), with runtime state, boot enablement,
    OS, addresses, root path and size, the parsed C(.nspawn) settings (from O(settings_dir)) and the resource
    drop-in values (from O(units_dir)).
  - Read only. It reads under a shared hold of the host lock (see O(lock_timeout)), so it waits for a run that is
    changing the host, so it never reports a half-done change, and never for another reader.
author:
  - corral.nspawn contributors (@corral-nspawn)
extends_documentation_fragment:
  - corral.nspawn.lock
  - corral.nspawn.shared.settings_dir
  - corral.nspawn.shared.units_dir
options:
  name:
    description: Only these machines (by default all).
    type: list
    elements: str
attributes:
  check_mode:
    description: Read only; runs the same in check mode.
    support: full
  diff_mode:
    description: Returns no diff.
    support: none
  platform:
    description: Hosts with systemd 249 or newer, systemd-machined and D-Bus.
    support: full
    platforms: posix
seealso:
  - module: corral.nspawn.machine
"""

EXAMPLES = r"""
- name: All machines of this host
  corral.nspawn.machine_info:
  register: nspawn

- name: Addresses of the running machines
  ansible.builtin.debug:
    msg: "{{ nspawn.machines | selectattr('state', 'eq', 'running') | map(attribute='addresses') | list }}"

- name: One machine
  corral.nspawn.machine_info:
    name: [web1]
  register: web1
"""

RETURN = r"""
machines:
  description: One entry per machine (image or running machine), sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Machine name.
      type: str
    state:
      description: V(running) or V(stopped).
      type: str
    active_state:
      description: C(ActiveState) of C(systemd-nspawn@NAME.service).
      type: str
    enabled:
      description: Whether the machine starts at boot (C(machines.target)).
      type: bool
    image:
      description: Whether machined finds an image for it.
      type: bool
    root:
      description: Path of the image (directory or disk image), if any.
      type: str
    type:
      description: Image type (V(directory), V(subvolume), V(raw), V(block)).
      type: str
    read_only:
      description: Whether the image is read-only.
      type: bool
    size:
      description: Disk usage in bytes when machined knows it (btrfs, raw), else null.
      type: int
    os:
      description: Operating system (PRETTY_NAME of the image, or what machined reports).
      type: str
    addresses:
      description: IP addresses of a running machine.
      type: list
      elements: str
    main_pid:
      description: Main PID of the unit (0 when stopped).
      type: int
    settings_path:
      description: The C(.nspawn) file, if one exists.
      type: str
    settings:
      description: Parsed C(.nspawn) file, section to key to value (a list for repeated keys).
      type: dict
    resources_path:
      description: The corral resource drop-in, if one exists.
      type: str
    resources:
      description: Limits from the drop-in, key to value (a list for repeated keys).
      type: dict
    limits:
      description: Live limits as C(systemctl show) reports them (MemoryMax in bytes, CPUQuotaPerSecUSec...).
      type: dict
  sample:
    - name: web1
      state: running
      enabled: true
      addresses: [192.168.245.14]
      resources: {MemoryMax: 256M}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.corral.nspawn.plugins.module_utils import lock, machine, machine_io, resources, shared, systemd
from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError, run_module
from ansible_collections.corral.nspawn.plugins.module_utils.files import read_text
from ansible_collections.corral.nspawn.plugins.module_utils.layout import Layout

UNIT_PROPS = ["ActiveState", "UnitFileState", "MainPID"] + resources.show_properties()


def gather(module, wanted, layout: Layout) -> list:
    running = {m["machine"]: m for m in systemd.list_machines(module) if m.get("class") == "container"}
    images = {i["name"]: i for i in systemd.list_images(module) if i.get("name") != ".host"}
    names = sorted((set(running) | set(images)) if wanted is None else set(wanted))
    units = systemd.show(module, [layout.unit(n) for n in names], UNIT_PROPS)
    machines = []
    for name in names:
        image = images.get(name)
        if image is not None:
            image = dict(image, path=(systemd.image_info(module, name) or {}).get("Path"))
        unit = units.get(layout.unit(name), {})
        settings_path = layout.settings_path(name)
        dropin = resources.dropin_path(name, layout.units_dir)
        entry = machine.describe(name, image, running.get(name), unit, settings_path, read_text(settings_path),
                                 dropin, resources.parse_dropin(read_text(dropin)), machine_io.image_os(
                                     (image or {}).get("path")))
        entry["limits"] = {p: unit[p] for p in resources.show_properties() if p in unit}
        machines.append(entry)
    return machines


def describe(module) -> dict:
    """Validate, then read everything under a shared hold of the host lock (nothing changes)."""
    params = module.params
    shared.check(params, ("settings_dir", "units_dir"))
    with lock.module_lock(module, shared=True):
        error = systemd.machined_error(module)
        if error:
            raise CorralError(error)
        return dict(changed=False, machines=gather(module, params["name"], Layout.from_params(params)))


def main():
    module = AnsibleModule(argument_spec=dict(name=dict(type="list", elements="str"),
                                              **shared.spec("settings_dir", "units_dir"), **lock.LOCK_SPEC),
                           supports_check_mode=True)
    run_module(module, describe)


if __name__ == "__main__":
    main()
