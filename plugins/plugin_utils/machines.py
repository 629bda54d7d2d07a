# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of the corral.nspawn.machines inventory plugin: containers as inventory hosts.

The declared fleet is read exactly as the fleet role reads it (``corral_fleet_defaults``, then
``corral_fleet_host_defaults``, then each ``corral_fleet_machines`` entry, merged by the fleet's own
``merge_layers``: the most specific layer that sets zone, bridge or network wins as a whole, so
``nspawn_zone`` / ``nspawn_bridge`` name the network the fleet deploys the machine on), so the
inventory holds no second copy of the fleet. ``groups`` and ``vars`` of a machine entry are
inventory keys: the role drops them before calling the fleet module.
"""

from __future__ import annotations

import json
import re
from typing import Dict, List, Optional

from ansible_collections.corral.nspawn.plugins.module_utils.fleet import merge_layers  # the fleet module's own merge

CONNECTION = "corral.nspawn.nspawn"
ALL_GROUP = "nspawn_containers"
UNDECLARED_GROUP = "nspawn_undeclared"
# Keys of a corral_fleet_machines entry (or of the defaults) that only the inventory plugin reads.
INVENTORY_KEYS = ("groups", "vars")
SOURCES = ("declared", "discovered")
# Host variables of a container host -> connection options of its containers (first set one wins).
HOST_SSH_VARS = (
    ("nspawn_host", ("ansible_host", "ansible_ssh_host")),
    ("nspawn_host_user", ("ansible_user", "ansible_ssh_user")),
    ("nspawn_host_port", ("ansible_port", "ansible_ssh_port")),
    ("nspawn_host_private_key_file", ("ansible_ssh_private_key_file", "ansible_private_key_file")),
    ("nspawn_ssh_common_args", ("ansible_ssh_common_args",)),
    ("nspawn_ssh_extra_args", ("ansible_ssh_extra_args",)),
)
GROUP_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


class MachinesError(ValueError):
    """Bad fleet data or plugin option: names the host, the option, the value and the allowed form."""


def declared(host: str, hostvars: dict) -> List[dict]:
    """The merged machine entries of one container host, as the fleet role merges them."""
    defaults = _mapping(hostvars.get("corral_fleet_defaults") or {}, host, "corral_fleet_defaults")
    host_defaults = _mapping(hostvars.get("corral_fleet_host_defaults") or {}, host, "corral_fleet_host_defaults")
    items = hostvars.get("corral_fleet_machines") or []
    if not isinstance(items, list):
        raise MachinesError(f"host {host}: corral_fleet_machines is {type(items).__name__}; use a list of machines")
    machines = []
    for index, item in enumerate(items):
        where = f"corral_fleet_machines[{index}]"
        item = _mapping(item, host, where)
        if not isinstance(item.get("name"), str) or not item["name"]:
            raise MachinesError(f"host {host}: {where}.name is {item.get('name')!r}; use the machine name")
        machine = merge_layers(defaults, host_defaults, item)
        _check_inventory_keys(machine, host, f"{where} ({item['name']})")
        machines.append(machine)
    return machines


def _mapping(value, host: str, where: str) -> dict:
    if not isinstance(value, dict):
        raise MachinesError(f"host {host}: {where} is {type(value).__name__}; use a mapping")
    return value


def _check_inventory_keys(machine: dict, host: str, where: str) -> None:
    groups = machine.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise MachinesError(f"host {host}: {where}.groups is {groups!r}; use a list of group names")
    if not isinstance(machine.get("vars", {}), dict):
        raise MachinesError(f"host {host}: {where}.vars is {machine.get('vars')!r}; use a mapping of variables")


def parse_machinectl_list(text: str) -> List[dict]:
    """Running containers from ``machinectl list --output=json`` (VMs and the host itself skipped)."""
    try:
        rows = json.loads(text or "[]")
    except ValueError as exc:
        raise MachinesError(f"machinectl list --output=json printed no JSON: {exc}: {text[:200]!r}") from None
    return [{"name": row["machine"], "os": row.get("os"), "version": row.get("version"),
             "addresses": row.get("addresses")}
            for row in rows if row.get("class") == "container" and row.get("machine")]


def host_name(fmt: str, machine: str, host: str) -> str:
    """The inventory name of a container from ``name_format`` (fields {machine} and {host})."""
    try:
        name = fmt.format(machine=machine, host=host)
    except (KeyError, IndexError, ValueError) as exc:
        raise MachinesError(f"name_format {fmt!r}: {exc!r}; use fields {{machine}} and {{host}} only") from None
    if not name or any(c.isspace() for c in name):
        raise MachinesError(f"name_format {fmt!r} gives {name!r} for {machine} on {host}; use a name without spaces")
    return name


def safe_group(name: str) -> str:
    """A valid Ansible group name (letters, digits, underscore)."""
    name = GROUP_UNSAFE.sub("_", name)
    return name if not name[:1].isdigit() else f"_{name}"


def connection_vars(host: str, hostvars: dict) -> Dict[str, object]:
    """Connection options that reach the containers of ``host`` the way Ansible reaches the host."""
    if hostvars.get("ansible_connection") == "local":
        return {}  # the controller is the container host: local mode
    out: Dict[str, object] = {"nspawn_host": host}
    for option, names in HOST_SSH_VARS:
        for name in names:
            if hostvars.get(name) not in (None, ""):
                out[option] = hostvars[name]
                break
    return out


def container_vars(host: str, hostvars: dict, machine: dict, source: str,
                   running: Optional[bool] = None) -> Dict[str, object]:
    """Host variables of one container (its own ``vars`` last, so they override ours)."""
    out: Dict[str, object] = {
        "ansible_connection": CONNECTION,
        "nspawn_machine": machine["name"],
        "nspawn_container_host": host,
        "nspawn_source": source,
        "nspawn_groups": list(machine.get("groups", [])),
    }
    out.update(connection_vars(host, hostvars))
    for key in ("zone", "bridge", "state"):
        if machine.get(key) is not None:
            out[f"nspawn_{key}"] = machine[key]
    if machine.get("address"):
        out["nspawn_address"] = str(machine["address"]).split("/", 1)[0]
    if machine.get("os"):
        out["nspawn_os"] = f"{machine['os']} {machine.get('version') or ''}".strip()
    if running is not None:
        out["nspawn_running"] = running
    out.update(machine.get("vars", {}))
    return out


def groups_of(host: str, machine: dict, declared_here: bool) -> List[str]:
    """Groups of a container: all containers, its host's, its own ``groups``, undeclared if so."""
    groups = [ALL_GROUP, safe_group(f"{host}_containers")]
    groups += [safe_group(g) for g in machine.get("groups", [])]
    if not declared_here:
        groups.append(UNDECLARED_GROUP)
    return groups


def plan(host: str, hostvars: dict, sources: List[str], running: Optional[List[dict]]) -> List[dict]:
    """Every container of one host: [{name, vars, groups}] from the declared fleet and/or discovery."""
    entries: Dict[str, dict] = {}
    if "declared" in sources:
        for machine in declared(host, hostvars):
            entries[machine["name"]] = {"machine": machine, "declared": True}
    if "discovered" in sources:
        for found in running or []:
            entry = entries.setdefault(found["name"], {"machine": {"name": found["name"]}, "declared": False})
            entry["machine"] = {**entry["machine"], "os": found.get("os"), "version": found.get("version")}
            entry["running"] = True
    names = {m["name"] for m in running or []}
    out = []
    for name, entry in entries.items():
        is_running = entry.get("running", name in names) if running is not None else None
        source = "declared" if entry["declared"] else "discovered"
        out.append({"machine": name,
                    "vars": container_vars(host, hostvars, entry["machine"], source, is_running),
                    "groups": groups_of(host, entry["machine"], entry["declared"])})
    return out
