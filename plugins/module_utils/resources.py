# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""cgroup resource limits of ``systemd-nspawn@NAME.service`` (pure: no I/O).

Options (snake_case) map to ``[Service]`` keys through one table. Values are
validated and normalised to one canonical spelling, so ``2G`` and ``2048M`` are
the same limit. The drop-in is the persistent truth; the keys marked ``live``
are also pushed to a running unit with ``systemctl set-property --runtime`` and
read back from ``systemctl show`` to verify them.

The resource contract (the resources module calls it with one item, the fleet with N):

- ``resources_io.read(module, items) -> ResourcesState``: every drop-in (text, mode, mtime) and ONE
  ``systemctl show`` for all units. Nothing changes; works in check mode.
- ``plan(items, state) -> ResourcesPlan``: per item the file decision, the live plan (running units), whether
  systemd must reload a drop-in it has not loaded, and pending restarts; ``plan.reload``: one daemon-reload.
- ``resources_io.apply(module, plan)``: write/remove the drop-ins, ONE daemon-reload, set-property --runtime
  and verify per running unit; never in check mode.
- ``ResourcesItem(name, path, desired)``: ``desired`` from ``normalize`` ({} removes the drop-in).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

from ansible_collections.corral.nspawn.plugins.module_utils import shared, systemd, unitfile
from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError
from ansible_collections.corral.nspawn.plugins.module_utils.files import FileResult, plan_file_mode
from ansible_collections.corral.nspawn.plugins.module_utils.layout import Layout
from ansible_collections.corral.nspawn.plugins.module_utils.plan import Plan
from ansible_collections.corral.nspawn.plugins.module_utils.values import line_error

DROPIN_NAME = "50-corral-resources.conf"
INFINITY = "infinity"
CPUS_MAX = 8192
# Accepted by systemd, but the container is killed (or throttled) at its first page: never meant.
NONZERO = {"memory_max": "0 would kill the container at once; give more than 0 bytes, or 'infinity' for no limit",
           "memory_high": "0 would throttle the container to a halt; give more than 0 bytes, or 'infinity'"}
_SUFFIXES = "KMGTPE"
_NUMBER = re.compile(r"^(\d+(?:\.\d+)?)([KMGTPE]?)B?$")
_PERCENT = re.compile(r"^(\d+(?:\.\d{1,2})?)%$")
_KEY = re.compile(r"[A-Z][A-Za-z0-9]*")

Value = Union[str, List[str]]


class ResourceError(CorralError, ValueError):
    """Invalid resource options; the message names every bad option."""


@dataclass(frozen=True)
class Spec:
    """One option: its systemd key, value kind, and how it is read back."""

    key: str
    kind: str                     # memory | quota | weight | cpus | tasks | bandwidth | device
    live: bool                    # applied to a running unit with set-property --runtime
    show: Optional[str] = None    # systemctl show property used to verify (default: key)


TABLE: Dict[str, Spec] = {
    "memory_max": Spec("MemoryMax", "memory", True),
    "memory_high": Spec("MemoryHigh", "memory", True),
    "memory_swap_max": Spec("MemorySwapMax", "memory", True),
    "cpu_quota": Spec("CPUQuota", "quota", True, show="CPUQuotaPerSecUSec"),
    "cpu_weight": Spec("CPUWeight", "weight", True),
    "allowed_cpus": Spec("AllowedCPUs", "cpus", True),
    "tasks_max": Spec("TasksMax", "tasks", True),
    "io_weight": Spec("IOWeight", "weight", True),
    "io_read_bandwidth_max": Spec("IOReadBandwidthMax", "bandwidth", False),
    "io_write_bandwidth_max": Spec("IOWriteBandwidthMax", "bandwidth", False),
    "device_allow": Spec("DeviceAllow", "device", False),
}
KEY_TO_OPTION = {spec.key: option for option, spec in TABLE.items()}
LIST_KINDS = ("bandwidth", "device")


# ---------------------------------------------------------------- units

def format_size(size: int, base: int = 1024) -> str:
    """Largest exact suffix: 2147483648 -> '2G', 1536 -> '1536' (base 1024)."""
    for power in range(len(_SUFFIXES), 0, -1):
        unit = base ** power
        if size and size % unit == 0:
            return f"{size // unit}{_SUFFIXES[power - 1]}"
    return str(size)


