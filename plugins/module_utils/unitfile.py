# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""systemd unit-file (INI) syntax: parse, render, compare.

Shared by .nspawn files, networkd .netdev/.network files and service drop-ins.
A document is an ordered list of ``(section, [(key, value), ...])``; order and
repeated keys are kept because systemd gives both meaning (e.g. ``Bind=``).
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils.files import MANAGED_MARKER

Entry = Tuple[str, str]
Section = Tuple[str, List[Entry]]
Document = List[Section]

HEADER = f"# {MANAGED_MARKER}. Do not edit: changes are overwritten on the next run.\n"


class UnitFileError(ValueError):
    """The text is not valid systemd unit-file syntax."""


def _logical_lines(text: str) -> Iterable[Tuple[int, str]]:
    """Join backslash continuations; drop comments and blank lines."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if pending and line[:1] in ("#", ";"):
            continue  # comment lines inside a continuation are ignored by systemd
        if line.endswith("\\"):
            pending, start = pending + line[:-1] + " ", start or number
            continue
        yield (start or number), pending + line
        pending, start = "", 0
    if pending:
        yield start, pending.rstrip()


def parse(text: str) -> Document:
    """Parse unit-file text into a Document; raise UnitFileError on bad lines."""
    doc: Document = []
    for number, line in _logical_lines(text):
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise UnitFileError(f"line {number}: bad section header {line!r}")
            doc.append((line[1:-1], []))
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise UnitFileError(f"line {number}: expected Key=value, got {line!r}")
        if not doc:
            raise UnitFileError(f"line {number}: assignment {key.strip()!r} outside of a section")
        doc[-1][1].append((key.strip(), value.strip()))
    return doc


def render(doc: Document, header: Optional[str] = HEADER) -> str:
    """Render a Document; empty sections are omitted, sections separated by a blank line."""
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
        merged.setdefault(section, []).extend(entries)
    return [(section, entries) for section, entries in merged.items() if entries]


def equivalent(left: str, right: str) -> bool:
    """Semantic comparison: same sections, keys, values and order; comments ignored."""
    try:
        return normalize(parse(left)) == normalize(parse(right))
    except UnitFileError:
        return left == right


def get(doc: Document, section: str, key: str) -> List[str]:
    """All values of ``key`` in ``section`` (repeated keys in order)."""
    return [v for name, entries in doc if name == section for k, v in entries if k == key]
