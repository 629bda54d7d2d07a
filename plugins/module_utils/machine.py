# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Runtime and boot state of nspawn containers, the pure part: parse what systemd says, plan (machine_io reads
and applies).

The resource contract (the machine module calls it with one item, the fleet with N):

- ``machine_io.read(module, names, properties=()) -> RuntimeState``: ONE ``systemctl show`` for every
  machine's unit and machines.target (``properties``: more of the same call, e.g. the fleet's limits).
- ``plan(name, state, enabled, current, restart_needed=False, policy="on_change", terse=False) -> Plan``:
  enable/disable and start/stop/restart (``pending_restart`` when the policy leaves a needed restart).
- ``machine_io.apply(module, plans, how) -> {name: WaitResult}``: enable, disable, stop, restart and start,
  one systemctl call each, then the waits ``how`` says per name (system | unit | none, seconds).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Dict, List, Optional, Sequence, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils import systemd, unitfile
from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError

STATES = ("running", "stopped", "restarted")
SETTINGS_DIRS = ("/etc/systemd/nspawn", "/run/systemd/nspawn")
IMAGE_DIRS = ("/etc/machines", "/run/machines", "/var/lib/machines", "/var/lib/container",
              "/usr/local/lib/machines", "/usr/lib/machines")
UNIT_PROPERTIES = ("LoadState", "ActiveState", "SubState", "UnitFileState", "MainPID",
                   "ActiveEnterTimestamp", "Result")
DOWN_STATES = ("failed", "inactive")


class MachineError(CorralError):
    """A step failed; ``details`` go into the failure result."""


@dataclass
class Current:
    """The container unit as systemd reports it now."""

    name: str = ""
    active: str = "inactive"          # ActiveState of systemd-nspawn@NAME.service
    sub: str = "dead"
    enabled: bool = False             # the instance is wanted by machines.target
    target_enabled: bool = True       # machines.target itself is enabled
    main_pid: int = 0
    since: Optional[float] = None     # ActiveEnterTimestamp, unix seconds with microseconds

    @property
    def running(self) -> bool:
        return systemd.is_running({"ActiveState": self.active})


_US_UTC = re.compile(r"^\w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}) UTC$")


def parse_timestamp(value: str) -> Optional[float]:
    """A systemctl show timestamp as unix seconds.

    'Tue 2023-11-14 22:13:20.123456 UTC' (``--timestamp=us+utc``, what systemd.show asks for:
    microseconds, so a file written after the start within the same second counts as after);
    '@1700000000' (``--timestamp=unix``) is read too; '' / 'n/a' -> None.
    """
    value = (value or "").strip()
    if value.startswith("@") and value[1:].isdigit():
        return float(value[1:])
    match = _US_UTC.match(value)
    if not match:
        return None
    stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def current_from_show(name: str, unit: Dict[str, str], target: Dict[str, str]) -> Current:
    pid = unit.get("MainPID", "0")
    return Current(
        name=name,
        active=unit.get("ActiveState", "inactive"),
        sub=unit.get("SubState", "dead"),
        enabled=systemd.is_enabled(unit.get("UnitFileState", "")),
        target_enabled=systemd.is_enabled(target.get("UnitFileState", "enabled")),
        main_pid=int(pid) if pid.isdigit() else 0,
        since=parse_timestamp(unit.get("ActiveEnterTimestamp", "")),
    )


@dataclass
class RuntimeState:
    """What ONE ``systemctl show`` said about every machine's unit and about machines.target."""

    units: Dict[str, Dict[str, str]] = field(default_factory=dict)   # machine name -> unit properties
    target: Dict[str, str] = field(default_factory=dict)

    def current(self, name: str) -> Current:
        return current_from_show(name, self.units.get(name, {}), self.target)


# ---------------------------------------------------------------- plan (pure)

@dataclass
class Plan:
    """What must happen to one container; decided the same way in check mode and for real."""

    name: str
    enable: Optional[bool] = None     # True enable, False disable, None leave
    runtime: str = "none"             # none | start | stop | restart
    changes: List[str] = field(default_factory=list)
    pending_restart: bool = False     # running, a change waits for a restart the policy does not do now

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def _runtime(state: Optional[str], running: bool, restart_needed: bool, policy: str) -> str:
    if state == "stopped":
        return "stop" if running else "none"
    if state in ("running", "restarted") and not running:
        return "start"
    if running and (state == "restarted" or policy == "always" or (policy == "on_change" and restart_needed)):
        return "restart"
    return "none"