def parse_size(value, base: int = 1024) -> int:
    """'2G' -> bytes (systemd parse_size: K M G T P E, powers of ``base``)."""
    text = str(value).strip()
    match = _NUMBER.match(text)
    if not match:
        raise ValueError(text)
    number, suffix = match.groups()
    multiplier = base ** (_SUFFIXES.index(suffix) + 1) if suffix else 1
    whole, _dot, frac = number.partition(".")
    size = int(whole) * multiplier + (int(frac) * multiplier) // (10 ** len(frac)) if frac else int(whole) * multiplier
    if frac and not suffix:
        raise ValueError(text)
    return size


def parse_percent(text: str) -> int:
    """'12.5%' -> 1250 (permyriad, the resolution systemd keeps)."""
    match = _PERCENT.match(text.strip())
    if not match:
        raise ValueError(text)
    whole, _dot, frac = match.group(1).partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def format_percent(permyriad: int) -> str:
    whole, frac = divmod(permyriad, 100)
    return f"{whole}%" if not frac else f"{whole}.{frac:02d}".rstrip("0") + "%"


_TIMESPAN_UNITS = {"us": 1, "ms": 1000, "s": 1000000, "min": 60000000, "h": 3600000000}
_TIMESPAN = re.compile(r"(\d+(?:\.\d+)?)(us|ms|min|s|h)")


def parse_timespan_usec(text: str) -> Optional[int]:
    """systemctl show timespans ('500ms', '1.500000s', '1min 30s') -> microseconds; infinity -> None."""
    text = text.strip()
    if text in ("", INFINITY):
        return None
    total = 0
    for number, unit in _TIMESPAN.findall(text):
        total += int(float(number) * _TIMESPAN_UNITS[unit])
    return total


def parse_cpus(value) -> List[int]:
    """'0-2,5' / [0, 1] / 3 -> sorted CPU numbers."""
    items = value if isinstance(value, list) else re.split(r"[,\s]+", str(value).strip())
    cpus = set()
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        low, sep, high = item.partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            raise ValueError(item)
        first, last = int(low), int(high) if sep else int(low)
        if last < first:
            raise ValueError(item)
        cpus.update(range(first, last + 1))
    return sorted(cpus)


def format_cpus(cpus: List[int]) -> str:
    """[0, 1, 2, 5] -> '0-2 5' is systemd's input; we use the kernel's '0-2,5'."""
    ranges, start = [], None
    for index, cpu in enumerate(cpus):
        if start is None:
            start = cpu
        if index + 1 == len(cpus) or cpus[index + 1] != cpu + 1:
            ranges.append(str(start) if start == cpu else f"{start}-{cpu}")
            start = None
    return ",".join(ranges)


# ---------------------------------------------------------------- normalisers (one per kind)

def _share(text: str) -> Optional[str]:
    """'infinity', or a percentage above 0% and at most 100% (of RAM, of the kernel's task limit) in our
    spelling; None when ``text`` is neither (an absolute value)."""
    if text == INFINITY:
        return INFINITY
    if not text.endswith("%"):
        return None
    permyriad = parse_percent(text)
    if not 0 < permyriad <= 10000:   # more than 100% is refused
        raise ValueError(text)
    return format_percent(permyriad)


def _memory(value) -> str:
    text = str(value).strip()
    return _share(text) or format_size(parse_size(text))


def _quota(value) -> str:
    if not isinstance(value, str):
        raise ValueError(value)
    permyriad = parse_percent(value)
    if permyriad < 1:   # systemd refuses CPUQuota=0%
        raise ValueError(value)
    return format_percent(permyriad)


def _whole(text: str, high: Optional[int] = None) -> str:
    """A whole number from 1 (up to ``high``) in our spelling ('007' -> '7')."""
    if not text.isdigit() or int(text) < 1 or (high is not None and int(text) > high):
        raise ValueError(text)
    return str(int(text))


def _weight(value) -> str:
    text = str(value).strip()
    return text if text == "idle" else _whole(text, 10000)


def _cpus(value) -> str:
    cpus = parse_cpus(value)
    if not cpus or cpus[-1] >= CPUS_MAX:   # systemd's cpu_set_add() limit
        raise ValueError(value)
    return format_cpus(cpus)


