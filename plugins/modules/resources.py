#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: resources
short_description: cgroup resource limits of a systemd-nspawn container
version_added: 0.1.0
description:
  - Manages the drop-in O(units_dir)/C(systemd-nspawn@NAME.service.d/50-corral-resources.conf) (by default in
    C(/etc/systemd/system)) that sets cgroup limits (memory, CPU, tasks, IO, devices) of the container O(name).
  - The drop-in is the persistent configuration; C(systemctl daemon-reload) runs only when it changed, or when
    systemd has not loaded the drop-in as it is on disk (a run that ended before its reload).
  - When the container is running, the limits that systemd can change live (V(MemoryMax), V(MemoryHigh),
    V(MemorySwapMax), V(CPUQuota), V(CPUWeight), V(AllowedCPUs), V(TasksMax), V(IOWeight)) are applied at once
    with C(systemctl set-property --runtime), without a restart, and read back from C(systemctl show) to verify.
  - IO bandwidth, O(device_allow) and O(extra) keys take effect at the next start; the module then reports
    RV(pending_restart).
  - Sizes are normalised, so V(2G) and V(2048M) are the same limit and cause no change.
author:
  - corral.nspawn contributors (@corral-nspawn)
extends_documentation_fragment:
  - corral.nspawn.lock
  - corral.nspawn.shared.units_dir
options:
  name:
    description: Machine name (the instance of C(systemd-nspawn@.service)).
    type: str
    required: true
  state:
    description: V(present) writes the drop-in; V(absent) removes it and lifts the live limits.
    type: str
    choices: [present, absent]
    default: present
  memory_max:
    description:
      - C(MemoryMax=). Bytes with an optional V(K), V(M), V(G), V(T) suffix (powers of 1024),
        a percentage of RAM such as V(50%), or V(infinity).
    type: raw
  memory_high:
    description: C(MemoryHigh=), same form as O(memory_max).
    type: raw
  memory_swap_max:
    description: C(MemorySwapMax=), same form as O(memory_max).
    type: raw
  cpu_quota:
    description: C(CPUQuota=), a quoted percentage of one CPU with up to two decimals, e.g. V(50%) or V(150%).
    type: str
  cpu_weight:
    description: C(CPUWeight=), an integer 1..10000 or V(idle).
    type: raw
  allowed_cpus:
    description: C(AllowedCPUs=), CPU numbers and ranges such as V(0-1,3), or a list of CPU numbers.
    type: raw
  tasks_max:
    description: C(TasksMax=), a positive integer, a percentage or V(infinity).
    type: raw
  io_weight:
    description: C(IOWeight=), an integer 1..10000.
    type: int
  io_read_bandwidth_max:
    description:
      - C(IOReadBandwidthMax=) entries C(PATH RATE), e.g. V(/dev/sda 10M); RATE in bytes per second with an
        optional suffix (powers of 1000).
    type: list
    elements: str
  io_write_bandwidth_max:
    description: C(IOWriteBandwidthMax=) entries, same form as O(io_read_bandwidth_max).
    type: list
    elements: str
  device_allow:
    description:
      - C(DeviceAllow=) entries C(PATH [MODES]), PATH a C(/dev) node, C(char-GROUP) or C(block-GROUP),
        MODES a combination of V(r), V(w), V(m) (default V(rwm)). Added to the entries the unit already has.
    type: list
    elements: str
  extra:
    description:
      - Other C([Service]) keys as a mapping of key to value (a list value repeats the key). Applied at the next start.
    type: dict
attributes:
  check_mode:
    description: Predicts the same C(changed) as a real run and changes nothing.
    support: full
  diff_mode:
    description: Shows the drop-in before and after.
    support: full
  platform:
    description: Hosts with systemd 249 or newer.
    support: full
    platforms: posix
notes:
  - Limits set live are kept by systemd in C(/run/systemd/system.control/) until the next reboot; the drop-in
    makes them permanent.
  - The module has no C(wait) or C(timeout) option because it never waits. C(systemctl set-property --runtime)
    returns when systemd has applied the limits, which are then read back, and a limit that takes effect only at
    the next start is reported in RV(pending_restart). To restart the container, use M(corral.nspawn.machine),
    which waits.
seealso:
  - module: corral.nspawn.machine
"""

EXAMPLES = r"""
- name: Limit memory and CPU of web1, applied now without a restart
  corral.nspawn.resources:
    name: web1
    memory_max: 256M
    cpu_quota: "50%"
    tasks_max: 512

- name: Give db1 a FUSE device and an IO limit (take effect on the next start)
  corral.nspawn.resources:
    name: db1
    device_allow:
      - /dev/fuse rwm
    io_write_bandwidth_max:
      - /dev/vda 20M
  register: db1_limits

- name: Remove all limits of web1
  corral.nspawn.resources:
    name: web1
    state: absent
"""

RETURN = r"""
path:
  description: The drop-in file.
  returned: always
  type: str
  sample: /etc/systemd/system/systemd-nspawn@web1.service.d/50-corral-resources.conf
values:
  description: The limits in canonical form (C([Service]) key to value or list).
  returned: always
  type: dict
  sample: {"MemoryMax": "256M", "CPUQuota": "50%"}
running:
  description: Whether the container was running, so that live limits applied.
  returned: always
  type: bool
live:
  description: The C(systemctl set-property --runtime) assignments made (or that would be made in check mode).
  returned: always
  type: list
  elements: str
  sample: ["MemoryMax=256M"]
pending_restart:
  description: A changed limit takes effect only when the running container restarts.
  returned: always
  type: bool
changes:
  description: What changed, in words.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.corral.nspawn.plugins.module_utils import lock, resources, resources_io, shared
from ansible_collections.corral.nspawn.plugins.module_utils.errors import run_module


def argument_spec() -> dict:
    spec = dict(name=dict(type="str", required=True),
                state=dict(type="str", choices=["present", "absent"], default="present"),
                cpu_quota=dict(type="str"), io_weight=dict(type="int"), extra=dict(type="dict"),
                **shared.spec("units_dir"))
    for option, key in resources.TABLE.items():
        if key.kind in resources.LIST_KINDS:   # io_*_bandwidth_max, device_allow
            spec[option] = dict(type="list", elements="str")
        spec.setdefault(option, dict(type="raw"))
    return spec


def item_of(params: dict) -> resources.ResourcesItem:
    """The one item of this module; a bad name, units_dir or limit fails before any change."""
    shared.check(params, ("name", "units_dir"), resources.ResourceError)
    options = {k: v for k, v in params.items() if k in resources.TABLE or k == "extra"}
    desired = resources.normalize(options) if params["state"] == "present" else {}
    return resources.ResourcesItem(params["name"], resources.dropin_path(params["name"], params["units_dir"]), desired)


def body(module) -> dict:
    item = item_of(module.params)
    for warning in resources.device_warnings(item.desired):
        module.warn(warning)
    with lock.module_lock(module):   # read and write under the host-wide lock
        plan = resources.plan([item], resources_io.read(module, [item]))
        if not module.check_mode:
            resources_io.apply(module, plan)
    one = plan.items[0]
    output = dict(changed=one.changed, path=one.file.path, values=item.desired, running=one.running,
                  live=one.live.assignments, pending_restart=one.pending_restart, changes=one.changes)
    if module._diff and one.file.changed:
        output["diff"] = one.file.diff
    return output


def main():
    module = AnsibleModule(argument_spec=dict(argument_spec(), **lock.LOCK_SPEC), supports_check_mode=True)
    run_module(module, body)


if __name__ == "__main__":
    main()
