# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""systemd unit-file (INI) syntax: parse, render, compare.

Shared by .nspawn files, networkd .netdev/.network files and service drop-ins.
A document is an ordered list of ``(section, [(key, value), ...])``; order and
repeated keys are kept because systemd gives both meaning (e.g. ``Bind=``).
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError
from ansible_collections.corral.nspawn.plugins.module_utils.files import MANAGED_MARKER
from ansible_collections.corral.nspawn.plugins.module_utils.values import key_error, line_error, section_error

Entry = Tuple[str, str]
Section = Tuple[str, List[Entry]]
Document = List[Section]

HEADER = f"# {MANAGED_MARKER}. Do not edit: changes are overwritten on the next run.\n"


class UnitFileError(CorralError, ValueError):
    """The text is not valid systemd unit-file syntax."""


# systemd's read_line(): a line ends at \n, \r or \0, and a run of different markers
# (\r\n, \n\r, ...\0) is one end; a marker seen twice starts another (empty) line.
_EOL = re.compile("(?:\n\r?|\r\n?)\0?|\0")
# systemd's WHITESPACE: what strstrip() removes around lines, keys and values.
WHITESPACE = " \t\n\r"
_BOM = "\ufeff"


def physical_lines(text: str) -> List[str]:
    """Split ``text`` into lines exactly where systemd's read_line() does."""
    lines = _EOL.split(text)
    if lines and lines[-1] == "":
        lines.pop()  # text ending in a line end (or empty text) has no line after it
    return lines


def _continued(text: str) -> bool:
    """systemd's escape scan: a line continues when it ends in an odd number of backslashes."""
    return (len(text) - len(text.rstrip("\\"))) % 2 == 1


def _logical_lines(text: str) -> Iterable[Tuple[int, str]]:
    """systemd's config_parse(): drop comments, join continuations (the backslash becomes a space)."""
    pending: Optional[str] = None
    start, bom_seen = 0, False
    for number, raw in enumerate(physical_lines(text), 1):
        if raw.lstrip(WHITESPACE)[:1] in ("#", ";"):
            continue  # comment lines are skipped, also inside a continuation
        if not bom_seen and raw.startswith(_BOM):
            raw, bom_seen = raw[1:], True
        line = raw if pending is None else pending + raw
        if _continued(line):
            pending, start = line[:-1] + " ", start or number
            continue
        yield (start or number), line.strip(WHITESPACE)
        pending, start = None, 0
    if pending is not None:
        yield start, pending.strip(WHITESPACE)


def parse(text: str) -> Document:
    """Parse unit-file text into a Document; raise UnitFileError on bad lines."""
    doc: Document = []
    for number, line in _logical_lines(text):
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise UnitFileError(f"line {number}: bad section header {line!r}")
            doc.append((line[1:-1], []))
            continue
        key, sep, value = line.partition("=")
        key = key.strip(WHITESPACE)
        if not sep or not key:
            raise UnitFileError(f"line {number}: expected Key=value, got {line!r}")
        if not doc:
            raise UnitFileError(f"line {number}: assignment {key!r} outside of a section")
        doc[-1][1].append((key, value.strip(WHITESPACE)))
    return doc


def document_errors(doc: Document) -> List[str]:
    """Every section, key or value that would not stay on its own line (see values)."""
    errors = []
    for section, entries in doc:
        problem = section_error(section)
        if problem:
            errors.append(f"section {section!r} {problem}")
        for key, value in entries:
            problem = key_error(key) or line_error(value)
            if problem:
                errors.append(f"[{section}] {key!r}={value!r} {problem}")
    return errors


def render(doc: Document, header: Optional[str] = HEADER) -> str:
    """Render a Document; empty sections are omitted, sections separated by a blank line.

    Raises UnitFileError for a value that would break out of its line: options are
    validated before this, so this is the last guard, not the error users see.
    """
    errors = document_errors(doc)
    if errors:
        raise UnitFileError("refusing to render: " + "; ".join(errors))
    blocks = []
    for section, entries in doc:
        if not entries:
            continue
        lines = [f"[{section}]"] + [f"{key}={value}" for key, value in entries]
        blocks.append("\n".join(lines) + "\n")
    body = "\n".join(blocks)
    return (header or "") + ("\n" if header and body else "") + body


def normalize(doc: Document) -> List[Section]:
    """Merge repeated sections (systemd treats them as one) and drop empty ones."""
    merged: dict = {}
    for section, entries in doc:
        if entries:  # an empty section is not written, so it does not fix the order
            merged.setdefault(section, []).extend(entries)
    return list(merged.items())


def equivalent(left: str, right: str) -> bool:
    """Semantic comparison: same sections, keys, values and order; comments ignored."""
    try:
        return normalize(parse(left)) == normalize(parse(right))
    except UnitFileError:
        return left == right


def get(doc: Document, section: str, key: str) -> List[str]:
    """All values of ``key`` in ``section`` (repeated keys in order)."""
    return [v for name, entries in doc if name == section for k, v in entries if k == key]


def values(text: Optional[str], strict: bool = True, collapse: bool = False) -> Dict[str, Dict[str, object]]:
    """The one unit-file reader: text -> {Section: {Key: [values in order]}} (repeated sections merged).

    ``strict``: bad syntax raises UnitFileError; otherwise it reads as {} (a file we only report on).
    ``collapse``: a key set once maps to its value, a repeated key to the list.
    """
    try:
        doc = normalize(parse(text or ""))
    except UnitFileError:
        if strict:
            raise
        return {}
    out: Dict[str, Dict[str, object]] = {}
    for section, entries in doc:
        keys: Dict[str, List[str]] = {}
        for key, value in entries:
            keys.setdefault(key, []).append(value)
        out[section] = {k: v[0] if collapse and len(v) == 1 else v for k, v in keys.items()}
    return out