def _tasks(value) -> str:
    text = str(value).strip()
    return _share(text) or _whole(text)


def _bandwidth(value) -> str:
    path, _sep, rate = str(value).strip().rpartition(" ")
    path = path.strip()
    if not path.startswith("/") or " " in path:
        raise ValueError(value)
    if rate == INFINITY:
        return f"{path} {INFINITY}"
    size = parse_size(rate, base=1000)  # systemd reads IO bandwidth in powers of 1000
    if size < 1:
        raise ValueError(value)
    return f"{path} {format_size(size, base=1000)}"


def _device(value) -> str:
    parts = str(value).split()
    if not 1 <= len(parts) <= 2:
        raise ValueError(value)
    path, modes = parts[0], (parts[1] if len(parts) == 2 else "rwm")
    if not (path.startswith("/dev/") or path.startswith("char-") or path.startswith("block-")) or len(path) < 6:
        raise ValueError(value)
    if not modes or set(modes) - set("rwm") or len(set(modes)) != len(modes):
        raise ValueError(value)
    return f"{path} {''.join(m for m in 'rwm' if m in modes)}"


# Device directories and the device class that allows what is in them (systemd skips a directory in
# DeviceAllow= with only a log line: the container then gets none of its nodes).
DEVICE_CLASSES = {"/dev/dri": "char-drm", "/dev/snd": "char-alsa", "/dev/input": "char-input",
                  "/dev/bus/usb": "char-usb_device", "/dev/net": "char-misc", "/dev/vfio": "char-vfio"}


def device_warnings(values: Dict[str, object], isdir=os.path.isdir, label: str = "") -> List[str]:
    """DeviceAllow= entries that name a directory (known ones, or a directory on this host)."""
    items = values.get("DeviceAllow") or []
    warnings = []
    for item in items if isinstance(items, list) else [items]:
        path, _sep, modes = str(item).partition(" ")
        path = path.rstrip("/")
        if path.startswith("/dev/") and (path in DEVICE_CLASSES or isdir(path)):
            hint = f"'{DEVICE_CLASSES[path]} {modes or 'rwm'}'" if path in DEVICE_CLASSES else \
                "the device class (char-GROUP from /proc/devices) or each /dev node"
            warnings.append(f"{label}device_allow: {item!r} names a directory, which systemd skips (no device in "
                            f"it is allowed); give {hint}")
    return warnings


_NORMALISERS = {"memory": _memory, "quota": _quota, "weight": _weight, "cpus": _cpus, "tasks": _tasks,
                "bandwidth": _bandwidth, "device": _device}
ALLOWED = {
    "memory": "bytes with an optional K, M, G, T suffix (powers of 1024, e.g. '512M', '2G'), "
              "a percentage of RAM ('50%', more than 0% and at most 100%) or 'infinity'",
    "quota": "a percentage of one CPU above 0% with up to two decimals, quoted, e.g. '50%' or '150%'",
    "weight": "an integer 1..10000 (or 'idle' for cpu_weight)",
    "cpus": "CPU numbers and ranges (0..8191), e.g. '0-1,3' or [0, 1]",
    "tasks": "a positive integer, a percentage above 0% and at most 100% ('10%') or 'infinity'",
    "bandwidth": "'PATH RATE': an absolute device or file path and bytes per second with an optional "
                 "K, M, G, T suffix (powers of 1000) or 'infinity', e.g. '/dev/sda 10M'",
    "device": "'PATH [MODES]': /dev/NODE, char-GROUP or block-GROUP, MODES a combination of r, w, m "
              "(default rwm), e.g. '/dev/fuse rwm'",
}


def _line_problems(value) -> List[str]:
    """Items (or the value) that would break out of their drop-in line: device paths are free text."""
    items = [i for i in (value if isinstance(value, list) else [value]) if not isinstance(i, (dict, list))]
    checked = ((item, line_error(str(item))) for item in items)
    return [f"{item!r} {error}" for item, error in checked if error]


