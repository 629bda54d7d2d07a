# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""systemctl / machinectl / journalctl calls for nspawn containers.

Every call goes through ``runner.run`` with an argv list. Functions that take
several names issue ONE command for all of them, so systemd queues the jobs in
parallel. Pure helpers (parsers) sit next to the calls that need them.
"""

from __future__ import annotations

import json
import time
from typing import Dict, List, Optional, Sequence

from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError, run

MACHINES_TARGET = "machines.target"
ENABLED_STATES = ("enabled", "enabled-runtime", "linked", "linked-runtime", "alias")
RUNNING_STATES = ("active", "activating", "reloading")


class SystemdError(Exception):
    """A systemd tool is missing or answered with an error we cannot recover from."""


def unit_name(name: str) -> str:
    return f"systemd-nspawn@{name}.service"


def parse_show(text: str) -> Dict[str, Dict[str, str]]:
    """``systemctl show -p Id,...`` output (blocks separated by blank lines) -> {Id: {Property: value}}."""
    units: Dict[str, Dict[str, str]] = {}
    block: Dict[str, str] = {}
    for line in text.splitlines() + [""]:
        if not line.strip():
            if block.get("Id"):
                units[block["Id"]] = block
            block = {}
            continue
        key, _sep, value = line.partition("=")
        block[key] = value
    return units


def is_enabled(unit_file_state: str) -> bool:
    return unit_file_state in ENABLED_STATES


# ---------------------------------------------------------------- systemctl

def show(module, units: Sequence[str], properties: Sequence[str]) -> Dict[str, Dict[str, str]]:
    """Properties of several units in one call; timestamps in UTC with microseconds
    (``--timestamp=us+utc``, systemd 247+; ``unix`` would be whole seconds and needs 251+)."""
    if not units:
        return {}
    props = ",".join(["Id"] + [p for p in properties if p != "Id"])
    _rc, out, _err = run(module, ["systemctl", "show", "--timestamp=us+utc", f"--property={props}", *units])
    return parse_show(out)


def show_unit(module, unit: str, properties: Sequence[str]) -> Dict[str, str]:
    """Properties of one unit (an unknown unit still answers: LoadState=not-found)."""
    return show(module, [unit], properties).get(unit, {})


def systemctl(module, verb: str, units: Sequence[str], *flags: str) -> None:
    """One systemctl call for many units; raises CommandError on failure."""
    if units:
        run(module, ["systemctl", verb, *flags, *units])


def daemon_reload(module) -> None:
    run(module, ["systemctl", "daemon-reload"])


# networkctl's words for "networkd did not answer on the bus": a timeout, or (seen on loaded hosts)
# the connection dropped while it was being restarted.
NETWORKD_GONE = ("timed out", "Message recipient disconnected")


def networkd_reload(module, runner=run, attempts: int = 3) -> None:
    """``networkctl reload``; when networkd does not answer on D-Bus, restart it once and retry.

    Seen on a fresh host: networkd started while systemd was reloading (two runs enabling it at
    once) came up without its bus connection, so every reload timed out (25 s) until a restart.
    A restart keeps the links networkd configured; the reload itself is idempotent.
    """
    for attempt in range(1, attempts + 1):
        try:
            runner(module, ["networkctl", "reload"])
            return
        except CommandError as exc:
            if attempt == attempts or not any(sign in (exc.err or "") + str(exc) for sign in NETWORKD_GONE):
                raise
            runner(module, ["systemctl", "restart", "systemd-networkd.service"])
            time.sleep(attempt)


def set_property_runtime(module, unit: str, assignments: Sequence[str]) -> None:
    """Change cgroup limits of a unit now, without a restart (until the next reboot)."""
    if assignments:
        run(module, ["systemctl", "set-property", "--runtime", unit, *assignments])


def enable(module, names: Sequence[str]) -> None:
    """What ``machinectl enable`` does: the instances and machines.target, in one call."""
    if names:
        run(module, ["systemctl", "enable", *[unit_name(n) for n in names], MACHINES_TARGET])


def disable(module, names: Sequence[str]) -> None:
    if names:
        run(module, ["systemctl", "disable", *[unit_name(n) for n in names]])


def start(module, names: Sequence[str]) -> None:
    """Start several containers in one call; nspawn units report ready once init runs."""
    systemctl(module, "start", [unit_name(n) for n in names])


def stop(module, names: Sequence[str]) -> None:
    systemctl(module, "stop", [unit_name(n) for n in names])


def restart(module, names: Sequence[str]) -> None:
    systemctl(module, "restart", [unit_name(n) for n in names])


def reset_failed(module, names: Sequence[str]) -> None:
    """Forget an earlier failure so a start is not refused by the start rate limit."""
    if names:
        run(module, ["systemctl", "reset-failed", *[unit_name(n) for n in names]], check=False)


def unit_status(module, unit: str) -> str:
    """``systemctl status`` text of a unit (no journal lines), for error messages."""
    _rc, out, err = run(module, ["systemctl", "status", "--no-pager", "--lines=0", "--full", unit], check=False)
    return (out or err).strip()


def journal_tail(module, unit: str, lines: int = 25) -> str:
    """The last ``lines`` journal lines of a unit on the host (container boot messages included)."""
    _rc, out, err = run(module, ["journalctl", "--no-pager", "--quiet", "-o", "short-iso",
                                 "-n", str(lines), "-u", unit], check=False)
    return (out or err).strip()


def failure_report(module, name: str, lines: int = 25) -> str:
    """Unit status and journal tail of a container, one text for a failure message."""
    unit = unit_name(name)
    return f"--- systemctl status {unit}\n{unit_status(module, unit)}\n" \
           f"--- journalctl -u {unit} (last {lines} lines)\n{journal_tail(module, unit, lines)}"


# ---------------------------------------------------------------- inside the container

def system_state(module, name: str) -> str:
    """The container's own ``systemctl is-system-running`` ('' while it cannot be asked yet)."""
    # rc is non-zero for every state but 'running'; the answer is on stdout, bus errors on stderr
    _rc, out, _err = run(module, ["systemctl", "--machine", name, "is-system-running"], check=False)
    return out.strip().splitlines()[-1] if out.strip() else ""


