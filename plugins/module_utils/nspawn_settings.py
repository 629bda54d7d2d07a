# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Settings (``.nspawn`` files) of containers: validate, render, plan. Pure: no I/O (nspawn_settings_io reads/applies).

The resource contract (the settings module calls it with one item, the fleet with N):

- ``nspawn_settings_io.read(module, items) -> SettingsState``: file text and mode per path, the host's systemd
  version, which bind sources and untrusted files exist. Nothing changes; works in check mode.
- ``plan(items, state) -> SettingsPlan``: raises ``SettingsError`` (every item's errors at once) before any change;
  a wrong mode is a change like a wrong text. ``plan.items[i]``: path, content, restart_required, changed, diff.
- ``nspawn_settings_io.apply(module, plan)``: writes, chmods or removes what the plan says; never in check mode.
- ``SettingsItem(name, path, params=None (removes the file), header=HEADER, label="", warning_label="",
  machines_dir=UNTRUSTED_DIR, marker=MANAGED_MARKER)``; ``plan.actions`` are the changed items (ItemPlan is a
  files.FileResult: action create/update/remove/chmod). The fleet's items carry its header and marker (a file without it is adopted).

Other API:

- ``OPTION_SPEC``: argument spec of every settings option (plus ``extra``).
- ``build_settings(params, systemd_version=None) -> (text, warnings)``, raises ``SettingsError``.
- ``build_document(params) -> (Document, warnings)``: the same before rendering.
- ``settings_path(name, directory)``, ``untrusted_path(name, directory)``.
- ``restart_required(before_text, after_text) -> bool``.
- ``trust_warnings(text, path)``, ``version_warnings(text, version)``, ``parse_version(text)``.
- ``to_options(text) -> dict``: a settings file read back as options (for info).
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

from ansible_collections.corral.nspawn.plugins.module_utils import shared, unitfile
from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError
from ansible_collections.corral.nspawn.plugins.module_utils.files import MANAGED_MARKER, FileResult, is_managed, plan_file_mode
from ansible_collections.corral.nspawn.plugins.module_utils.plan import Plan
from ansible_collections.corral.nspawn.plugins.module_utils.values import line_error
from ansible_collections.corral.nspawn.plugins.module_utils.schema import (
    BY_KEY, SECTIONS, TABLE, Key, argspec, check_ambient_capability, check_capability, check_word, split_colons)

TRUSTED_DIRS = ("/etc/systemd/nspawn", "/run/systemd/nspawn")
UNTRUSTED_DIR = "/var/lib/machines"
_TRUE = ("yes", "true", "on", "1")
_FALSE = ("no", "false", "off", "0")
_BOOL_WORDS = {**{word: "yes" for word in _TRUE}, **{word: "no" for word in _FALSE}}
_EXTRA_KEY = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_NEEDS_QUOTES = re.compile(r"[\s'\"]")
_UPPERCASE_CHECKS = (check_capability, check_ambient_capability)  # systemd reads capability names in any case

Value = Union[str, List[str]]


class SettingsError(CorralError, ValueError):
    """Invalid settings; the message names each bad option, its value and the allowed form."""


def _option_spec() -> dict:
    spec = {option: argspec(key) for option, key in TABLE.items()}
    spec["environment"] = {"type": "raw"}  # a dict NAME: value, or a list of NAME=VALUE
    spec["extra"] = {"type": "dict"}
    return spec


OPTION_SPEC = _option_spec()


# ---------------------------------------------------------------- values

def as_bool(value) -> Optional[bool]:
    """yes/true/on/1 -> True, no/false/off/0 -> False (any case), a bool as it is; else None."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _quote(item: str) -> str:
    """Quote a word the way systemd's strv parser unquotes it."""
    if not item or _NEEDS_QUOTES.search(item):
        return f"'{item}'" if '"' in item else f'"{item}"'
    return item


def _environment_items(value) -> List[str]:
    if isinstance(value, dict):
        items = []
        for name, val in value.items():
            if isinstance(val, bool) or val is None or isinstance(val, (dict, list)):
                raise ValueError(f"the value of {name!r} must be a string or number (quote yes/no/true/false)")
            items.append(f"{name}={val}")
        return items
    return _list_items(value)


def _list_items(value) -> List[str]:
    items = value if isinstance(value, list) else [value]
    if any(isinstance(item, (dict, list)) or item is None for item in items):
        raise ValueError("must be a list of strings")
    return [str(item) for item in items]


def _command_words(value: str) -> List[str]:
    """A command line given as one string, split into words as systemd splits Parameters= (quotes group).

    Kept as one word it would be one argv entry: execv("/usr/bin/python3 -m http.server 80") fails.
    """
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"cannot be split into words ({exc}); give a list of words, "
                         "e.g. [/usr/bin/python3, -m, http.server, '80']") from None
    if not words:
        raise ValueError("is empty; give the command and its arguments")
    return words


