#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""corral.nspawn.fleet: all systemd-nspawn machines of one host in one invocation."""

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet
short_description: Converge all systemd-nspawn containers of one host in one invocation
version_added: 0.1.0
description:
  - Takes the full list of declared machines of a host and reconciles, in one module invocation,
    their root filesystems (built or cloned from templates), C(.nspawn) settings, resource limits,
    enablement at boot and running state. It reuses the logic of M(corral.nspawn.image),
    M(corral.nspawn.settings), M(corral.nspawn.resources) and M(corral.nspawn.machine).
  - Machines are started concurrently and waited for together. O(wait) and O(timeout) apply to every machine;
    O(machines[].wait) and O(machines[].timeout) override them per machine. A machine whose O(machines[].settings)
    say C(boot=false) or C(process_two=true) is waited for until its unit is active.
  - Every machine the fleet configures has a C(.nspawn) file whose header marks it as fleet-managed;
    O(prune) only ever removes such machines. Taking over an existing C(.nspawn) file the fleet did not write
    (hand-written or written by M(corral.nspawn.settings)) is reported as a warning and in RV(machines.changes).
  - The result lists, per machine, what changed and whether a change waits for a restart.
author:
  - corral.nspawn contributors (@corral-nspawn)
extends_documentation_fragment:
  - corral.nspawn.lock
  - corral.nspawn.shared.wait
  - corral.nspawn.shared.machines_dir
  - corral.nspawn.shared.settings_dir
  - corral.nspawn.shared.units_dir
