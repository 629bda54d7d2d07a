# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""The I/O of the runtime state (machine plans; see its docstring for the contract).

``read`` asks systemd once for every machine; ``apply`` enables, stops, restarts and starts in batched
calls; ``wait_running`` polls a container's own systemd, ``wait_active`` the unit of a container that runs
a command; ``wait_many`` waits for several containers concurrently.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence

from ansible_collections.corral.nspawn.plugins.module_utils import nspawn_settings, rootfs, systemd, unitfile
from ansible_collections.corral.nspawn.plugins.module_utils.hostprep import parse_os_release
from ansible_collections.corral.nspawn.plugins.module_utils.files import read_text
from ansible_collections.corral.nspawn.plugins.module_utils.machine import (
    DOWN_STATES, IMAGE_DIRS, SETTINGS_DIRS, UNIT_PROPERTIES, Current, Plan, RuntimeState, WaitResult, WaitSpec,
)
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError, run


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

# A container booted alone is up in a fraction of a second: asked again 0.1, 0.3, 0.7 and 1.5 s after the
# start of the wait, then every ``poll``, it is seen up to a poll interval sooner, for a few more questions.
FIRST_POLL = 0.1


def failed_units(module, name: str) -> List[str]:
    """Failed units inside the container (explains 'degraded')."""
    _rc, out, _err = run(module, ["systemctl", "--machine", name, "list-units", "--failed",
                                  "--no-legend", "--plain", "--no-pager"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _poll(module, name: str, timeout: float, poll: float, probe, too_long) -> WaitResult:
    """Ask ``probe(elapsed)`` -> (WaitResult or None, state) until it decides, FIRST_POLL s after the first
    question, then twice as long each time up to every ``poll`` s; after ``timeout`` a failure:
    ``too_long(state)`` and the unit's status and journal tail."""
    started, pause = time.monotonic(), min(FIRST_POLL, poll)
    while True:
        decided, state = probe(time.monotonic() - started)
        if decided is not None:
            return decided
        elapsed = time.monotonic() - started
        if elapsed >= timeout:
            return _failed(module, name, state, elapsed, too_long(state))
        time.sleep(pause)
        pause = min(2 * pause, poll)


def _failed(module, name: str, state: str, elapsed: float, why: str) -> WaitResult:
    return WaitResult(name, False, state, elapsed, msg=f"machine {name}: {why}\n{systemd.failure_report(module, name)}")


def _unit_state(module, name: str) -> str:
    return systemd.show_unit(module, systemd.unit_name(name), ("ActiveState",)).get("ActiveState", "")


def wait_running(module, name: str, timeout: float, poll: float = 1.0) -> WaitResult:
    """Poll until the container's systemd reports running/degraded, its unit dies, or timeout."""
    def probe(elapsed):
        state = systemd.system_state(module, name)
        if state == "running":
            return WaitResult(name, True, state, elapsed), state
        if state == "degraded":
            failed = ", ".join(failed_units(module, name)) or "unknown"
            return WaitResult(name, True, state, elapsed,
                              warning=f"machine {name}: its systemd reports degraded (failed units: {failed})"), state
        unit = _unit_state(module, name)
        if unit in DOWN_STATES:
            return _failed(module, name, state, elapsed, f"the container stopped while booting (unit {unit})"), state
        return None, state
    return _poll(module, name, timeout, poll, probe, lambda state: (
        f"its systemd did not report running within {timeout:g} s (last state {state or 'unreachable'!r})"))


def wait_active(module, name: str, timeout: float, poll: float = 1.0) -> WaitResult:
    """For a container that does not boot (``Boot=no``, ``ProcessTwo=yes``): its unit is active.

    There is no systemd inside to ask; nspawn reports the unit ready once the command runs.
    """
    def probe(elapsed):
        state = _unit_state(module, name)
        if state == "active":
            return WaitResult(name, True, "active (no boot: its command runs)", elapsed), state
        if state in DOWN_STATES:
            return _failed(module, name, state, elapsed, f"the container's command exited (unit {state})"), state
        return None, state
    return _poll(module, name, timeout, poll, probe, lambda state: (
        f"its unit did not become active within {timeout:g} s (last state {state!r})"))


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


def image_os(root: Optional[str]) -> Optional[str]:
    """PRETTY_NAME of a directory image (None for disk images or without os-release; machine_info)."""
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
