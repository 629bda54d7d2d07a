# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runtime and boot state of nspawn containers: read -> plan (pure) -> apply.

``plan`` decides from the desired ``state``/``enabled`` and the unit's current
state; ``apply`` acts (skipped in check mode); ``wait_running`` polls the
container's own systemd; ``start_many`` starts several containers with one
systemctl call and waits for all of them concurrently (used by the fleet).
"""

from __future__ import annotations

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Dict, List, Optional, Sequence, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils import nspawn_settings, rootfs, systemd, unitfile
from ansible_collections.corral.nspawn.plugins.module_utils.files import read_text
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError, run

STATES = ("running", "stopped", "restarted")
SETTINGS_DIRS = ("/etc/systemd/nspawn", "/run/systemd/nspawn")
IMAGE_DIRS = ("/etc/machines", "/run/machines", "/var/lib/machines", "/var/lib/container",
              "/usr/local/lib/machines", "/usr/lib/machines")
UNIT_PROPERTIES = ("LoadState", "ActiveState", "SubState", "UnitFileState", "MainPID",
                   "ActiveEnterTimestamp", "Result")
DOWN_STATES = ("failed", "inactive")


class MachineError(Exception):
    """A step failed; ``details`` go into the failure result."""

    def __init__(self, msg: str, **details):
        super().__init__(msg)
        self.details = details


@dataclass
class Current:
    """The container unit as systemd reports it now."""

    name: str
    active: str = "inactive"          # ActiveState of systemd-nspawn@NAME.service
    sub: str = "dead"
    enabled: bool = False             # the instance is wanted by machines.target
    target_enabled: bool = True       # machines.target itself is enabled
    main_pid: int = 0
    since: Optional[float] = None     # ActiveEnterTimestamp, unix seconds with microseconds

    @property
    def running(self) -> bool:
        return self.active in systemd.RUNNING_STATES


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


def read_current(module, name: str) -> Current:
    unit = systemd.unit_name(name)
    units = systemd.show(module, [unit, systemd.MACHINES_TARGET], UNIT_PROPERTIES)
    return current_from_show(name, units.get(unit, {}), units.get(systemd.MACHINES_TARGET, {}))


# ---------------------------------------------------------------- plan (pure)

@dataclass
class Plan:
    """What must happen to one container; decided the same way in check mode and for real."""

    name: str
    enable: Optional[bool] = None     # True enable, False disable, None leave
    runtime: str = "none"             # none | start | stop | restart
    changes: List[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def plan(name: str, state: Optional[str], enabled: Optional[bool], current: Current) -> Plan:
    """Decide enable/disable and start/stop/restart from desired vs current state."""
    result = Plan(name)
    if enabled is True and not (current.enabled and current.target_enabled):
        result.enable = True
        result.changes.append(f"enable {systemd.unit_name(name)} (machines.target)")
    elif enabled is False and current.enabled:
        result.enable = False
        result.changes.append(f"disable {systemd.unit_name(name)}")
    if state == "running" and not current.running:
        result.runtime = "start"
    elif state == "stopped" and current.running:
        result.runtime = "stop"
    elif state == "restarted":
        result.runtime = "restart" if current.running else "start"
    if result.runtime != "none":
        result.changes.append(f"{result.runtime} {systemd.unit_name(name)}")
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


def settings_mtimes(name: str, dirs: Sequence[str] = SETTINGS_DIRS) -> List[float]:
    """Modification times of the trusted .nspawn files of ``name`` (read at container start)."""
    mtimes = []
    for directory in dirs:
        try:
            mtimes.append(os.stat(os.path.join(directory, f"{name}.nspawn")).st_mtime)
        except OSError:
            continue
    return mtimes


def wait_mode(name: str, dirs: Sequence[str] = SETTINGS_DIRS) -> str:
    """How to wait for ``name``: "system" (its own systemd) or "unit" (a container that runs a command).

    Read from the first trusted .nspawn file systemd uses for it: ``Boot=no`` or ``ProcessTwo=yes``
    run ``Parameters=`` instead of an init, so there is no systemd inside to ask.
    """
    for directory in dirs:
        text = read_text(os.path.join(directory, f"{name}.nspawn"))
        if text is None:
            continue
        try:
            doc = unitfile.parse(text)
        except unitfile.UnitFileError:
            return "system"  # systemd refuses such a file too; the start reports it
        boot, two = unitfile.get(doc, "Exec", "Boot"), unitfile.get(doc, "Exec", "ProcessTwo")
        return "system" if nspawn_settings.boots({"boot": boot[-1] if boot else True,
                                                  "process_two": two[-1] if two else False}) else "unit"
    return "system"


# ---------------------------------------------------------------- wait

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


def failed_units(module, name: str) -> List[str]:
    """Failed units inside the container (explains 'degraded')."""
    _rc, out, _err = run(module, ["systemctl", "--machine", name, "list-units", "--failed",
                                  "--no-legend", "--plain", "--no-pager"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def wait_running(module, name: str, timeout: float, poll: float = 1.0) -> WaitResult:
    """Poll until the container's systemd reports running/degraded, its unit dies, or timeout."""
    started = time.monotonic()
    state = ""
    while True:
        state = systemd.system_state(module, name)
        elapsed = time.monotonic() - started
        if state == "running":
            return WaitResult(name, True, state, elapsed)
        if state == "degraded":
            failed = ", ".join(failed_units(module, name)) or "unknown"
            return WaitResult(name, True, state, elapsed,
                              warning=f"machine {name}: its systemd reports degraded (failed units: {failed})")
        unit = systemd.show_unit(module, systemd.unit_name(name), ("ActiveState",))
        if unit.get("ActiveState") in DOWN_STATES:
            return WaitResult(name, False, state, elapsed, msg=(
                f"machine {name}: the container stopped while booting "
                f"(unit {unit.get('ActiveState')})\n{systemd.failure_report(module, name)}"))
        if elapsed >= timeout:
            return WaitResult(name, False, state, elapsed, msg=(
                f"machine {name}: its systemd did not report running within {timeout:g} s "
                f"(last state {state or 'unreachable'!r})\n{systemd.failure_report(module, name)}"))
        time.sleep(poll)