options:
  defaults:
    description:
      - Defaults merged under every item of O(machines) (any of its keys but C(name)); dictionaries merge
        recursively, lists replace, unset keys inherit.
    type: dict
    default: {}
    suboptions: &machine_options
      template:
        description:
          - Name of an entry of O(templates) to clone the root from when the root does not exist yet.
        type: str
      image:
        description:
          - Options of M(corral.nspawn.image) other than C(name), C(state) and C(machines_dir)
            (how to build the root, first-boot preparation). The sub-options are the image module's own
            (derived from its argument spec), so secrets are masked here too.
          - With O(machines[].template), C(source) and its options are filled in as a clone of the template.
          - C(root_password) and C(root_password_hash) are refused here; give them on the machine.
        type: dict
        suboptions: &image_options
          source:
            description: Option O(corral.nspawn.image#module:source) of M(corral.nspawn.image).
            type: str
            choices: [debootstrap, pacstrap, dnf, zypper, mkosi, tar, raw, clone, directory]
          force:
            description: Option O(corral.nspawn.image#module:force) of M(corral.nspawn.image).
            type: bool
          suite:
            description: Option O(corral.nspawn.image#module:suite) of M(corral.nspawn.image).
            type: str
          variant:
            description: Option O(corral.nspawn.image#module:variant) of M(corral.nspawn.image).
            type: str
          components:
            description: Option O(corral.nspawn.image#module:components) of M(corral.nspawn.image).
            type: list
            elements: str
          include:
            description: Option O(corral.nspawn.image#module:include) of M(corral.nspawn.image).
            type: list
            elements: str
          exclude:
            description: Option O(corral.nspawn.image#module:exclude) of M(corral.nspawn.image).
            type: list
            elements: str
          mirror:
            description: Option O(corral.nspawn.image#module:mirror) of M(corral.nspawn.image).
            type: str
          keyring:
            description: Option O(corral.nspawn.image#module:keyring) of M(corral.nspawn.image).
            type: path
          arch:
            description: Option O(corral.nspawn.image#module:arch) of M(corral.nspawn.image).
            type: str
          packages:
            description: Option O(corral.nspawn.image#module:packages) of M(corral.nspawn.image).
            type: list
            elements: str
          pacstrap_host_cache:
            description: Option O(corral.nspawn.image#module:pacstrap_host_cache) of M(corral.nspawn.image).
            type: bool
          pacstrap_init_keyring:
            description: Option O(corral.nspawn.image#module:pacstrap_init_keyring) of M(corral.nspawn.image).
            type: bool
          releasever:
            description: Option O(corral.nspawn.image#module:releasever) of M(corral.nspawn.image).
            type: str
          repos:
            description: Option O(corral.nspawn.image#module:repos) of M(corral.nspawn.image).
            type: list
            elements: str
          mkosi_directory:
            description: Option O(corral.nspawn.image#module:mkosi_directory) of M(corral.nspawn.image).
            type: path
          extra_args:
            description: Option O(corral.nspawn.image#module:extra_args) of M(corral.nspawn.image).
            type: list
            elements: str
          path:
            description: Option O(corral.nspawn.image#module:path) of M(corral.nspawn.image).
            type: path
          url:
            description: Option O(corral.nspawn.image#module:url) of M(corral.nspawn.image).
            type: str
          checksum:
            description: Option O(corral.nspawn.image#module:checksum) of M(corral.nspawn.image).
            type: str
          validate_certs:
            description: Option O(corral.nspawn.image#module:validate_certs) of M(corral.nspawn.image).
            type: bool
          importer:
            description: Option O(corral.nspawn.image#module:importer) of M(corral.nspawn.image).
            type: str
            choices: [auto, importctl, machinectl, tar]
          clone_from:
            description: Option O(corral.nspawn.image#module:clone_from) of M(corral.nspawn.image).
            type: str
          hostname:
            description: Option O(corral.nspawn.image#module:hostname) of M(corral.nspawn.image).
            type: str
          reset_machine_id:
            description: Option O(corral.nspawn.image#module:reset_machine_id) of M(corral.nspawn.image).
            type: bool
          regenerate_ssh_host_keys:
            description: Option O(corral.nspawn.image#module:regenerate_ssh_host_keys) of M(corral.nspawn.image).
            type: bool
          root_password:
            description:
              - Option O(corral.nspawn.image#module:root_password) of M(corral.nspawn.image).
              - Refused in image options and in templates (masked before it is refused, never logged); give it
                as O(machines[].root_password) or O(defaults.root_password).
            type: str
          root_password_hash:
            description:
              - Option O(corral.nspawn.image#module:root_password_hash) of M(corral.nspawn.image).
              - Refused in image options and in templates (masked before it is refused, never logged); give it
                as O(machines[].root_password_hash) or O(defaults.root_password_hash).
            type: str
          authorized_keys:
            description: Option O(corral.nspawn.image#module:authorized_keys) of M(corral.nspawn.image).
            type: list
            elements: str
          enable_networkd:
            description: Option O(corral.nspawn.image#module:enable_networkd) of M(corral.nspawn.image).
            type: bool
          enable_resolved:
            description: Option O(corral.nspawn.image#module:enable_resolved) of M(corral.nspawn.image).
            type: bool
          address:
            description: Option O(corral.nspawn.image#module:address) of M(corral.nspawn.image).
            type: str
          gateway:
            description: Option O(corral.nspawn.image#module:gateway) of M(corral.nspawn.image).
            type: str
          address6:
            description: Option O(corral.nspawn.image#module:address6) of M(corral.nspawn.image).
            type: str
          gateway6:
            description: Option O(corral.nspawn.image#module:gateway6) of M(corral.nspawn.image).
            type: str
          network_links:
            description:
              - Option O(corral.nspawn.image#module:network_links) of M(corral.nspawn.image).
              - By default the fleet sets it to every link the machine gets (C(host0) of a zone, bridge or veth,
                C(mv-*), C(iv-*), moved interfaces), for roots it builds or prepares; V([]) opts out.
            type: list
            elements: str
          dns:
            description: Option O(corral.nspawn.image#module:dns) of M(corral.nspawn.image).
            type: list
            elements: str
          securetty_fix:
            description: Option O(corral.nspawn.image#module:securetty_fix) of M(corral.nspawn.image).
            type: bool
          setup_running:
            description: Option O(corral.nspawn.image#module:setup_running) of M(corral.nspawn.image).
            type: str
            choices: [defer, apply]
      settings:
        description:
          - Options of M(corral.nspawn.settings) other than C(name), C(state) and C(path).
        type: dict
      resources:
        description:
          - Options of M(corral.nspawn.resources) other than C(name) and C(state). Applied live to a
            running machine; never needs a restart.
        type: dict
      zone:
        description:
          - Attach to this network zone (C(Zone=) in the C(.nspawn) file).
          - The attachment (O(machines[].zone), O(machines[].bridge), O(machines[].network)) is not merged key by
            key - the most specific layer (machine, O(host_defaults), O(defaults)) that sets any of them wins as a
            whole.
        type: str
      bridge:
        description: Attach to this host bridge (C(Bridge=) in the C(.nspawn) file).
        type: str
      network:
        description:
          - An attachment without zone or bridge - V(veth) a private veth to the host (C(ve-NAME)), V(host) the
            host's network, V(none) a private network without a veth.
        type: str
        choices: [veth, host, none]
      address:
        description:
          - Static IPv4 address with prefix length on C(host0) inside the container, written into the
            root as a systemd-networkd C(.network) file. Without it the machine uses DHCP.
          - Checked before any change against the subnets of the host's zones and bridges (O(network_zones),
            O(network_bridges), and the ones corral manages on the host).
        type: str
      gateway:
        description: Default gateway for O(machines[].address); defaults to the first host of its subnet.
        type: str
      address6:
        description: Static IPv6 address with prefix length on C(host0), checked like O(machines[].address).
        type: str
      gateway6:
        description: IPv6 default gateway for O(machines[].address6); defaults to the first host of its subnet.
        type: str
      root_password:
        description:
          - Root password (plain text, hashed on the host) set in the root at preparation. Kept out of logs.
          - Not accepted inside O(machines[].image), where it could not be hidden.
        type: str
      root_password_hash:
        description: Root password as a crypt(3) hash. Kept out of logs.
        type: str
      enabled:
        description: Start the machine at boot through C(machines.target).
        type: bool
      state:
        description:
          - V(running) starts the machine, V(stopped) stops it, V(present) leaves the runtime state alone.
        type: str
        choices: [running, stopped, present]
      restart:
        description: Overrides O(restart) for this machine.
        type: str
        choices: [on_change, never, always]
      wait:
        description:
          - Overrides O(wait) for this machine. A machine that does not boot (C(settings.boot=false) or
            C(settings.process_two=true), it runs a command, not an init) is waited for until its unit is
            active, never for a systemd inside it.
        type: bool
      timeout:
        description: Overrides O(timeout) for this machine (seconds).
        type: int
  host_defaults:
    description:
      - Per-host defaults, merged over O(defaults) and under every item of O(machines), with the same keys.
    type: dict
    default: {}
    suboptions: *machine_options
  network_zones:
    description:
      - The zones of the host as the network role declares them (items with C(name), C(address),
        C(dhcp_server), C(dhcp_pool_offset), C(dhcp_pool_size), C(dhcp_static_leases), C(pool), C(state)); other keys
        are ignored. Static addresses are checked against their subnets; a machine in a zone that is neither here
        nor managed on the host gets a warning.
    type: list
    elements: dict
    default: []
  network_bridges:
    description: The bridges of the host as the network role declares them (as O(network_zones)).
    type: list
    elements: dict
    default: []
  port_forwards:
    description:
      - The host's port forwards (items with C(address), C(host_port), C(proto)); a forward whose target is no
        declared machine's static address (nor a fixed DHCP lease) gets a warning.
    type: list
    elements: dict
    default: []
  machines:
    description:
      - The declared machines. Each item is merged over O(defaults) (dictionaries recursively, lists replaced).
    type: list
    elements: dict
    required: true
    suboptions:
      <<: *machine_options
      name:
        description: Machine name (hostname rules, at most 64 characters).
        type: str
        required: true
  templates:
    description:
      - Template images (C(name) plus options of M(corral.nspawn.image)) that machines are cloned from.
        They are built before the machines, never started, and never pruned.
      - Secrets (C(root_password), C(root_password_hash)) are masked and refused here; set them on the machines.
    type: list
    elements: dict
    default: []
    suboptions:
      <<: *image_options
      name:
        description: Template name (machine name rules); the root is O(machines_dir)/NAME.
        type: str
        required: true
  prune:
    description:
      - Remove fleet-managed machines that are not declared in O(machines) - stop, disable, remove
        their C(.nspawn) file and resource drop-in. Machines the fleet did not create are never touched.
    type: bool
    default: false
  prune_all:
    description:
      - With O(prune) and an empty O(machines) list, allow pruning every fleet machine of the host.
      - Without it such a run fails before any change (a host that lost its variables would otherwise lose its
        whole fleet).
    type: bool
    default: false
  purge:
    description:
      - With O(prune), also delete the root filesystems of pruned machines - only roots that corral.nspawn built
        (a build record kept beside the roots in O(machines_dir)/C(.corral/records/) that matches the root).
      - A root corral did not build (made by hand, imported with C(machinectl), adopted) is kept with a warning
        C(root kept); its settings and drop-in are removed as for any pruned machine.
    type: bool
    default: false
  restart:
    description:
      - V(on_change) restarts a running machine whose change needs a restart (settings, image preparation).
      - V(never) leaves it running and lists it in RV(pending_restart).
      - V(always) restarts every running machine on every run (always reports a change).
    type: str
    choices: [on_change, never, always]
    default: on_change
attributes:
  check_mode:
    support: full
    description: Predicts the same per-machine changes as a real run and writes nothing.
  diff_mode:
    support: full
    description: Whole-file before/after of every settings file and drop-in, plus image and runtime actions per machine.
  platform:
    description: Linux hosts with systemd 249 or newer and systemd-machined.
    support: full
    platforms: posix
notes:
  - Requires systemd 249 or later with systemd-machined on the host.
seealso:
  - module: corral.nspawn.settings
  - module: corral.nspawn.resources
  - module: corral.nspawn.image
  - module: corral.nspawn.machine
"""

EXAMPLES = r"""
- name: Three containers cloned from one template, in zone apps, running and enabled
  corral.nspawn.fleet:
    templates:
      - name: debian12-tmpl
        source: directory
        path: /srv/images/debian12
    defaults:
      template: debian12-tmpl
      zone: apps
      resources:
        memory_max: 512M
    machines:
      - name: web
        address: 10.88.0.10/24
      - name: app
        address: 10.88.0.11/24
      - name: db
        address: 10.88.0.12/24
        resources:
          memory_max: 1G
  register: fleet

- name: Remove fleet machines that are no longer declared, keeping their roots
  corral.nspawn.fleet:
    machines:
      - name: web
        template: debian12-tmpl
    prune: true

- name: Apply configuration but never restart running machines
  corral.nspawn.fleet:
    machines: "{{ corral_fleet_machines }}"
    restart: never
  register: fleet

- name: Show which machines wait for a restart
  ansible.builtin.debug:
    var: fleet.pending_restart
"""

RETURN = r"""
machines:
  description: Per declared machine, what happened.
  returned: always
  type: dict
  contains:
    changed:
      description: Whether anything changed for this machine.
      type: bool
    changes:
      description: What changed (or would change in check mode), in words, in order.
      type: list
      elements: str
    pending_restart:
      description: A change waits for a restart of the running machine (restart policy V(never)).
      type: bool
    state:
      description: Runtime state after the run (V(running), V(stopped)).
      type: str
    enabled:
      description: Enabled at boot after the run.
      type: bool
    attachment:
      description: The machine's attachment, C(kind) (V(zone), V(bridge), V(veth), V(host), V(none)) and C(name).
      type: dict
    addresses:
      description:
        - IPv4 and IPv6 addresses of a running machine as systemd-machined sees them after the run, static and
          DHCP-leased (link-local ones left out). A machine started by this run with a DHCP lease to come is given
          a few seconds for it.
      type: list
      elements: str
    ipv4:
      description: The IPv4 ones of RV(machines.addresses).
      type: list
      elements: str
    ipv6:
      description: The IPv6 ones of RV(machines.addresses).
      type: list
      elements: str
    refused:
      description:
        - Only for a machine whose root refused a path while the fleet read or prepared it (a container can make
          any path of its own root a symlink, a directory, a FIFO, at any moment; nothing outside the root is
          touched). The refusal, naming the path.
        - Such a machine is left as it is for this run (no file written, no limit set, no start, stop or restart;
          its RV(machines.changes) are empty and its RV(machines.pending_restart) says nothing), every other machine
          is still planned and converged, and the task fails naming it (RV(refused)), so the operator notices.
      type: str
      returned: when its root refused a path
      sample: "refusing to read /var/lib/machines/web/etc/hostname: it is a directory, not a regular file
        (container roots are untrusted)"
    failed:
      description: V(true) for a machine in RV(refused).
      type: bool
      returned: when its root refused a path
  sample:
    web:
      changed: true
      changes: ["settings: update /etc/systemd/nspawn/web.nspawn", "restart"]
      pending_restart: false
      state: running
      enabled: true
      attachment: {kind: zone, name: apps}
      addresses: [10.88.0.10, "fd00:88::10"]
      ipv4: [10.88.0.10]
      ipv6: ["fd00:88::10"]
templates:
  description: Template names and what changed for each.
  returned: always
  type: dict
  sample: {"debian12-tmpl": {"changed": false, "changes": []}}
pruned:
  description: Names of fleet-managed machines removed because they are no longer declared.
  returned: always
  type: list
  elements: str
  sample: [old-web]
summary:
  description: One line per machine, template or pruned machine that changed, saying what changed.
  returned: always
  type: list
  elements: str
  sample: ["web: resources: update /etc/systemd/system/systemd-nspawn@web.service.d/50-corral-resources.conf"]
pending_restart:
  description: Names of running machines whose change waits for a restart.
  returned: always
  type: list
  elements: str
  sample: []
refused:
  description:
    - Names of machines left untouched this run because their root refused a path (see RV(machines.refused)).
      When it is not empty the task fails (its C(msg) names each machine and path) after every other machine
      was converged (planned, in check mode).
    - A template's root that refuses a path fails the run before any change instead; a template is no tenant's.
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.corral.nspawn.plugins.module_utils import lock
from ansible_collections.corral.nspawn.plugins.module_utils.errors import run_module
from ansible_collections.corral.nspawn.plugins.module_utils.fleet import argument_spec
from ansible_collections.corral.nspawn.plugins.module_utils.fleet_io import run_fleet


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(argument_spec(), **lock.LOCK_SPEC),
        supports_check_mode=True,
    )
    run_module(module, lambda m: lock.run_locked(m, lambda: run_fleet(m)))


if __name__ == "__main__":
    main()
