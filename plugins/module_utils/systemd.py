# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""systemctl / machinectl / journalctl calls for nspawn containers.

Every call goes through ``runner.run`` with an argv list. Functions that take
several names issue ONE command for all of them, so systemd queues the jobs in
parallel, split into as few commands as the kernel's argument limit needs
(``argv_chunks``: thousands of names never make an argv the kernel refuses).
Pure helpers (parsers) sit next to the calls that need them.
"""

from __future__ import annotations

import json
import os
import time
from typing import Dict, List, Optional, Sequence

from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError, run

MACHINES_TARGET = "machines.target"
ENABLED_STATES = ("enabled", "enabled-runtime", "linked", "linked-runtime", "alias")
RUNNING_STATES = ("active", "activating", "reloading")


class SystemdError(CorralError):
    """A systemd tool is missing or answered with an error we cannot recover from."""


def unit_name(name: str) -> str:
    """The one owner of a machine's unit name (Layout.unit and every caller go through it)."""
    return f"systemd-nspawn@{name}.service"


def is_running(props: Dict[str, str]) -> bool:
    """Whether a unit's ``show`` properties say it runs (or is on its way up): the one test for it."""
    return props.get("ActiveState") in RUNNING_STATES


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


# ---------------------------------------------------------------- argument limits

# Names per command at most: a batch of thousands of units in one systemctl call queues them
# all, but keeps one D-Bus call and one argv very large; 256 is far below any limit we know.
ARGV_NAMES_CAP = 256
# The share of the kernel's ARG_MAX one argv may take: the environment (and, with ``sudo`` or
# a connection plugin in between, its own additions) is counted against the same limit.
ARGV_SHARE = 4
ARGV_BYTES_CAP = 128 * 1024          # also MAX_ARG_STRLEN on Linux: stay under it whatever ARG_MAX says
ARG_MAX_FALLBACK = 4096 * 32         # when sysconf cannot tell (POSIX guarantees only 4096)


def argv_byte_limit(arg_max: Optional[int] = None) -> int:
    """Bytes one argv may take: a quarter of ``SC_ARG_MAX``, at most 128 KiB, at least 4 KiB."""
    if arg_max is None:
        try:
            arg_max = os.sysconf("SC_ARG_MAX")
        except (ValueError, OSError, AttributeError):
            arg_max = ARG_MAX_FALLBACK
        if arg_max <= 0:
            arg_max = ARG_MAX_FALLBACK
    return max(4096, min(arg_max // ARGV_SHARE, ARGV_BYTES_CAP))


def argv_bytes(argv: Sequence[str]) -> int:
    """What an argv costs against ARG_MAX: each string, its NUL and its pointer."""
    return sum(len(arg.encode("utf-8", "surrogateescape")) + 1 + 8 for arg in argv)


def argv_chunks(head: Sequence[str], items: Sequence[str], max_bytes: Optional[int] = None,
                max_items: int = ARGV_NAMES_CAP) -> List[List[str]]:
    """``head + items`` split into argvs that each keep ``head`` and stay within both limits.

    Items keep their order (the concatenation of the chunks' items is ``items``); no chunk is
    empty; an empty ``items`` gives no argv at all.
    """
    limit = argv_byte_limit() if max_bytes is None else max_bytes
    base = argv_bytes(head)
    chunks: List[List[str]] = []
    current: List[str] = []
    size = base
    for item in items:
        cost = argv_bytes([item])
        if current and (size + cost > limit or len(current) >= max_items):
            chunks.append(list(head) + current)
            current, size = [], base
        if base + cost > limit:
            raise SystemdError(f"one argument of {cost} bytes does not fit an argv of {limit} bytes: {item[:80]}...")
        current.append(item)
        size += cost
    if current:
        chunks.append(list(head) + current)
    return chunks


def run_chunked(module, head: Sequence[str], items: Sequence[str], check: bool = True) -> List[tuple]:
    """``run`` for every chunk of ``argv_chunks``; every chunk runs even when one fails (as one
    command would have acted on every name), then the first failure is raised."""
    results, failure = [], None
    for argv in argv_chunks(head, items):
        try:
            results.append(run(module, argv, check=check))
        except CommandError as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
    return results


# ---------------------------------------------------------------- systemctl

def show(module, units: Sequence[str], properties: Sequence[str]) -> Dict[str, Dict[str, str]]:
    """Properties of several units in one call (split only past the argument limit, the answers
    merged); timestamps in UTC with microseconds
    (``--timestamp=us+utc``, systemd 247+; ``unix`` would be whole seconds and needs 251+)."""
    if not units:
        return {}
    props = ",".join(["Id"] + [p for p in properties if p != "Id"])
    merged: Dict[str, Dict[str, str]] = {}
    for _rc, out, _err in run_chunked(module, ["systemctl", "show", "--timestamp=us+utc", f"--property={props}"],
                                      list(units)):
        merged.update(parse_show(out))
    return merged


def show_unit(module, unit: str, properties: Sequence[str]) -> Dict[str, str]:
    """Properties of one unit (an unknown unit still answers: LoadState=not-found)."""
    return show(module, [unit], properties).get(unit, {})


def systemctl(module, verb: str, units: Sequence[str], *flags: str) -> None:
    """One systemctl call for many units; raises CommandError on failure."""
    run_chunked(module, ["systemctl", verb, *flags], list(units))


def enable_and_start(module, unit: str, props: Dict[str, str]) -> List[str]:
    """Enable and start ``unit`` where its ``show`` properties say it is not (one systemctl call; none in
    check mode); the verbs needed, [] when it is enabled and running."""
    verbs = ([] if is_enabled(props.get("UnitFileState", "")) else ["enable"]) + \
        ([] if is_running(props) else ["start"])
    if verbs and not module.check_mode:
        if "enable" in verbs:
            systemctl(module, "enable", [unit], *(["--now"] if "start" in verbs else []))
        else:
            systemctl(module, "start", [unit])
    return verbs


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
        run_chunked(module, ["systemctl", "enable"], [unit_name(n) for n in names] + [MACHINES_TARGET])


def disable(module, names: Sequence[str]) -> None:
    run_chunked(module, ["systemctl", "disable"], [unit_name(n) for n in names])


def start(module, names: Sequence[str]) -> None:
    """Start several containers in one call; nspawn units report ready once init runs."""
    systemctl(module, "start", [unit_name(n) for n in names])


def stop(module, names: Sequence[str]) -> None:
    systemctl(module, "stop", [unit_name(n) for n in names])


def restart(module, names: Sequence[str]) -> None:
    systemctl(module, "restart", [unit_name(n) for n in names])


def reset_failed(module, names: Sequence[str]) -> None:
    """Forget an earlier failure so a start is not refused by the start rate limit."""
    run_chunked(module, ["systemctl", "reset-failed"], [unit_name(n) for n in names], check=False)


def failure_report(module, name: str, lines: int = 25) -> str:
    """A container's ``systemctl status`` (no journal lines) and the last ``lines`` journal lines of its unit on
    the host (boot messages included): one text for a failure message."""
    unit = unit_name(name)
    _rc, out, err = run(module, ["systemctl", "status", "--no-pager", "--lines=0", "--full", unit], check=False)
    status = (out or err).strip()
    _rc, out, err = run(module, ["journalctl", "--no-pager", "--quiet", "-o", "short-iso",
                                 "-n", str(lines), "-u", unit], check=False)
    return (f"--- systemctl status {unit}\n{status}\n"
            f"--- journalctl -u {unit} (last {lines} lines)\n{(out or err).strip()}")


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
