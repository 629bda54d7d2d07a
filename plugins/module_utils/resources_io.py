# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""The I/O of the resource limits (resources plans; see its docstring for the contract).

- ``read(module, items) -> resources.ResourcesState``: the drop-ins, ONE ``systemctl show`` for all units.
- ``apply(module, plan)``: write/remove the drop-ins, ONE daemon-reload when one changed or was never
  loaded, then ``set-property --runtime`` per running unit, read back with ``systemctl show`` to verify.
"""

from __future__ import annotations

import contextlib
import os
from typing import Dict, List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils import resources, systemd
from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError
from ansible_collections.corral.nspawn.plugins.module_utils.files import read_text, remove_empty_dir, write_result
from ansible_collections.corral.nspawn.plugins.module_utils.machine import parse_timestamp

CONTROL_DIR = "/run/systemd/system.control"
SHOW = ["ActiveState", "ActiveEnterTimestamp", "NeedDaemonReload", "DropInPaths"]


class LimitsError(CorralError):
    """systemd did not take a limit; ``details`` go into the failure result."""


def read_live(module, names: List[str]) -> Dict[str, Dict[str, str]]:
    """ActiveState, start time and the live limit properties of every container's unit, in one call."""
    shown = systemd.show(module, [systemd.unit_name(n) for n in names], SHOW + resources.show_properties())
    return {name: shown.get(systemd.unit_name(name), {}) for name in names}


def read_file(path: str) -> Tuple[Optional[str], Optional[int], Optional[float]]:
    text = read_text(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None, None, None
    return text, info.st_mode & 0o7777, info.st_mtime


def read(module, items: List[resources.ResourcesItem],
         shown: Optional[Dict[str, Dict[str, str]]] = None) -> resources.ResourcesState:
    """The drop-ins and ONE show of the units; ``shown``: {name: SHOW + show_properties() values} when the caller
    asked systemd already (the fleet, in its one show of every unit and machines.target)."""
    shown = read_live(module, [item.name for item in items]) if shown is None else shown
    return resources.ResourcesState(
        files={item.path: read_file(item.path) for item in items}, shown=shown,
        started={name: parse_timestamp(props.get("ActiveEnterTimestamp", "")) for name, props in shown.items()})


def write(module, result) -> None:
    """One planned drop-in; a removed one takes its directory along when that is empty then."""
    write_result(module, result)
    if result.action == "remove":
        remove_empty_dir(os.path.dirname(result.path))


def apply(module, plan: resources.ResourcesPlan) -> None:
    for item in plan.items:
        write(module, item.file)
    if plan.reload:
        systemd.daemon_reload(module)
    for item in plan.items:
        apply_live(module, item.name, item.live)


def apply_live(module, name: str, live: resources.LivePlan, control_dir: str = CONTROL_DIR) -> Dict[str, str]:
    """set-property --runtime, then verify with systemctl show; raises LimitsError on mismatch.

    A limit removed from the drop-in is reset to the unit's own value (e.g. the vendor
    TasksMax=16384): the runtime control file an earlier set-property left behind is removed,
    systemd reloaded, and the value it then reports is pushed to the running unit.
    """
    if not live.assignments:
        return {}
    unit = systemd.unit_name(name)
    assignments = list(live.assignments)
    expected = dict(live.expected)
    if live.resets:
        for key in live.resets:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(control_dir, f"{unit}.d", f"50-{key}.conf"))
        systemd.daemon_reload(module)
        base = systemd.show_unit(module, unit, resources.show_properties())
        resets = {resources.reset_assignment(key, base) for key in live.resets}
        assignments = [a for a in assignments if a.partition("=")[0] not in live.resets] + sorted(resets)
        expected.update({resources.show_property(key): resources.reset_assignment(key, base).partition("=")[2]
                         for key in live.resets})
    systemd.set_property_runtime(module, unit, assignments)
    shown = systemd.show_unit(module, unit, resources.show_properties())
    mismatches = resources.verify(expected, shown)
    if mismatches:
        raise LimitsError(f"machine {name}: systemd did not take the limits: {'; '.join(mismatches)}",
                          assignments=assignments, shown=shown)
    return shown