def wait_active(module, name: str, timeout: float, poll: float = 1.0) -> WaitResult:
    """For a container that does not boot (``Boot=no``, ``ProcessTwo=yes``): its unit is active.

    There is no systemd inside to ask; nspawn reports the unit ready once the command runs.
    """
    started = time.monotonic()
    while True:
        state = systemd.show_unit(module, systemd.unit_name(name), ("ActiveState",)).get("ActiveState", "")
        elapsed = time.monotonic() - started
        if state == "active":
            return WaitResult(name, True, "active (no boot: its command runs)", elapsed)
        if state in DOWN_STATES:
            return WaitResult(name, False, state, elapsed, msg=(
                f"machine {name}: the container's command exited (unit {state})\n{systemd.failure_report(module, name)}"))
        if elapsed >= timeout:
            return WaitResult(name, False, state, elapsed, msg=(
                f"machine {name}: its unit did not become active within {timeout:g} s (last state {state!r})\n"
                f"{systemd.failure_report(module, name)}"))
        time.sleep(poll)


# How to wait for one container: "system" (its systemd reports running), "unit" (the unit is active: a
# container that runs a command instead of booting), "none"; and the seconds to wait.
WaitSpec = Tuple[str, float]


def wait_one(module, name: str, spec: WaitSpec, poll: float = 1.0) -> WaitResult:
    mode, timeout = spec
    if mode == "none":
        return WaitResult(name, True)
    if mode == "unit":
        return wait_active(module, name, timeout, poll)
    return wait_running(module, name, timeout, poll)


def wait_many(module, names: Sequence[str], timeout: float, poll: float = 1.0,
              how: Optional[Dict[str, WaitSpec]] = None) -> Dict[str, WaitResult]:
    """Wait for several containers concurrently (each one is mostly sleeping); ``how`` per name overrides."""
    if not names:
        return {}
    how = how or {}
    with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
        results = pool.map(lambda n: wait_one(module, n, how.get(n, ("system", timeout)), poll), names)
        return dict(zip(names, results))


# ---------------------------------------------------------------- apply

def _start_failure(module, name: str, error: CommandError) -> WaitResult:
    return WaitResult(name, False, "", 0.0, msg=(
        f"machine {name}: start failed: {(error.err or error.out).strip()}\n{systemd.failure_report(module, name)}"))