def _normalise_one(option: str, spec: Spec, value, label: str) -> Tuple[Optional[Value], Optional[str]]:
    problems = _line_problems(value)
    if problems:
        return None, f"{label}{option}: invalid {'; '.join(problems)}"
    if spec.kind in LIST_KINDS:
        values = value if isinstance(value, list) else [value]
        out, bad = [], []
        for item in values:
            try:
                out.append(_NORMALISERS[spec.kind](item))
            except (ValueError, TypeError):
                bad.append(repr(item))
        if bad:
            return None, f"{label}{option}: invalid {', '.join(bad)}; expected {ALLOWED[spec.kind]}"
        return out, None
    idle_not_allowed = option != "cpu_weight" and str(value).strip() == "idle"
    try:
        wrong_type = isinstance(value, (bool, dict)) or (isinstance(value, list) and spec.kind != "cpus")
        if not idle_not_allowed and not wrong_type:
            normalised = _NORMALISERS[spec.kind](value)
            if normalised == "0" and option in NONZERO:
                return None, f"{label}{option}: invalid value {value!r}; {NONZERO[option]}"
            return normalised, None
    except (ValueError, TypeError):
        pass
    return None, f"{label}{option}: invalid value {value!r}; expected {ALLOWED[spec.kind]}"


def _check_extra(extra: dict, label: str) -> Tuple[Dict[str, Value], List[str]]:
    out: Dict[str, Value] = {}
    errors = []
    for key, value in (extra or {}).items():
        if not _KEY.fullmatch(str(key)):
            errors.append(f"{label}extra: key {key!r} is not a systemd key name (CamelCase letters and digits)")
        elif key in KEY_TO_OPTION:
            errors.append(f"{label}extra: {key} has its own option, use {KEY_TO_OPTION[key]}")
        elif isinstance(value, (dict, type(None))):
            errors.append(f"{label}extra: {key} must be a string, number or list of them")
        else:
            items = value if isinstance(value, list) else [value]
            # systemd strips whitespace around values: store them the way it reads them back
            rendered = [("yes" if v else "no") if isinstance(v, bool) else str(v).strip() for v in items]
            problems = _line_problems(rendered)
            if problems:
                errors.append(f"{label}extra: {key}: invalid {'; '.join(problems)}")
            elif isinstance(value, list) and "" in rendered:
                errors.append(f"{label}extra: {key} list items must not be empty (an empty value resets the key)")
            # an empty list is the same as an empty assignment: a reset
            out[key] = rendered if isinstance(value, list) and rendered else (rendered or [""])[0]
    return out, errors


def normalize(options: dict, label: str = "") -> Dict[str, Value]:
    """Validate options (snake_case, None = unset) -> {Key: canonical value or list}.

    ``label`` prefixes option names in messages (the fleet passes 'machines[3].resources.').
    Raises ResourceError naming every bad option, the value and the allowed form.
    """
    desired: Dict[str, Value] = {}
    errors = []
    for option, value in options.items():
        if option == "extra" or value is None:
            continue
        spec = TABLE.get(option)
        if spec is None:
            errors.append(f"{label}{option}: unknown option; known: {', '.join(sorted(TABLE))}, extra")
            continue
        canonical, error = _normalise_one(option, spec, value, label)
        if error:
            errors.append(error)
        elif canonical != []:
            desired[spec.key] = canonical
    extra, extra_errors = _check_extra(options.get("extra") or {}, label)
    errors.extend(extra_errors)
    if errors:
        raise ResourceError("; ".join(errors))
    desired.update(extra)
    return desired


# ---------------------------------------------------------------- drop-in file

def dropin_path(name: str, units_dir: str = shared.UNITS_DIR) -> str:
    """Our drop-in in the unit's .d directory (Layout's)."""
    return os.path.join(Layout(units_dir=units_dir).dropin_dir(name), DROPIN_NAME)


def render_dropin(desired: Dict[str, Value]) -> Optional[str]:
    """The drop-in text for ``desired`` (None: no limits, the file should not exist).

    List keys start with an empty assignment so the drop-in owns the whole list
    except for DeviceAllow, whose reset would also drop the unit's own entries
    (/dev/net/tun, char-pts) that the container needs.
    """
    if not desired:
        return None
    entries = []
    for key, value in desired.items():
        if isinstance(value, list):
            if key != "DeviceAllow":
                entries.append((key, ""))
            entries.extend((key, item) for item in value)
        else:
            entries.append((key, value))
    return unitfile.render([("Service", entries)])


