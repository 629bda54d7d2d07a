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
from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError
from ansible_collections.corral.nspawn.plugins.module_utils.files import read_text
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError, run

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


@dataclass
class RuntimeState:
    """What ONE ``systemctl show`` said about every machine's unit and about machines.target."""

    units: Dict[str, Dict[str, str]] = field(default_factory=dict)   # machine name -> unit properties
    target: Dict[str, str] = field(default_factory=dict)

    def current(self, name: str) -> Current:
        return current_from_show(name, self.units.get(name, {}), self.target)


def read(module, names: Sequence[str], properties: Sequence[str] = ()) -> RuntimeState:
    """Every machine's unit AND machines.target in one batched show (``properties`` added: the fleet's)."""
    if not names:
        return RuntimeState()
    units = [systemd.unit_name(n) for n in names]
    wanted = list(UNIT_PROPERTIES) + [p for p in properties if p not in UNIT_PROPERTIES]
    shown = systemd.show(module, units + [systemd.MACHINES_TARGET], wanted)
    return RuntimeState({n: shown.get(u, {}) for n, u in zip(names, units)}, shown.get(systemd.MACHINES_TARGET, {}))


def read_current(module, name: str) -> Current:
    return read(module, [name]).current(name)


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


def run_jobs(module, verb: str, names: Sequence[str], how: Dict[str, WaitSpec],
             poll: float = 1.0) -> Dict[str, WaitResult]:
    """``systemctl start|restart`` of every name in ONE call, then the waits ``how`` says, concurrently.

    A container whose job failed gets ok=False and its unit status and journal tail (one failed
    unit fails the whole call: a show tells which ones)."""
    names = list(names)
    if not names:
        return {}
    if verb == "start":
        systemd.reset_failed(module, names)
    failed: Dict[str, WaitResult] = {}
    try:
        getattr(systemd, verb)(module, names)
    except CommandError as error:
        units = systemd.show(module, [systemd.unit_name(n) for n in names], ("ActiveState",))
        failed = {n: _start_failure(module, n, error) for n in names
                  if units.get(systemd.unit_name(n), {}).get("ActiveState") not in systemd.RUNNING_STATES}
    rest = [n for n in names if n not in failed]
    results = wait_many(module, rest, 0, poll, how) if rest else {}
    results.update(failed)
    return {n: results[n] for n in names}


def start_many(module, names: Sequence[str], timeout: float, wait: bool = True,
               poll: float = 1.0, how: Optional[Dict[str, WaitSpec]] = None) -> Dict[str, WaitResult]:
    """Start containers with ONE systemctl call, then wait for all of them concurrently (see run_jobs)."""
    how = how if how is not None else {n: ("system" if wait else "none", timeout) for n in names}
    return run_jobs(module, "start", names, how, poll)


def apply(module, plans: Sequence[Plan], how: Dict[str, WaitSpec]) -> Dict[str, WaitResult]:
    """Carry out the plans of one or many containers (never in check mode): enable and disable, stop,
    restart and start, each ONE systemctl call; returns the outcome of every start and restart,
    waited for as ``how`` says per name (see wait_one; a name missing there is not waited for)."""
    systemd.enable(module, [p.name for p in plans if p.enable is True])
    systemd.disable(module, [p.name for p in plans if p.enable is False])
    systemd.stop(module, [p.name for p in plans if p.runtime == "stop"])
    how = {p.name: how.get(p.name, ("none", 0)) for p in plans}
    results = run_jobs(module, "restart", [p.name for p in plans if p.runtime == "restart"], how)
    results.update(start_many(module, [p.name for p in plans if p.runtime == "start"], 0, how=how))
    return results


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
        "settings": unitfile.values(settings_text, strict=False, collapse=True),
        "resources_path": dropin_path if dropin_values else None,
        "resources": dropin_values,
    }
