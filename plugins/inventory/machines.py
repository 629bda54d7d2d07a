# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: machines
short_description: systemd-nspawn containers of the fleet as inventory hosts
description:
  - Adds one inventory host per container of every container host in O(hosts_group), reached through
    the P(corral.nspawn.nspawn#connection) connection, so a play over C(nspawn_containers)
    configures what runs inside the containers without an SSH server in them.
  - V(declared) (the default) reads the fleet the inventory already declares for the
    C(corral.nspawn.fleet) role - C(corral_fleet_defaults), C(corral_fleet_host_defaults) and
    C(corral_fleet_machines) of each container host, merged as the role merges them - so there is no
    second copy of the fleet. V(discovered) asks every container host which containers run
    (C(machinectl list) over the host's own connection settings); with both, declared containers get
    C(nspawn_running) and running containers nobody declared are added to group C(nspawn_undeclared).
  - Every container is in group C(nspawn_containers), in group C(HOST_containers) of the host it lives on
    and in the groups of its machine entry's C(groups) key. Its machine entry's C(vars) become host
    variables. It gets C(nspawn_machine), C(nspawn_container_host), C(nspawn_source), C(nspawn_groups),
    and where declared C(nspawn_address), C(nspawn_zone), C(nspawn_bridge), C(nspawn_state). C(nspawn_zone) and
    C(nspawn_bridge) follow the fleet's attachment rule - the most specific layer (machine,
    C(corral_fleet_host_defaults), C(corral_fleet_defaults)) that sets any of C(zone), C(bridge) or C(network)
    wins as a whole - so a container has at most one of them, the network the fleet puts it on.
  - The connection reaches the host the way Ansible reaches it (C(ansible_host), C(ansible_user),
    C(ansible_port), C(ansible_ssh_private_key_file), C(ansible_ssh_common_args),
    C(ansible_ssh_extra_args)); a host with C(ansible_connection=local) gives local mode.
  - This source must be read after the sources that define the container hosts (name the file so it sorts
    after them in an inventory directory, or give it last with C(-i)).
author:
  - corral.nspawn contributors (@corral-nspawn)
version_added: 0.1.0
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: The name of this plugin; makes the file an inventory source of this plugin.
    type: str
    required: true
    choices: [corral.nspawn.machines]
  sources:
    description:
      - Where containers come from. V(declared) - the fleet variables of the container hosts;
        V(discovered) - C(machinectl list) on every container host (one command per host, cached with O(cache)).
    type: list
    elements: str
    choices: [declared, discovered]
    default: [declared]
  hosts_group:
    description: The group of container hosts whose containers are listed.
    type: str
    default: nspawn_hosts
  name_format:
    description:
      - Inventory name of a container; fields C({machine}) and C({host}) (the container host's inventory name).
        With one container host per name, V({machine}) alone is enough.
    type: str
    default: '{machine}.{host}'
  use_vars_plugins:
    description:
      - Read the container hosts' C(group_vars)/C(host_vars) files (where the fleet is usually declared).
    type: bool
    default: true
  discovery_timeout:
    description: Seconds one container host may take to answer the discovery.
    type: int
    default: 30
"""

EXAMPLES = r"""
# inventory/zz-containers.yml (sorts after hosts.yml in the inventory directory)
plugin: corral.nspawn.machines
sources: [declared, discovered]
keyed_groups:
  - key: nspawn_zone
    prefix: zone
compose:
  app_port: 80

# group_vars/nspawn_hosts/fleet.yml - the fleet role reads the same entries
# corral_fleet_machines:
#   - name: web
#     groups: [web]
#     vars: {http_port: 80}
"""

import os
import subprocess

from ansible.errors import AnsibleParserError
from ansible.inventory.helpers import get_group_vars
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.vars import combine_vars
from ansible.vars.plugins import get_vars_from_inventory_sources

from ansible_collections.corral.nspawn.plugins.plugin_utils import machines, nspawn_exec

DISCOVER = ["machinectl", "list", "--output=json", "--no-pager"]
# Host variables the plugin reads (templated with the host's variables before use).
READ_VARS = ("corral_fleet_machines", "corral_fleet_defaults", "corral_fleet_host_defaults", "ansible_connection",
             *(name for _option, names in machines.HOST_SSH_VARS for name in names))


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """Containers of the fleet as hosts reached through corral.nspawn.nspawn."""

    NAME = "corral.nspawn.machines"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith((".yml", ".yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)
        self.load_cache_plugin()
        sources = self.get_option("sources")
        group = self.get_option("hosts_group")
        if group not in inventory.groups:
            raise AnsibleParserError(f"{path}: no group {group!r} (hosts_group) in the inventory read before this "
                                     "source; list this source after the one that defines the container hosts")
        hosts = inventory.groups[group].get_hosts()
        resolved = {h.name: self._host_vars(h, loader, inventory) for h in hosts}
        running = self._discovered(path, resolved, cache) if "discovered" in sources else {}
        try:
            for host in hosts:
                found = running.get(host.name) if "discovered" in sources else None
                for entry in machines.plan(host.name, resolved[host.name], sources, found):
                    self._add(host.name, entry)
        except machines.MachinesError as exc:
            raise AnsibleParserError(f"{path}: {exc}") from None

    # -- reading
    def _host_vars(self, host, loader, inventory) -> dict:
        """The host's variables as plays see them (inventory, group_vars/host_vars files), templated."""
        hostvars = combine_vars(get_group_vars(host.get_groups()), host.get_vars())
        if self.get_option("use_vars_plugins"):
            sources = getattr(inventory, "processed_sources", [])
            hostvars = combine_vars(hostvars, get_vars_from_inventory_sources(loader, sources, host.get_groups(), "all"))
            hostvars = combine_vars(hostvars, get_vars_from_inventory_sources(loader, sources, [host], "all"))
        self.templar.available_variables = hostvars
        return {key: self.templar.template(hostvars[key]) for key in READ_VARS if key in hostvars}

    def _discovered(self, path, resolved: dict, cache: bool) -> dict:
        key = self.get_cache_key(path)
        use_cache = self.get_option("cache")
        if use_cache and cache:
            try:
                return self._cache[key]
            except KeyError:
                pass
        result = {name: self._discover(name, hostvars) for name, hostvars in resolved.items()}
        if use_cache:
            self._cache[key] = result
        return result

    def _discover(self, name: str, hostvars: dict) -> list:
        conn = machines.connection_vars(name, hostvars)
        argv = DISCOVER
        if conn:
            argv = nspawn_exec.ssh_argv(
                conn["nspawn_host"], DISCOVER, user=conn.get("nspawn_host_user"), port=conn.get("nspawn_host_port"),
                private_key=conn.get("nspawn_host_private_key_file"), common_args=conn.get("nspawn_ssh_common_args", ""),
                extra_args=conn.get("nspawn_ssh_extra_args", ""), control_dir=os.path.expanduser("~/.ansible/cp"),
                timeout=10)
            os.makedirs(os.path.expanduser("~/.ansible/cp"), mode=0o700, exist_ok=True)
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=self.get_option("discovery_timeout"),
                                 stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AnsibleParserError(f"discovery of the containers of {name}: {exc}") from None
        if res.returncode != 0:
            raise AnsibleParserError(f"discovery of the containers of {name} ({' '.join(DISCOVER)}) failed "
                                     f"(rc={res.returncode}): {res.stderr.strip()[-500:]}")
        try:
            return machines.parse_machinectl_list(res.stdout)
        except machines.MachinesError as exc:
            raise AnsibleParserError(f"discovery of the containers of {name}: {exc}") from None

    # -- writing
    def _add(self, host: str, entry: dict) -> None:
        name = machines.host_name(self.get_option("name_format"), entry["machine"], host)
        if name in self.inventory.hosts and self.inventory.get_host(name).vars.get("nspawn_container_host") not in (None, host):
            raise machines.MachinesError(f"name_format {self.get_option('name_format')!r} gives {name!r} for "
                                         f"containers of two hosts; include {{host}} in it")
        for group in entry["groups"]:
            self.inventory.add_group(group)
        self.inventory.add_host(name, group=entry["groups"][0])
        for group in entry["groups"][1:]:
            self.inventory.add_child(group, name)
        for key, value in entry["vars"].items():
            self.inventory.set_variable(name, key, value)
        strict = self.get_option("strict")
        self._set_composite_vars(self.get_option("compose"), entry["vars"], name, strict=strict)
        self._add_host_to_composed_groups(self.get_option("groups"), entry["vars"], name, strict=strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), entry["vars"], name, strict=strict)