def _item_error(spec: Key, item: str) -> Optional[str]:
    # first: a value that breaks out of its line would add keys to the .nspawn (issue 9)
    error = line_error(item)
    if error:
        return error
    error = spec.check(item) if spec.check else None
    if not error and spec.quote:
        error = check_word(item)
    return error


def _scalar(spec: Key, value) -> str:
    """One scalar option value in the form systemd reads; ValueError carries the allowed form."""
    if spec.kind == "bool":
        parsed = as_bool(value)
        if parsed is None:
            raise ValueError("must be a boolean (true/false)")
        return "yes" if parsed else "no"
    if spec.kind == "int":
        if isinstance(value, bool) or not re.match(r"^-?\d+$", str(value).strip()):
            raise ValueError(f"must be an integer {spec.minimum}..{spec.maximum}")
        number = int(str(value).strip())
        if not spec.minimum <= number <= spec.maximum:
            raise ValueError(f"must be an integer {spec.minimum}..{spec.maximum}")
        return str(number)
    if spec.bools and isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        raise ValueError("must be a single value, not a list or mapping")
    text = str(value).strip()
    if spec.kind == "enum":
        text = _BOOL_WORDS.get(text.lower(), text) if spec.bools else text
        if text not in spec.choices:
            raise ValueError(f"must be one of {', '.join(spec.choices)}")
        return text
    error = _item_error(spec, text)
    if error:
        raise ValueError(error)
    return text


def _normalize_one(option: str, spec: Key, value) -> Value:
    if spec.kind not in ("list_repeated", "list_joined"):
        return _scalar(spec, value)
    if option == "environment":
        items = _environment_items(value)
    elif option == "parameters" and isinstance(value, str):
        items = _command_words(value)
    else:
        items = _list_items(value)
    if spec.check in _UPPERCASE_CHECKS:
        items = [item if item == "all" else item.upper() for item in items]
    bad = [f"item {item!r} {error}" for item, error in ((i, _item_error(spec, i)) for i in items) if error]
    if bad:
        raise ValueError("; ".join(bad))
    return items


def boots(params: dict) -> bool:
    """Whether the container runs an init as PID 1 (systemd-nspawn@.service passes --boot) or a command.

    ``boot: false`` or ``process_two: true`` run ``parameters`` (or a shell) instead: no systemd inside.
    """
    return as_bool(params.get("boot", True)) is not False and as_bool(params.get("process_two", False)) is not True


def did_you_mean(word: str, candidates, cutoff: float = 0.8) -> Optional[str]:
    """The closest candidate (case-insensitive), or None."""
    lowered = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[match[0]] if match else None


