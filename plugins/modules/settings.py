#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: settings
short_description: The .nspawn settings file of a systemd-nspawn container
version_added: 0.1.0
description:
  - Writes O(settings_dir)/C(NAME.nspawn) (by default C(/etc/systemd/nspawn/NAME.nspawn)), the settings systemd-nspawn
    reads when the container O(name) starts (see the systemd.nspawn(5) manual page), or removes it with O(state=absent).
  - Every key of the C([Exec]), C([Files]) and C([Network]) sections has an option; values are typed and validated
    before anything is written, and bad input fails with a message naming the option, the value and the allowed form.
  - Keys newer than the catalogue go into O(extra) (with a warning); a key in O(extra) that is close to a known one fails
    with a "did you mean" suggestion.
  - The settings take effect when the container starts next; RV(restart_required) says whether a running container
    must be restarted for a change (use M(corral.nspawn.machine) with O(corral.nspawn.machine#module:state=restarted)).
  - The default O(settings_dir) is the trusted location where privileged keys take effect; written anywhere else but
    C(/run/systemd/nspawn/), a file with privileged keys gives a warning. If a C(.nspawn) file for
    the same machine lies next to the image in C(/var/lib/machines/), the module warns (systemd ignores privileged keys
    there, and such files come with images from elsewhere).
author:
  - corral.nspawn contributors (@corral-nspawn)
extends_documentation_fragment:
  - corral.nspawn.lock
  - corral.nspawn.settings
  - corral.nspawn.shared.settings_dir
options:
  name:
    description: Machine name; the file is C(NAME.nspawn).
    type: str
    required: true
  state:
    description: V(present) writes the file; V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  path:
    description:
      - Deprecated, will be removed in corral.nspawn 1.0.0. Use O(settings_dir), the name every corral.nspawn module
        uses; the file is then O(settings_dir)/C(NAME.nspawn).
      - Write this file instead of O(settings_dir)/C(NAME.nspawn). Mutually exclusive with O(settings_dir).
      - Outside C(/etc/systemd/nspawn/) and C(/run/systemd/nspawn/) systemd-nspawn ignores privileged keys; the module
        warns when the file holds any.
    type: path
attributes:
  check_mode:
    description: Predicts the same C(changed) as a real run and writes nothing.
    support: full
  diff_mode:
    description: Shows the whole file before and after.
    support: full
  platform:
    description: Hosts with systemd 249 or newer; keys of newer systemd versions give a warning on older hosts.
    support: full
    platforms: posix
seealso:
  - module: corral.nspawn.machine
  - module: corral.nspawn.resources
"""

EXAMPLES = r"""
- name: Settings of web1 - host directory bound in, environment, hostname, a port forward
  corral.nspawn.settings:
    name: web1
    hostname: web1.example.test
    environment:
      APP_ENV: production
      GREETING: hello world
    bind:
      - /srv/web1/data:/var/lib/app
    bind_read_only:
      - /etc/ssl/certs
    port:
      - tcp:8080:80
  register: web1_settings

- name: Restart web1 only when its settings changed
  corral.nspawn.machine:
    name: web1
    state: restarted
  when: web1_settings.restart_required

- name: Docker inside a container needs a few privileges
  corral.nspawn.settings:
    name: docker1
    capability: [all]
    system_call_filter: ["add_key", "keyctl", "bpf"]
    private_users: false

- name: A key newer than the catalogue (written with a warning)
  corral.nspawn.settings:
    name: web2
    boot: true
    extra:
      Exec:
        RestrictAddressFamilies: AF_INET AF_INET6 AF_UNIX

- name: Remove the settings of an old machine
  corral.nspawn.settings:
    name: old1
    state: absent

# /run/systemd/nspawn is trusted too, and emptied at reboot; a file for the same
# machine in /etc/systemd/nspawn would take precedence over it.
- name: Settings of a test machine that last until the next reboot
  corral.nspawn.settings:
    name: scratch1
    settings_dir: /run/systemd/nspawn
    boot: true
"""

RETURN = r"""
path:
  description: The settings file.
  returned: always
  type: str
  sample: /etc/systemd/nspawn/web1.nspawn
content:
  description: The text the file has after the run (V(null) with O(state=absent)).
  returned: always
  type: str
  sample: "# Managed by corral.nspawn. ...\n\n[Exec]\nHostname=web1\n"
settings:
  description: The settings written, as C(Section) to C(Key) to a list of values.
  returned: always
  type: dict
  sample: {"Exec": {"Hostname": ["web1"]}, "Files": {"Bind": ["/srv/web1/data:/var/lib/app"]}}
restart_required:
  description: The change takes effect only after the container restarts (systemd-nspawn reads the file at start).
  returned: always
  type: bool
systemd_version:
  description: The systemd version of the host (V(null) when C(systemctl) was not found).
  returned: always
  type: int
  sample: 252
"""


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.corral.nspawn.plugins.module_utils import lock, shared, unitfile
from ansible_collections.corral.nspawn.plugins.module_utils import nspawn_settings as ns, nspawn_settings_io as ns_io
from ansible_collections.corral.nspawn.plugins.module_utils.errors import run_module
from ansible_collections.corral.nspawn.plugins.module_utils.layout import Layout

# the file option before the shared settings_dir (issue 13); kept working, with Ansible's deprecation warning
DEPRECATED_PATH = dict(type="path", removed_in_version="1.0.0", removed_from_collection="corral.nspawn")


def argument_spec() -> dict:
    spec = dict(name=dict(type="str", required=True),
                state=dict(type="str", choices=["present", "absent"], default="present"),
                path=dict(DEPRECATED_PATH), **shared.spec("settings_dir"))
    spec.update(ns.OPTION_SPEC)
    return spec


def item_of(params: dict) -> ns.SettingsItem:
    """The one item of this module: its file and options (None with state=absent); bad names/dirs fail first."""
    shared.check(params, ("name", "settings_dir"), ns.SettingsError)
    path = params["path"] or Layout.from_params(params).settings_path(params["name"])
    options = {k: v for k, v in params.items() if k in ns.OPTION_SPEC} if params["state"] == "present" else None
    return ns.SettingsItem(params["name"], path, options)


def body(module) -> dict:
    item = item_of(module.params)
    with lock.module_lock(module):   # read and write under the host-wide lock
        state = ns_io.read(module, [item])
        plan = ns.plan([item], state)
        if not module.check_mode:
            ns_io.apply(module, plan)
    for warning in plan.warnings:
        module.warn(warning)
    one = plan.items[0]
    output = dict(changed=one.changed, path=one.path, content=one.content, settings=unitfile.values(one.content),
                  restart_required=one.restart_required, systemd_version=state.version)
    if module._diff and one.changed:
        output["diff"] = one.diff
    return output


def main():
    module = AnsibleModule(argument_spec=dict(argument_spec(), **lock.LOCK_SPEC),
                           mutually_exclusive=[("path", "settings_dir")], supports_check_mode=True)
    run_module(module, body)


if __name__ == "__main__":
    main()