def parse_dropin(text: Optional[str]) -> Dict[str, Value]:
    """Our drop-in text -> {Key: value or list}, the inverse of render_dropin (bad text reads as {})."""
    values: Dict[str, Value] = {}
    for key, items in unitfile.values(text, strict=False).get("Service", {}).items():
        if key in _LIST_KEYS or len(items) > 1:
            # an empty assignment resets the list: only what follows the last reset counts
            last_reset = max((i for i, v in enumerate(items) if v == ""), default=-1)
            values[key] = items[last_reset + 1:]
        else:
            values[key] = items[0]
    return values


_LIST_KEYS = {spec.key for spec in TABLE.values() if spec.kind in LIST_KINDS}


def to_options(values: Dict[str, Value]) -> dict:
    """{Key: value} -> module-style options (snake_case, unknown keys under ``extra``)."""
    options: dict = {}
    for key, value in values.items():
        if key in KEY_TO_OPTION:
            options[KEY_TO_OPTION[key]] = value
        else:
            options.setdefault("extra", {})[key] = value
    return options


# ---------------------------------------------------------------- live state (systemctl show)

def show_properties() -> List[str]:
    """Properties to read from ``systemctl show`` to compare live values."""
    return [spec.show or spec.key for spec in TABLE.values() if spec.live]