def normalize(params: dict) -> Tuple[Dict[str, Value], List[str]]:
    """Validate catalogue options (None = unset) into rendered values, and every error (each names its option)."""
    values, errors = {}, []
    for option, value in params.items():
        if option == "extra" or value is None:
            continue
        spec = TABLE.get(option)
        if spec is None:
            hint = did_you_mean(option, TABLE)
            errors.append(f"{option}: unknown option" + (f"; did you mean {hint}?" if hint else ""))
            continue
        try:
            rendered = _normalize_one(option, spec, value)
        except ValueError as exc:
            shown = "" if spec.kind.startswith("list") and str(exc).startswith("item ") else f"{value!r} "
            errors.append(f"{option}: {shown}{exc}")
            continue
        if rendered != []:
            values[option] = rendered
    errors.extend(conflicts(values))
    return values, errors


def conflicts(values: Dict[str, Value]) -> List[str]:
    """Combinations systemd-nspawn refuses at start, reported before anything is written."""
    errors = []
    if values.get("boot") == "yes" and values.get("process_two") == "yes":
        errors.append("boot and process_two: Boot=yes may not be combined with ProcessTwo=yes; choose one")
    if values.get("read_only") == "yes" and values.get("volatile", "no") != "no":
        errors.append("read_only and volatile: ReadOnly=yes cannot be combined with Volatile= "
                      "(volatile already implies a read-only base)")
    if "bridge" in values and "zone" in values:
        errors.append("bridge and zone: a container joins either a Bridge= or a Zone=, not both")
    if "private_users_ownership" in values and "private_users_chown" in values:
        errors.append("private_users_ownership and private_users_chown: set only private_users_ownership "
                      "(PrivateUsersChown= is its deprecated spelling)")
    implying = [o for o in ("virtual_ethernet", "virtual_ethernet_extra", "interface", "macvlan", "ipvlan",
                            "bridge", "zone") if o in values and values[o] != "no"]
    if values.get("private_network") == "no" and implying:
        errors.append(f"private_network: false contradicts {', '.join(implying)}, which implies Private=yes")
    if values.get("private_network") == "no" and "port" in values and not implying:
        errors.append("port: Port= needs private networking, but private_network is false")
    return errors


# ---------------------------------------------------------------- extra keys

def _extra_key_error(section: str, key: str) -> Optional[str]:
    label = f"extra.{section}.{key}"
    option = BY_KEY.get((section, key))
    if option:
        return f"{label}: {key}= is in the catalogue; use the option {option}"
    if not _EXTRA_KEY.fullmatch(key):
        return f"{label}: {key!r} is not a systemd key name (letters and digits, starting with a letter)"
    hint = did_you_mean(key, [k for (_s, k) in BY_KEY])
    if hint:
        (sect, real), = [sk for sk in BY_KEY if sk[1] == hint]
        return f"{label}: unknown key; did you mean {sect}.{real} (option {BY_KEY[(sect, real)]})?"
    return None