def plan(name: str, state: Optional[str], enabled: Optional[bool], current: Current,
         restart_needed: bool = False, policy: str = "on_change", terse: bool = False) -> Plan:
    """Decide enable/disable and start/stop/restart from desired vs current state (pure).

    ``state``: running | stopped | restarted | present (the fleet's: leave the runtime alone) | None.
    ``restart_needed``: another resource changed what a running container uses; ``policy`` (the fleet's
    restart: on_change | never | always) says whether it restarts now or reports ``pending_restart``.
    ``terse``: the fleet's words ("enable", "start") instead of the unit's name in each change.
    """
    result = Plan(name)
    unit = systemd.unit_name(name)
    if enabled is True and not (current.enabled and current.target_enabled):
        result.enable = True
        result.changes.append("enable" if terse else f"enable {unit} (machines.target)")
    elif enabled is False and current.enabled:
        result.enable = False
        result.changes.append("disable" if terse else f"disable {unit}")
    result.runtime = _runtime(state, current.running, restart_needed, policy)
    result.pending_restart = result.runtime == "none" and current.running and restart_needed
    if result.runtime != "none":
        result.changes.append(result.runtime if terse else f"{result.runtime} {unit}")
    return result


def pending_restart(current: Current, config_mtimes: Sequence[float]) -> bool:
    """A running container whose settings changed after it started needs a restart."""
    if not current.running or current.since is None:
        return False
    return any(mtime > current.since for mtime in config_mtimes)


def settings_dirs(settings_dir: str = SETTINGS_DIRS[0]) -> Tuple[str, ...]:
    """Where the machine module looks for a .nspawn file: systemd's own order for a trusted directory,
    else ``settings_dir`` in place of /etc (a test or special setup, as the fleet reads it), then /run."""
    if os.path.normpath(settings_dir) in SETTINGS_DIRS:
        return SETTINGS_DIRS
    return (settings_dir,) + SETTINGS_DIRS[1:]


# ---------------------------------------------------------------- wait outcome

@dataclass
class WaitResult:
    """Outcome of waiting for one container's systemd."""

    name: str
    ok: bool
    state: str = ""                   # the container's is-system-running answer
    seconds: float = 0.0
    warning: Optional[str] = None
    msg: Optional[str] = None         # failure message (unit status + journal tail)

    def as_dict(self) -> dict:
        data = {"ok": self.ok, "state": self.state, "seconds": round(self.seconds, 1)}
        data.update({k: v for k, v in (("warning", self.warning), ("msg", self.msg)) if v})
        return data


# How to wait for one container: "system" (its systemd reports running), "unit" (the unit is active: a
# container that runs a command instead of booting), "none"; and the seconds to wait.
WaitSpec = Tuple[str, float]


# ---------------------------------------------------------------- read-only description (machine_info)

def describe(name: str, image: Optional[dict], running: Optional[dict], unit: Dict[str, str],
             settings_path: str, settings_text: Optional[str], dropin_path: str,
             dropin_values: Dict[str, object], os_name: Optional[str]) -> dict:
    """One machine's description from what was read (pure)."""
    addresses = (running or {}).get("addresses") or ""
    if isinstance(addresses, str):
        addresses = [a for a in addresses.split() if a and a != "-"]
    usage = (image or {}).get("usage")
    return {
        "name": name,
        "state": "running" if running or systemd.is_running(unit) else "stopped",
        "active_state": unit.get("ActiveState", "inactive"),
        "enabled": systemd.is_enabled(unit.get("UnitFileState", "")),
        "image": image is not None,
        "root": (image or {}).get("path"),
        "type": (image or {}).get("type"),
        "read_only": bool((image or {}).get("ro")),
        "size": usage if isinstance(usage, int) and usage < 2 ** 63 else None,
        "os": os_name or (" ".join(filter(None, [(running or {}).get("os"), (running or {}).get("version")])) or None),
        "addresses": list(addresses),
        "main_pid": int(unit.get("MainPID", "0") or 0) if unit.get("MainPID", "0").isdigit() else 0,
        "settings_path": settings_path if settings_text is not None else None,
        "settings": unitfile.values(settings_text, strict=False, collapse=True),
        "resources_path": dropin_path if dropin_values else None,
        "resources": dropin_values,
    }
