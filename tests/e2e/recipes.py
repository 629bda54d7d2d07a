# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The recipes of docs/user-guide.md, read from their markers (not a test module).

Every ```yaml block of the guide follows a marker line::

    <!-- recipe: NAME | builds-on: A, B | needs: /path, interface eth1 | test: e2e -->

``builds-on`` names the recipes whose variables the recipe needs too, ``needs`` what the host
must have (paths, ``interface NAME``), ``test`` is ``e2e`` or ``settings (why not end to end)``.
Used by tests/unit/roles/test_user_guide_recipes.py (settings level) and
tests/e2e/test_recipes.py (end to end), so both read the blocks exactly as the guide has them.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUIDE = os.path.join(ROOT, "docs", "user-guide.md")
_MARKED = re.compile(r"<!-- recipe: (?P<marker>[^\n]*?) -->\n```yaml\n(?P<body>.*?)```", re.S)
_FIELDS = ("builds-on", "needs", "test")


@dataclass
class Recipe:
    name: str
    text: str                       # the block exactly as in the guide
    builds_on: List[str] = field(default_factory=list)
    needs: List[str] = field(default_factory=list)
    test: str = ""

    @property
    def data(self) -> dict:
        return yaml.safe_load(self.text) or {}

    @property
    def end_to_end(self) -> bool:
        return self.test == "e2e"


def _words(value: str) -> List[str]:
    return [w.strip() for w in value.split(",") if w.strip()]


def parse(text: str) -> Dict[str, Recipe]:
    """name -> Recipe for every marked block; ValueError for an unmarked block or a bad marker."""
    if text.count("```yaml") != len(_MARKED.findall(text)):
        raise ValueError("a ```yaml block of the user guide has no '<!-- recipe: ... -->' marker line right above it")
    recipes: Dict[str, Recipe] = {}
    for match in _MARKED.finditer(text):
        name, *rest = [part.strip() for part in match.group("marker").split("|")]
        fields = {}
        for part in rest:
            key, sep, value = part.partition(":")
            if not sep or key.strip() not in _FIELDS:
                raise ValueError(f"recipe {name}: bad marker field {part!r} (allowed: {', '.join(_FIELDS)})")
            fields[key.strip()] = value.strip()
        test = fields.get("test", "")
        if test != "e2e" and not re.fullmatch(r"settings \(.+\)", test):
            raise ValueError(f"recipe {name}: test: {test!r} must be 'e2e' or 'settings (why not end to end)'")
        if name in recipes:
            raise ValueError(f"recipe {name}: named twice")
        recipes[name] = Recipe(name, match.group("body"), _words(fields.get("builds-on", "")),
                               _words(fields.get("needs", "")), test)
    for recipe in recipes.values():
        unknown = [b for b in recipe.builds_on if b not in recipes]
        if unknown:
            raise ValueError(f"recipe {recipe.name}: builds-on {unknown} is not a recipe")
    return recipes


def load(path: str = GUIDE) -> Dict[str, Recipe]:
    with open(path, encoding="utf-8") as handle:
        return parse(handle.read())


def chain(recipes: Dict[str, Recipe], names: List[str]) -> List[str]:
    """``names`` with everything they build on, dependencies first, each once."""
    out: List[str] = []

    def visit(name: str, seen: tuple) -> None:
        if name in seen:
            raise ValueError(f"recipes build on each other in a cycle: {' -> '.join(seen + (name,))}")
        for dep in recipes[name].builds_on:
            visit(dep, seen + (name,))
        if name not in out:
            out.append(name)
    for name in names:
        visit(name, ())
    return out


def merge(base: dict, over: dict, where: str) -> dict:
    """Variables of several recipes in one inventory: lists concatenate, dicts merge, scalars must agree."""
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if key not in merged:
            merged[key] = copy.deepcopy(value)
        elif isinstance(value, list) and isinstance(merged[key], list):
            merged[key] = merged[key] + copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(merged[key], dict):
            merged[key] = merge(merged[key], value, f"{where}.{key}")
        elif merged[key] != value:
            raise ValueError(f"{where}.{key}: recipes disagree ({merged[key]!r} and {value!r})")
    return merged


def compose(recipes: Dict[str, Recipe], names: List[str]) -> dict:
    """The group variables of ``names`` and what they build on, merged.

    A machine declared again by a later recipe (``unpriv-undo`` changes ``unpriv``) replaces the
    earlier entry: that is what editing the inventory does.
    """
    variables: dict = {}
    for name in chain(recipes, names):
        data = copy.deepcopy(recipes[name].data)
        later = {m.get("name") for m in data.get("corral_fleet_machines", [])}
        if later and "corral_fleet_machines" in variables:
            variables["corral_fleet_machines"] = [m for m in variables["corral_fleet_machines"]
                                                  if m.get("name") not in later]
        variables = merge(variables, data, name)
    names_seen = [m.get("name") for m in variables.get("corral_fleet_machines", [])]
    twice = sorted({n for n in names_seen if names_seen.count(n) > 1})
    if twice:
        raise ValueError(f"recipes {names}: machine(s) {twice} declared twice")
    return variables
