# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reconcile a container's resource limits: drop-in file + live cgroup values.

read (drop-in, ``systemctl show``) -> plan (``resources.plan_live``, pure) ->
apply: write the drop-in, ONE daemon-reload when it changed, ``set-property
--runtime`` for a running unit, then read ``systemctl show`` back to verify.
The live plan is made against the values from BEFORE the reload, so check mode
and a real run decide ``changed`` identically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ansible_collections.corral.nspawn.plugins.module_utils import resources, systemd
from ansible_collections.corral.nspawn.plugins.module_utils.files import FileResult, ensure_file, read_text
from ansible_collections.corral.nspawn.plugins.module_utils.machine import parse_timestamp


class LimitsError(Exception):
    """systemd did not take a limit; ``details`` go into the failure result."""

    def __init__(self, msg: str, **details):
        super().__init__(msg)
        self.details = details


@dataclass
class LimitsResult:
    name: str
    file: FileResult
    live: resources.LivePlan
    running: bool
    pending_restart: bool
    shown: Dict[str, str] = field(default_factory=dict)
    stale: bool = False   # the drop-in on disk is right but systemd never loaded it

    @property
    def changed(self) -> bool:
        return self.file.changed or self.live.changed or self.stale

    @property
    def changes(self) -> List[str]:
        out = [f"drop-in: {self.file.action} {self.file.path}"] if self.file.changed else []
        out += [f"daemon-reload: systemd has not loaded {self.file.path} as it is on disk "
                "(a run ended before its daemon-reload)"] if self.stale else []
        return out + [f"live: {c}" for c in self.live.changes]


def read_live(module, name: str) -> Dict[str, str]:
    """ActiveState, start time and the live limit properties of the container's unit."""
    props = ["ActiveState", "ActiveEnterTimestamp", "NeedDaemonReload", "DropInPaths"] + resources.show_properties()
    return systemd.show_unit(module, systemd.unit_name(name), props)


def _pending(live: resources.LivePlan, desired: dict, dropin_mtime: Optional[float], since: Optional[float]) -> bool:
    """Limits that only apply at start are waiting when changed now or written after the start."""
    if live.pending:
        return True
    restart_only = [k for k in desired if k not in resources.KEY_TO_OPTION or not resources.TABLE[
        resources.KEY_TO_OPTION[k]].live]
    return bool(restart_only and dropin_mtime and since is not None and dropin_mtime > since)


def _mtime(path: str) -> Optional[float]:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def reconcile(module, name: str, desired: Optional[dict], units_dir: str = resources.UNITS_DIR,
              reload: bool = True) -> LimitsResult:
    """Make the drop-in hold ``desired`` (None or {} removes it) and push live limits.

    ``desired`` is the output of ``resources.normalize``. With ``reload=False`` the
    caller (the fleet) runs one daemon-reload for many machines and then calls
    ``apply_live`` itself.
    """
    path = resources.dropin_path(name, units_dir)
    before = resources.parse_dropin(read_text(path))
    shown = read_live(module, name)
    running = shown.get("ActiveState") in systemd.RUNNING_STATES
    live = resources.plan_live(desired or {}, before, shown) if running else resources.LivePlan()
    file_result = ensure_file(module, path, resources.render_dropin(desired or {}))
    stale = not file_result.changed and resources.load_stale(desired or {}, path, shown)
    result = LimitsResult(name, file_result, live, running, running and _pending(
        live, desired or {}, _mtime(path), parse_timestamp(shown.get("ActiveEnterTimestamp", ""))), shown, stale)
    if module.check_mode:
        return result
    if file_result.action == "remove":
        _remove_empty_dir(os.path.dirname(path))
    if (file_result.changed or stale) and reload:
        systemd.daemon_reload(module)
    if reload:
        apply_live(module, name, live)
    return result


CONTROL_DIR = "/run/systemd/system.control"


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
            _remove(os.path.join(control_dir, f"{unit}.d", f"50-{key}.conf"))
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


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_empty_dir(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass  # not empty (other drop-ins) or already gone: leave it
