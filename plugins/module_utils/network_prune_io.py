# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""The I/O of network_prune (it decides; see its docstring): ``read(module) -> HostState``, and
``run_prune(module) -> dict``: read, plan, refuse or apply (files removed, links deleted, one networkd reload).
"""

from __future__ import annotations

from typing import List

from ansible_collections.corral.nspawn.plugins.module_utils import netlink, nspawn_settings_io, shared, systemd
from ansible_collections.corral.nspawn.plugins.module_utils.files import ensure_file
from ansible_collections.corral.nspawn.plugins.module_utils.names import zone_ifname
from ansible_collections.corral.nspawn.plugins.module_utils.network_io import read_dir
from ansible_collections.corral.nspawn.plugins.module_utils.network_prune import (
    HostState, declared_machines, link_diff, plan, settings_network, still_attached)
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError, run
from ansible_collections.corral.nspawn.plugins.module_utils.systemd import SystemdError, list_machines


def read_running(module) -> List[str]:
    """Running machines as machined lists them ([] when machined does not answer: ports still name them)."""
    try:
        return sorted(m.get("machine", "") for m in list_machines(module) if m.get("machine"))
    except (CommandError, SystemdError):
        return []


def read(module) -> HostState:
    settings_dir = module.params["settings_dir"]
    settings = {name: settings_network(text) for name, text in nspawn_settings_io.read_dir(settings_dir).items()}
    return HostState(read_dir(), netlink.read(), settings, read_running(module), settings_dir)


def run_prune(module) -> dict:
    """The module's whole job: read, plan, refuse or apply; returns the result for exit_json."""
    params = module.params
    errors = shared.errors({"settings_dir": params["settings_dir"]})
    if errors:
        module.fail_json(msg="; ".join(errors), pruned=[], changes=[])
    fleet = params["fleet"] or {}
    declared, errors = declared_machines(fleet.get("machines") or [], fleet.get("defaults") or {},
                                         fleet.get("host_defaults") or {})
    state = read(module)
    # like the fleet: with an empty machine list it prunes only when prune_all says so
    fleet_prune = bool(fleet.get("prune")) and bool(fleet.get("machines") or fleet.get("prune_all"))
    keep = {zone_ifname(z) for z in params["zones"]} | set(params["bridges"])
    todo = plan(keep, declared, state, fleet_prune, params["prune_all"])
    errors += todo.errors
    if errors:
        module.fail_json(msg="prune: refusing to remove anything: " + "; ".join(errors) + "; nothing was changed",
                         pruned=[], changes=[])
    if todo.victims and not module.check_mode:
        stuck = still_attached(todo.victims, netlink.read())
        if stuck:
            module.fail_json(msg="prune: container ports are still attached to links that were to be deleted "
                                 f"({'; '.join(stuck)}); remove or stop those machines first (in site.yml the "
                                 "fleet runs before the network prune)", pruned=[], changes=[])
    results = [ensure_file(module, path, None) for v in todo.victims for path in v.files]
    changes = [f"remove {r.path}" for r in results if r.changed]
    changes += [f"delete link {v.ifname}" for v in todo.victims if v.link == "delete"]
    for warning in todo.warnings:
        module.warn(warning)
    if changes and not module.check_mode:
        for victim in todo.victims:
            if victim.link == "delete":
                netlink.delete_link(victim.ifname)
        systemd.networkd_reload(module, run)
    out = dict(changed=bool(changes), changes=changes, pruned=[v.as_dict() for v in todo.victims])
    if module._diff and changes:
        deleted = [v for v in todo.victims if v.link == "delete"]
        out["diff"] = [r.diff for r in results if r.changed] + [link_diff(v, state.net) for v in deleted]
    return out