def _extra_values(label: str, value) -> List[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if item is None or isinstance(item, (dict, list)):
            raise SettingsError(f"{label}: {value!r} must be a string, number, boolean or a list of them")
        text = ("yes" if item else "no") if isinstance(item, bool) else str(item)
        error = line_error(text)
        if error:
            raise SettingsError(f"{label}: {text!r} {error}")
        out.append(text)
    return out


def extra_entries(extra: Optional[dict]) -> Tuple[Dict[str, List[Tuple[str, str]]], List[str], List[str]]:
    """Validate ``extra: {Section: {Key: value}}`` -> (entries, warnings, errors); near-miss keys: 'did you mean'."""
    entries: Dict[str, List[Tuple[str, str]]] = {}
    warnings, errors = [], []
    for section, keys in (extra or {}).items():
        if section not in SECTIONS:
            hint = did_you_mean(str(section), SECTIONS, cutoff=0.5)
            errors.append(f"extra.{section}: unknown section; allowed: {', '.join(SECTIONS)}"
                          + (f" (did you mean {hint}?)" if hint else ""))
            continue
        if not isinstance(keys, dict):
            errors.append(f"extra.{section}: must be a mapping of Key: value, got {keys!r}")
            continue
        for key, value in keys.items():
            error = _extra_key_error(section, str(key))
            if error:
                errors.append(error)
                continue
            try:
                entries.setdefault(section, []).extend((key, v) for v in _extra_values(f"extra.{section}.{key}", value))
            except SettingsError as exc:
                errors.append(str(exc))
                continue
            warnings.append(f"extra.{section}.{key}: not in the catalogue of corral.nspawn, written as given; "
                            "systemd-nspawn ignores keys it does not know (with a warning in its log)")
    return entries, warnings, errors


# ---------------------------------------------------------------- documents

def build_document(params: dict) -> Tuple[unitfile.Document, List[str]]:
    """Validated params -> Document (catalogue order, then extra keys) and warnings."""
    values, errors = normalize(params)
    extra, warnings, extra_errors = extra_entries(params.get("extra"))
    if errors or extra_errors:
        raise SettingsError("; ".join(errors + extra_errors))
    doc: unitfile.Document = [(section, []) for section in SECTIONS]
    for option, spec in TABLE.items():
        if option in values:
            doc[SECTIONS.index(spec.section)][1].extend(_entries(spec, values[option]))
    for section, items in extra.items():
        doc[SECTIONS.index(section)][1].extend(items)
    return doc, warnings + bind_warnings(values)


_IDMAP_OPTIONS = ("idmap", "rootidmap", "owneridmap")


def _bind_parts(item: str) -> Tuple[str, str, List[str]]:
    parts = split_colons(item)
    dest = parts[1] if len(parts) > 1 and parts[1] else parts[0]
    return parts[0], dest, parts[2].split(",") if len(parts) > 2 else []


def bind_warnings(values: Dict[str, Value]) -> List[str]:
    """A read-write bind into an unprivileged container without idmap: the container's root cannot write it."""
    # private users: the container's IDs are shifted; unset means on (systemd-nspawn@.service passes -U,
    # --private-users=pick where the kernel can)
    if values.get("private_users", "pick") in ("no", "false", "off", "identity"):
        return []
    return [f"bind: {item!r}: the container runs with private users (systemd-nspawn@.service passes -U unless "
            f"private_users is false), so its root is not root on the host and cannot write {_bind_parts(item)[0]}; "
            f"add ':idmap' ({_bind_parts(item)[0]}:{_bind_parts(item)[1]}:idmap) to map the host's owners, "
            "or set private_users: false"
            for item in values.get("bind") or []
            # device nodes: their mode and DeviceAllow= decide, not the owner
            if not set(_bind_parts(item)[2]) & set(_IDMAP_OPTIONS) and not _bind_parts(item)[0].startswith("/dev/")]


def bind_source_errors(params: dict, exists=None) -> List[str]:
    """Bind sources missing on the host: systemd-nspawn would refuse to start the container.

    Reported before any change (check mode too). ``+PATH`` sources are inside the container's root.
    """
    exists = exists or os.path.exists
    return [f"{option}: {item!r}: the source {source} does not exist on the host "
            "(systemd-nspawn would refuse to start the container); create it first"
            for option, item, source in _bind_sources(params) if not exists(source)]


def _bind_sources(params: dict) -> List[Tuple[str, object, str]]:
    """(option, item, host path) of every bind and bind_read_only item with a host source (``+PATH``: in the root)."""
    found = [(option, item, _bind_parts(str(item))[0]) for option in ("bind", "bind_read_only")
             for item in _as_list(params.get(option) or [])]
    return [(option, item, source) for option, item, source in found if source.startswith("/")]


def _entries(spec: Key, value: Value) -> List[Tuple[str, str]]:
    if spec.kind == "list_joined":
        return [(spec.key, " ".join(_quote(v) if spec.quote else v for v in value))]
    if spec.kind == "list_repeated":
        return [(spec.key, _quote(v) if spec.quote else v) for v in value]
    return [(spec.key, value)]


def build_settings(params: dict, systemd_version: Optional[int] = None,
                   header: Optional[str] = unitfile.HEADER) -> Tuple[str, List[str]]:
    """Validate ``params`` and render the .nspawn text; warnings list newer/extra keys."""
    doc, warnings = build_document(params)
    text = unitfile.render(doc, header=header)
    if systemd_version:
        warnings.extend(version_warnings(text, systemd_version))
    return text, warnings


def settings_path(name: str, directory: str = shared.SETTINGS_DIR) -> str:
    return os.path.join(directory, f"{name}.nspawn")


def untrusted_path(name: str, directory: str = UNTRUSTED_DIR) -> str:
    """Where systemd-nspawn looks for an untrusted settings file next to the image."""
    return os.path.join(directory, f"{name}.nspawn")


def _used(text: Optional[str]) -> List[Tuple[str, Key]]:
    doc = unitfile.parse(text or "")
    seen = []
    for section, entries in doc:
        for key, _value in entries:
            option = BY_KEY.get((section, key))
            if option and (option, TABLE[option]) not in seen:
                seen.append((option, TABLE[option]))
    return seen


def restart_required(before: Optional[str], after: Optional[str]) -> bool:
    """systemd-nspawn reads the file only at start: any semantic change needs a restart."""
    return not unitfile.equivalent(before or "", after or "")


def trust_warnings(text: Optional[str], path: str) -> List[str]:
    """Privileged keys are ignored by systemd-nspawn outside /etc and /run/systemd/nspawn."""
    if os.path.dirname(os.path.normpath(path)) in TRUSTED_DIRS:
        return []
    privileged = [f"{spec.section}.{spec.key}" for _o, spec in _used(text) if spec.privileged]
    if not privileged:
        return []
    return [f"{path} is not in a trusted settings directory ({', '.join(TRUSTED_DIRS)}): systemd-nspawn "
            f"ignores the privileged keys {', '.join(privileged)} there"]


def version_warnings(text: Optional[str], version: int) -> List[str]:
    return [f"{option} ({spec.section}.{spec.key}=) needs systemd {spec.since}; this host runs systemd {version}"
            for option, spec in _used(text) if spec.since > version]


def parse_version(text: str) -> Optional[int]:
    """'systemd 252 (252.38-1~deb12u1)' -> 252."""
    match = re.search(r"systemd (\d+)", text or "")
    return int(match.group(1)) if match else None


def to_options(text: Optional[str]) -> dict:
    """A settings file read back as options; keys outside the catalogue go to ``extra``."""
    options: dict = {}
    for section, entries in unitfile.normalize(unitfile.parse(text or "")):
        for key, value in entries:
            option = BY_KEY.get((section, key))
            if option is None:
                options.setdefault("extra", {}).setdefault(section, {}).setdefault(key, []).append(value)
                continue
            spec = TABLE[option]
            if spec.kind == "bool":
                options[option] = as_bool(value)
            elif spec.kind == "list_joined":
                options.setdefault(option, []).extend(shlex.split(value) if spec.quote else value.split())
            elif spec.kind == "list_repeated":
                options.setdefault(option, []).append(shlex.split(value)[0] if spec.quote and value else value)
            else:
                options[option] = value
    return options


# ---------------------------------------------------------------- the resource contract: plan

@dataclass
class SettingsItem:
    """One .nspawn file to reconcile; ``params`` None removes it. Labels prefix errors and warnings (fleet).

    ``marker``: what the first lines of a file its writer wrote carry (the fleet: its own, ``header`` with it);
    a file without it is taken over, with a warning (``takeover``).
    """

    name: str
    path: str
    params: Optional[dict] = None
    header: Optional[str] = unitfile.HEADER
    label: str = ""
    warning_label: str = ""
    machines_dir: str = UNTRUSTED_DIR
    marker: str = MANAGED_MARKER

    def probes(self) -> List[str]:
        """The paths whose existence the plan needs: the untrusted file and the bind sources."""
        return [untrusted_path(self.name, self.machines_dir)] + [s for _o, _i, s in _bind_sources(self.params or {})]


@dataclass
class SettingsState:
    """What read() saw: per path (text, mode or None), the systemd version, which probed paths exist."""

    files: Dict[str, Tuple[Optional[str], Optional[int]]] = field(default_factory=dict)
    version: Optional[int] = None
    exists: Dict[str, bool] = field(default_factory=dict)


@dataclass
class ItemPlan(FileResult):
    """One item's file decision (files.FileResult: path, changed, diff, action, content; apply writes it as it is)
    with the machine's name, whether a running container needs a restart for it, and its warnings."""

    name: str = ""
    restart_required: bool = False
    warnings: List[str] = field(default_factory=list)
    takeover: Optional[str] = None   # words for replacing a file another writer wrote (see takeover)


@dataclass
class SettingsPlan(Plan):
    items: List[ItemPlan] = field(default_factory=list)


def _as_list(value) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


def _prefixed(label: str, text: str) -> str:
    return f"{label}: {text}" if label else text


def takeover(item: SettingsItem, before: Optional[str]) -> Optional[str]:
    """Words for replacing a file that does not carry the item's marker (None: absent or its writer's own).

    The settings module owns any corral.nspawn file; the fleet adopts what it did not write (prune may remove it).
    """
    if before is None or is_managed(before, item.marker):
        return None
    if item.marker == MANAGED_MARKER:
        return f"{item.path} was not written by corral.nspawn; it is replaced (see the diff for what it held)"
    owner = "written by corral.nspawn.settings" if is_managed(before) else "hand-written (no corral.nspawn marker)"
    return (f"adopt {item.path}, {owner}: its content is replaced and the machine becomes fleet-managed "
            "(prune may remove it)")


def _item_plan(item: SettingsItem, state: SettingsState) -> ItemPlan:
    """One file: the text it must hold (SettingsError names every bad option and missing bind source), the
    file decision, and the warnings (newer keys, trust, takeover, a .nspawn file next to the image)."""
    after, warnings = None, []
    if item.params is not None:
        after, warnings = build_settings(item.params, systemd_version=state.version, header=item.header)
        missing = bind_source_errors(item.params, exists=lambda path: state.exists.get(path, False))
        if missing:
            raise SettingsError("; ".join(missing))
        warnings += trust_warnings(after, item.path)
    before, mode = state.files.get(item.path, (None, None))
    file = plan_file_mode(item.path, before, mode, after)
    plan = ItemPlan(**vars(file), name=item.name, restart_required=file.changed and restart_required(before, after))
    plan.takeover = takeover(item, before) if before != after else None
    warnings += [plan.takeover] if plan.takeover else []
    untrusted = untrusted_path(item.name, item.machines_dir)
    if state.exists.get(untrusted, False) and os.path.normpath(item.path) != untrusted:
        warnings.append(f"{untrusted} exists next to the image: systemd-nspawn reads it only when no file exists "
                        "in /etc/systemd/nspawn or /run/systemd/nspawn, ignores its privileged keys, and it came "
                        "with the image; remove it unless you trust it")
    plan.warnings = [_prefixed(item.warning_label, w) for w in warnings]
    return plan


def plan(items: List[SettingsItem], state: SettingsState) -> SettingsPlan:
    """Pure: what every item's file must become; SettingsError (all items' errors) before any change."""
    result, errors = SettingsPlan(), []
    for item in items:
        try:
            one = _item_plan(item, state)
        except SettingsError as exc:
            errors.append(_prefixed(item.label, str(exc)))
            continue
        result.items.append(one)
        result.warnings.extend(one.warnings)
        if one.changed:
            action = "remove" if one.content is None else "write"
            result.changes.append(f"settings: {action} {one.path}")
            result.diffs.append(one.diff)
            result.actions.append(one)
    if errors:
        raise SettingsError("; ".join(errors), **({"path": items[0].path} if len(items) == 1 else {}))
    return result
