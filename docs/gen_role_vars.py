# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the roles' meta/argument_specs.yml as the variables reference of docs/user-guide.md.

    python docs/gen_role_vars.py          # rewrite the section between the markers
    python docs/gen_role_vars.py --check  # exit 1 when the guide is out of date
"""

from __future__ import annotations

import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDE = os.path.join(ROOT, "docs", "user-guide.md")
ROLES = ("host", "network", "fleet")
BEGIN = "<!-- BEGIN generated variables reference (python docs/gen_role_vars.py) -->"
END = "<!-- END generated variables reference -->"
_MARKUP = re.compile(r"\b([OVCIM]|RV)\(([^()]*(?:\([^()]*\))?[^()]*)\)")


def plain(text: str) -> str:
    """Ansible doc markup -> Markdown code spans."""
    # O(corral.nspawn.fleet#role:main:corral_fleet_prune) names another role's option: show the option.
    return _MARKUP.sub(lambda m: f"`{m.group(2).rpartition(':')[2] if '#' in m.group(2) else m.group(2)}`", text)


def describe(lines) -> str:
    return " ".join(plain(line) for line in (lines if isinstance(lines, list) else [lines]))


def type_of(spec: dict) -> str:
    kind = spec.get("type", "str")
    return f"list of {spec['elements']}" if kind == "list" and spec.get("elements") else kind


def default_of(spec: dict) -> str:
    if spec.get("required"):
        return "required"
    if "default" not in spec:
        return ""
    return f"`{yaml.safe_dump(spec['default'], default_flow_style=True).strip().removesuffix('...').strip()}`"


def option_rows(options: dict, prefix: str = "") -> list:
    rows = []
    for name, spec in options.items():
        choices = f" Choices: {', '.join(f'`{c}`' for c in spec['choices'])}." if spec.get("choices") else ""
        rows.append(f"| `{prefix}{name}` | {type_of(spec)} | {default_of(spec)} | {describe(spec.get('description', ''))}{choices} |")
        if spec.get("options"):
            rows.extend(option_rows(spec["options"], f"{prefix}{name}[]."))
    return rows


def render() -> str:
    parts = [BEGIN, ""]
    for role in ROLES:
        with open(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml"), encoding="utf-8") as handle:
            spec = yaml.safe_load(handle)["argument_specs"]["main"]
        parts += [f"### Role `corral.nspawn.{role}`", "", plain(spec["short_description"]) + ".", ""]
        parts += [describe(spec.get("description", [])), "", "| variable | type | default | description |",
                  "|---|---|---|---|"]
        parts += option_rows(spec["options"]) + [""]
    return "\n".join(parts + [END])


def main(argv) -> int:
    with open(GUIDE, encoding="utf-8") as handle:
        text = handle.read()
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    updated = text[:start] + render() + text[stop:]
    if "--check" in argv:
        if updated != text:
            print("docs/user-guide.md: variables reference is out of date; run python docs/gen_role_vars.py")
            return 1
        return 0
    with open(GUIDE, "w", encoding="utf-8") as handle:
        handle.write(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