def start_many(module, names: Sequence[str], timeout: float, wait: bool = True,
               poll: float = 1.0, how: Optional[Dict[str, WaitSpec]] = None) -> Dict[str, WaitResult]:
    """Start containers with ONE systemctl call, then wait for all of them concurrently.

    Returns {name: WaitResult}; a container whose start failed gets ok=False and a
    message with its unit status and journal tail. Not for check mode (callers skip it).
    """
    names = list(names)
    if not names:
        return {}
    systemd.reset_failed(module, names)
    failed: Dict[str, WaitResult] = {}
    try:
        systemd.start(module, names)
    except CommandError as error:
        # one failed unit fails the whole call: find out which ones
        units = systemd.show(module, [systemd.unit_name(n) for n in names], ("ActiveState",))
        for name in names:
            if units.get(systemd.unit_name(name), {}).get("ActiveState") not in systemd.RUNNING_STATES:
                failed[name] = _start_failure(module, name, error)
    rest = [n for n in names if n not in failed]
    if how is None and not wait:
        results = {n: WaitResult(n, True) for n in rest}
    else:
        results = wait_many(module, rest, timeout, poll, how)
    results.update(failed)
    return {n: results[n] for n in names}


def apply(module, plan_: Plan, wait: bool, timeout: float, mode: str = "system") -> Optional[WaitResult]:
    """Carry out ``plan_`` (never in check mode); returns the wait outcome when it waited (see wait_one)."""
    if plan_.enable is True:
        systemd.enable(module, [plan_.name])
    elif plan_.enable is False:
        systemd.disable(module, [plan_.name])
    if plan_.runtime == "stop":
        systemd.stop(module, [plan_.name])
    elif plan_.runtime == "start":
        return start_many(module, [plan_.name], timeout, wait,
                          how={plan_.name: (mode, timeout)} if wait else None)[plan_.name]
    elif plan_.runtime == "restart":
        try:
            systemd.restart(module, [plan_.name])
        except CommandError as error:
            return _start_failure(module, plan_.name, error)
        return wait_one(module, plan_.name, (mode, timeout)) if wait else None
    return None


def image_error(module, name: str) -> Optional[str]:
    """None when machined finds an image for ``name``, else a message listing where it looked."""
    if systemd.image_info(module, name) is not None:
        return None
    return (f"no such image: machine {name!r} has no root directory or disk image in "
            f"{', '.join(IMAGE_DIRS)} (create it first, e.g. with corral.nspawn.image)")


# ---------------------------------------------------------------- read-only description (machine_info)

def parse_os_release(text: Optional[str]) -> Dict[str, str]:
    """os-release text -> {KEY: value} (quotes removed)."""
    values = {}
    for line in (text or "").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            values[key] = value.strip().strip("\"'")
    return values


def image_os(root: Optional[str]) -> Optional[str]:
    """PRETTY_NAME of a directory image (None for disk images or without os-release)."""
    if not root or not os.path.isdir(root):
        return None
    try:
        with rootfs.RootFS(root) as fs:   # absolute links in the root resolve inside it, never on the host
            for rel in ("etc/os-release", "usr/lib/os-release"):
                try:
                    text = fs.read_text(rel, limit=64 * 1024)
                except (OSError, rootfs.RootError):
                    continue
                if text is not None:
                    release = parse_os_release(text)
                    return release.get("PRETTY_NAME") or release.get("NAME")
    except OSError:
        return None
    return None


def unit_doc_values(text: Optional[str]) -> Dict[str, Dict[str, object]]:
    """Unit-file text -> {Section: {Key: value, or list when repeated}} (None/invalid -> {})."""
    from ansible_collections.corral.nspawn.plugins.module_utils import unitfile
    try:
        doc = unitfile.normalize(unitfile.parse(text or ""))
    except unitfile.UnitFileError:
        return {}
    out: Dict[str, Dict[str, object]] = {}
    for section, entries in doc:
        values: Dict[str, object] = {}
        for key, value in entries:
            previous = values.get(key)
            values[key] = value if previous is None else (previous if isinstance(previous, list) else [previous]) + [value]
        out[section] = values
    return out


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
        "state": "running" if running or unit.get("ActiveState") in systemd.RUNNING_STATES else "stopped",
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
        "settings": unit_doc_values(settings_text),
        "resources_path": dropin_path if dropin_values else None,
        "resources": dropin_values,
    }