def live_value(spec: Spec, shown: Optional[str]) -> Optional[str]:
    """A ``systemctl show`` value in our canonical spelling; None when it cannot be compared."""
    if shown is None:
        return None
    shown = shown.strip()
    if spec.kind == "quota":
        usec = parse_timespan_usec(shown)
        return "" if usec is None else format_percent(usec // 100)
    if spec.kind == "memory":
        return INFINITY if shown == INFINITY else (format_size(int(shown)) if shown.isdigit() else None)
    if spec.kind == "cpus":
        try:
            return format_cpus(parse_cpus(shown)) if shown else ""
        except ValueError:
            return None
    if spec.kind == "weight":
        return {"0": "idle", "[not set]": ""}.get(shown, shown)
    return shown


def comparable(spec: Spec, value: str) -> bool:
    """Percentages of RAM / of pid_max are resolved by systemd; show cannot confirm them."""
    return not (spec.kind in ("memory", "tasks") and value.endswith("%"))


@dataclass
class LivePlan:
    """What to push to a running unit, and what ``systemctl show`` must say afterwards."""

    assignments: List[str] = field(default_factory=list)   # Key=value for set-property --runtime
    resets: List[str] = field(default_factory=list)        # keys removed from the drop-in ("Key=" above)
    expected: Dict[str, str] = field(default_factory=dict)  # show property -> canonical value
    pending: List[str] = field(default_factory=list)      # changed keys that apply on the next start
    changes: List[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.assignments)


def plan_live(desired: Dict[str, Value], before: Dict[str, Value], shown: Dict[str, str]) -> LivePlan:
    """Pure: decide set-property assignments for a running unit.

    ``before`` is the drop-in's previous content, ``shown`` the current ``systemctl show``
    values. A live key is set when its value differs from what systemd reports (or, when
    systemd cannot confirm it, from the previous drop-in); a live key removed from the
    drop-in is reset to the unit's own value; other changed keys wait for a restart.
    """
    plan = LivePlan()
    for spec in TABLE.values():
        want, had = desired.get(spec.key), before.get(spec.key)
        if not spec.live:
            if want != had:
                plan.pending.append(spec.key)
            continue
        prop = spec.show or spec.key
        if want is None:
            if had is not None:
                # 'Key=' lifts the limit; apply_live first replaces it with the unit's own value
                plan.assignments.append(f"{spec.key}=")
                plan.resets.append(spec.key)
                plan.changes.append(f"{spec.key}: {had} -> (unset)")
            continue
        now = live_value(spec, shown.get(prop))
        differs = (now != want) if comparable(spec, want) and now is not None else (had != want)
        if differs:
            plan.assignments.append(f"{spec.key}={want}")
            plan.changes.append(f"{spec.key}: {now or had or 'unset'} -> {want}")
        if comparable(spec, want):
            plan.expected[prop] = want
    plan.pending.extend(k for k in sorted(set(desired) | set(before))
                        if k not in KEY_TO_OPTION and desired.get(k) != before.get(k))
    return plan


def load_stale(desired: Dict[str, Value], dropin_path: str, shown: Dict[str, str]) -> bool:
    """Pure: systemd runs the unit with other limits than the drop-in on disk says.

    That is what a run killed between writing (or removing) the drop-in and ``daemon-reload``
    leaves behind. NeedDaemonReload=yes alone is not enough: ``systemctl set-property --runtime``
    leaves it set on systemd 252 after every live limit change, and a reload on every later run
    would be a change that never converges. So: the drop-in is on disk but not loaded (or loaded
    but gone), or a live value differs from it.
    """
    if shown.get("NeedDaemonReload") != "yes":
        return False
    if bool(desired) != (dropin_path in shown.get("DropInPaths", "").split()):
        return True
    return bool(plan_live(desired, desired, shown).assignments)


def show_property(key: str) -> str:
    """The systemctl show property that reports ``key`` (CPUQuota -> CPUQuotaPerSecUSec)."""
    spec = TABLE[KEY_TO_OPTION[key]]
    return spec.show or key


def reset_assignment(key: str, shown: Dict[str, str]) -> str:
    """'Key=value' restoring what the unit has without our drop-in (value read after a reload)."""
    spec = TABLE[KEY_TO_OPTION[key]]
    value = live_value(spec, shown.get(spec.show or key))
    return f"{key}={value or ''}"


def verify(expected: Dict[str, str], shown: Dict[str, str]) -> List[str]:
    """Mismatches between the values we set and what ``systemctl show`` reports."""
    by_prop = {spec.show or spec.key: spec for spec in TABLE.values()}
    return [f"{prop}: expected {want}, systemd reports {shown.get(prop)!r}"
            for prop, want in expected.items() if live_value(by_prop[prop], shown.get(prop)) != want]


# ---------------------------------------------------------------- the resource contract: plan

@dataclass
class ResourcesItem:
    name: str
    path: str
    desired: Dict[str, Value] = field(default_factory=dict)


@dataclass
class ResourcesState:
    """What read() saw: per drop-in path (text, mode, mtime), per unit name its ``systemctl show`` values
    and start time (unix seconds or None)."""

    files: Dict[str, Tuple[Optional[str], Optional[int], Optional[float]]] = field(default_factory=dict)
    shown: Dict[str, Dict[str, str]] = field(default_factory=dict)
    started: Dict[str, Optional[float]] = field(default_factory=dict)


@dataclass
class ItemPlan:
    name: str
    file: FileResult
    live: LivePlan
    running: bool
    pending_restart: bool
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


@dataclass
class ResourcesPlan(Plan):
    items: List[ItemPlan] = field(default_factory=list)

    @property
    def reload(self) -> bool:
        return any(item.file.changed or item.stale for item in self.items)


def _pending(live: LivePlan, desired: dict, dropin_mtime: Optional[float], since: Optional[float]) -> bool:
    """Limits that only apply at start are waiting when changed now or written after the start."""
    if live.pending:
        return True
    restart_only = [k for k in desired if k not in KEY_TO_OPTION or not TABLE[KEY_TO_OPTION[k]].live]
    return bool(restart_only and dropin_mtime and since is not None and dropin_mtime > since)


def _item_plan(item: ResourcesItem, state: ResourcesState) -> ItemPlan:
    text, mode, mtime = state.files.get(item.path, (None, None, None))
    shown = state.shown.get(item.name, {})
    running = systemd.is_running(shown)
    live = plan_live(item.desired, parse_dropin(text), shown) if running else LivePlan()
    file = plan_file_mode(item.path, text, mode, render_dropin(item.desired))
    stale = not file.changed and load_stale(item.desired, item.path, shown)
    pending = running and _pending(live, item.desired, mtime, state.started.get(item.name))
    return ItemPlan(item.name, file, live, running, pending, stale)


def plan(items: List[ResourcesItem], state: ResourcesState) -> ResourcesPlan:
    """Pure: what every item's drop-in and running unit need; the live plan is made against the values
    from BEFORE the reload, so check mode and a real run decide ``changed`` identically."""
    result = ResourcesPlan()
    for item in items:
        one = _item_plan(item, state)
        result.items.append(one)
        result.changes.extend(one.changes)
        if one.file.changed:
            result.diffs.append(one.file.diff)
        if one.changed:
            result.actions.append(one)
    return result