# ---------------------------------------------------------------- machined

def machined_error(module) -> Optional[str]:
    """None when machinectl and systemd-machined answer, else a message saying what is missing."""
    if not module.get_bin_path("machinectl"):
        return "machinectl was not found: install the systemd-container package"
    rc, out, err = run(module, ["machinectl", "--no-pager", "--no-legend", "list"], check=False)
    if rc != 0:
        return (f"systemd-machined is not available (machinectl list failed, rc={rc}: "
                f"{(err or out).strip()}); it needs systemd as PID 1 and D-Bus")
    return None


def image_info(module, name: str) -> Optional[Dict[str, str]]:
    """machined's view of image ``name`` (Path, Type, ReadOnly, Usage...) or None when there is none."""
    rc, out, _err = run(module, ["machinectl", "--no-pager", "show-image", name], check=False)
    if rc != 0:
        return None
    return dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)


def _json(module, argv: List[str]) -> list:
    _rc, out, _err = run(module, argv)
    try:
        data = json.loads(out or "[]")
    except ValueError as exc:
        raise SystemdError(f"{' '.join(argv)}: unexpected output: {out[:200]!r}") from exc
    return data if isinstance(data, list) else []


def list_machines(module) -> List[dict]:
    """Running machines as machined lists them (machine, class, service, os, version, addresses)."""
    return _json(module, ["machinectl", "--no-pager", "--output=json", "list"])


def list_images(module) -> List[dict]:
    """Images machined finds in /var/lib/machines and the other image directories."""
    return _json(module, ["machinectl", "--no-pager", "--output=json", "list-images"])


__all__ = ["CommandError", "SystemdError", "unit_name", "parse_show", "is_enabled", "show", "show_unit",
           "systemctl", "daemon_reload", "set_property_runtime", "enable", "disable", "start", "stop",
           "restart", "reset_failed", "unit_status", "journal_tail", "failure_report", "system_state",
           "machined_error", "image_info", "list_machines", "list_images", "MACHINES_TARGET"]
