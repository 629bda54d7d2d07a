#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: machine
short_description: Start, stop, restart and enable systemd-nspawn containers
version_added: 0.1.0
description:
  - Controls the runtime state and the boot-time enablement of the container O(name), run as
    C(systemd-nspawn@NAME.service).
  - O(enabled=true) does what C(machinectl enable) does, it enables the instance and C(machines.target),
    so the container starts at boot.
  - With O(wait=true) a start waits until the container has booted (see O(wait)); with O(state=running) also when
    it was already running. Whether it boots an init is read from its C(.nspawn) file, found as systemd-nspawn
    finds it (C(/etc/systemd/nspawn), then C(/run/systemd/nspawn); another O(settings_dir) takes the place of
    C(/etc/systemd/nspawn)). The same file's modification time tells RV(pending_restart).
  - O(state=restarted) always restarts. To restart only when configuration changed, notify a handler from
    the M(corral.nspawn.settings) task (see EXAMPLES); RV(pending_restart) tells when a running container
    started before its C(.nspawn) settings were last written.
author:
  - corral.nspawn contributors (@corral-nspawn)
extends_documentation_fragment:
  - corral.nspawn.lock
  - corral.nspawn.shared.wait
  - corral.nspawn.shared.settings_dir
options:
  name:
    description: Machine name; its image must exist (for example C(/var/lib/machines/NAME)) to start it.
    type: str
    required: true
  state:
    description:
      - V(running) starts the container if it is not running; V(stopped) stops it;
        V(restarted) restarts it (or starts it when it is stopped). Omit to leave it as it is.
    type: str
    choices: [running, stopped, restarted]
  enabled:
    description: Whether the container starts at boot (through C(machines.target)). Omit to leave it as it is.
    type: bool
attributes:
  check_mode:
    description: Predicts the same C(changed) as a real run and changes nothing (no wait after a predicted start).
    support: full
  diff_mode:
    description: Shows state and enablement before and after.
    support: full
  platform:
    description: Hosts with systemd 249 or newer, systemd-machined and D-Bus.
    support: full
    platforms: posix
seealso:
  - module: corral.nspawn.resources
  - module: corral.nspawn.machine_info
"""

EXAMPLES = r"""
- name: Start web1 now and at every boot, wait until it has booted
  corral.nspawn.machine:
    name: web1
    state: running
    enabled: true
    timeout: 300

- name: Stop and disable old1
  corral.nspawn.machine:
    name: old1
    state: stopped
    enabled: false

# Restart only when a settings change needs it: the handler runs when the
# settings task changed, and its condition skips changes that apply without a restart.
- name: Settings of web1
  corral.nspawn.settings:
    name: web1
    hostname: web1
  register: web1_settings
  notify: Restart web1

# In the play's handlers section:
- name: Restart web1
  corral.nspawn.machine:
    name: web1
    state: restarted
  when: web1_settings.restart_required | default(true)
"""

RETURN = r"""
state:
  description: Runtime state after the run (V(running) or V(stopped); predicted in check mode).
  returned: always
  type: str
active_state:
  description: C(ActiveState) of the unit as read before any change.
  returned: always
  type: str
  sample: active
enabled:
  description: Whether the container starts at boot after the run.
  returned: always
  type: bool
system_state:
  description: The container's C(systemctl is-system-running) answer after waiting (empty when not waited).
  returned: always
  type: str
  sample: running
pending_restart:
  description: The container is running and its C(.nspawn) settings changed after it started.
  returned: always
  type: bool
main_pid:
  description: Main PID of the container unit after the run (0 when stopped or in check mode after a predicted change).
  returned: always
  type: int
changes:
  description: What changed, in words.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.corral.nspawn.plugins.module_utils import machine, machine_io, systemd
from ansible_collections.corral.nspawn.plugins.module_utils.errors import run_module
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError
from ansible_collections.corral.nspawn.plugins.module_utils import lock, shared


def validate(module) -> None:
    """Every input and machined itself, before anything is read (raises MachineError)."""
    params = module.params
    shared.check(params, ("name", "timeout", "settings_dir"), machine.MachineError)
    error = systemd.machined_error(module)
    if error:
        raise machine.MachineError(error)
    if params["state"] in ("running", "restarted"):
        error = machine_io.image_error(module, params["name"])
        if error:
            raise machine.MachineError(error)


def run(module) -> dict:
    params, name = module.params, module.params["name"]
    current = machine_io.read_current(module, name)
    todo = machine.plan(name, params["state"], params["enabled"], current)
    running = current.running if todo.runtime == "none" else todo.runtime != "stop"
    waited = None
    dirs = machine.settings_dirs(params["settings_dir"])
    mode = machine_io.wait_mode(name, dirs)  # a container that runs a command has no systemd to wait for
    if not module.check_mode:
        how = {name: (mode if params["wait"] else "none", params["timeout"])}
        waited = machine_io.apply(module, [todo], how).get(name)
    if waited is None and params["wait"] and params["state"] == "running" and running and todo.runtime == "none":
        waited = machine_io.wait_one(module, name, (mode, params["timeout"]))
    if waited is not None and not waited.ok:
        raise machine.MachineError(waited.msg, changed=todo.changed, changes=todo.changes, system_state=waited.state)
    if waited is not None and waited.warning:
        module.warn(waited.warning)
    after = machine_io.read_current(module, name) if todo.changed and not module.check_mode else current
    enabled = current.enabled if todo.enable is None else todo.enable
    result = dict(changed=todo.changed, state="running" if running else "stopped", active_state=current.active,
                  enabled=enabled, system_state=waited.state if waited else "", changes=todo.changes,
                  main_pid=after.main_pid if after is not current or todo.runtime == "none" else 0,
                  pending_restart=todo.runtime not in ("start", "restart") and machine.pending_restart(
                      after, machine_io.settings_mtimes(name, dirs)))
    if module._diff and todo.changed:
        result["diff"] = {"before": {"state": "running" if current.running else "stopped", "enabled": current.enabled},
                          "after": {"state": result["state"], "enabled": enabled}}
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(name=dict(type="str", required=True),
                           state=dict(type="str", choices=list(machine.STATES)),
                           enabled=dict(type="bool"),
                           **shared.spec("wait", "timeout", "settings_dir"), **lock.LOCK_SPEC),
        required_one_of=[("state", "enabled")],
        supports_check_mode=True)
    run_module(module, body)


def body(module) -> dict:
    validate(module)
    try:
        return lock.run_locked(module, lambda: run(module))
    except CommandError as exc:
        detail = systemd.failure_report(module, module.params["name"])
        raise machine.MachineError(f"{exc}\n{detail}", rc=exc.rc, stdout=exc.out, stderr=exc.err) from None


if __name__ == "__main__":
    main()
