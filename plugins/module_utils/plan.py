# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""The common result of every resource's ``plan(items, state)`` (read -> plan -> apply).

``plan`` is pure: it takes what ``read`` found and decides everything; ``apply`` does exactly what the
plan says and is never called in check mode, so check mode and a real run report the same changes.
A resource subclasses Plan (a dataclass) when its actions need more than a list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List


@dataclass
class Plan:
    """changes: human lines; diffs: Ansible before/after dicts; warnings; actions: what apply does."""

    changes: List[str] = field(default_factory=list)
    diffs: List[dict] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    actions: List[Any] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes or self.actions)

    def merge(self, other: "Plan") -> "Plan":
        """Add ``other``'s lines, diffs, warnings and actions to this plan (in order); returns self."""
        self.changes.extend(other.changes)
        self.diffs.extend(other.diffs)
        self.warnings.extend(other.warnings)
        self.actions.extend(other.actions)
        return self
