# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Generate docs/reliability.md's table of refused values from the bad-input unit tests.

The cases are the tests' own ``@pytest.mark.parametrize`` tables, read from the test functions, and
each case is passed to the same validating function the test calls; the table shows the message the
code gives today, not one typed by hand. ``tests/unit/test_bad_input_table.py`` fails when the doc
section differs from this output.

Regenerate: ``make bad-input-table`` (or ``.venv/bin/python tests/unit/gen_bad_input_table.py --write``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any, Callable, Iterator, List, NamedTuple, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "reliability.md")
START = "<!-- bad-input:start -->"
END = "<!-- bad-input:end -->"
UNIT = os.path.join("tests", "unit", "plugins", "module_utils")
SECRET_KEYS = ("password",)


def _importable() -> None:
    """Make the checkout importable as ansible_collections.corral.nspawn, as tests/conftest.py does."""
    collections = os.path.join(ROOT, ".collections")
    link = os.path.join(collections, "ansible_collections", "corral", "nspawn")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)
    if collections not in sys.path:
        sys.path.insert(0, collections)


def load_test_module(name: str) -> Any:
    """Import a unit test file by path (the test tree has no packages)."""
    _importable()
    path = os.path.join(ROOT, UNIT, name)
    mod_name = "corral_bad_input_" + name[:-3]
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return module


class Source(NamedTuple):
    """One parametrized bad-input test: where its table is and how its validator is called."""
    test_file: str
    test_name: str
    inputs: Tuple[str, ...]                 # argnames that are the input (the rest are expected fragments)
    call: Callable[[Any, dict], List[str]]  # (test module, case) -> the error messages


def _raised(func: Callable[[], Any], error: type) -> List[str]:
    try:
        func()
    except error as exc:  # the refusal we document
        return [str(exc)]
    return ["(accepted: no error)"]


SOURCES: Sequence[Source] = (
    Source("test_nspawn_settings.py", "test_bad_input_names_option_value_and_form", ("params",),
           lambda m, c: _raised(lambda: m.ns.build_settings(c["params"]), m.ns.SettingsError)),
    Source("test_nspawn_settings.py", "test_extra_errors", ("extra",),
           lambda m, c: _raised(lambda: m.ns.build_settings({"extra": c["extra"]}), m.ns.SettingsError)),
    Source("test_line_injection.py", "test_nspawn_values_that_break_out_are_refused", ("params",),
           lambda m, c: _raised(lambda: m.ns.build_settings(c["params"]), m.ns.SettingsError)),
    Source("test_line_injection.py", "test_nspawn_extra_values_and_keys_that_break_out_are_refused", ("extra",),
           lambda m, c: _raised(lambda: m.ns.build_settings({"extra": c["extra"]}), m.ns.SettingsError)),
    Source("test_resources.py", "test_bad_input_names_option_value_and_allowed_form", ("options",),
           lambda m, c: _raised(lambda: m.resources.normalize(c["options"]), m.resources.ResourceError)),
    Source("test_resources.py", "test_values_systemd_refuses_or_ignores_are_refused_with_the_range",
           ("option", "value"),
           lambda m, c: _raised(lambda: m.resources.normalize({c["option"]: c["value"]}), m.resources.ResourceError)),
    Source("test_line_injection.py", "test_resource_values_that_break_out_are_refused", ("options",),
           lambda m, c: _raised(lambda: m.resources.normalize(c["options"]), m.resources.ResourceError)),
    Source("test_fleet.py", "test_invalid_fleets_fail_with_option_value_and_allowed_form",
           ("items", "defaults", "templates"),
           lambda m, c: _raised(lambda: m.fleet.desired_machines(c["items"], c["defaults"], c["templates"]),
                                m.fleet.FleetError)),
    Source("test_fleet.py", "test_fleet_wide_conflicts_are_refused_before_any_change", ("items", "templates"),
           lambda m, c: _raised(lambda: m.fleet.desired_machines(c["items"], {}, c["templates"]), m.fleet.FleetError)),
    Source("test_images.py", "test_validation_names_option_and_value", ("kw",),
           lambda m, c: m.images.validate(m.params("/var/lib/machines", **c["kw"])) or ["(accepted: no error)"]),
    Source("test_line_injection.py", "test_image_values_that_break_out_are_refused", ("params",),
           lambda m, c: m.images.validate(m.images.normalize(dict(m.IMAGE, **c["params"]))) or ["(accepted)"]),
    Source("test_networkd.py", "test_bridge_bad_input", ("params",),
           lambda m, c: m.networkd.bridge_errors(c["params"]) or ["(accepted: no error)"]),
    Source("test_line_injection.py", "test_bridge_values_that_break_out_are_refused", ("params",),
           lambda m, c: m.networkd.bridge_errors(dict({"name": "br0"}, **c["params"])) or ["(accepted)"]),
    Source("test_networkd.py", "test_zone_bad_input", ("params",),
           lambda m, c: m.networkd.zone_errors(c["params"]) or ["(accepted: no error)"]),
    Source("test_nat.py", "test_bad_input_is_an_error_naming_the_option", ("kw",),
           lambda m, c: m.nat.plan(m.params(**c["kw"]), m.MANAGED).errors or ["(accepted: no error)"]),
    Source("test_nat_order.py", "test_values_nft_refuses_are_validation_errors", ("kw",),
           lambda m, c: m.nat.plan(m.plan_params(**c["kw"]), m.MANAGED).errors or ["(accepted: no error)"]),
    Source("test_line_injection.py", "test_nat_values_that_break_out_are_refused", ("params",),
           lambda m, c: m.nat.plan(dict({"table": "corral", "masquerade": ["10.0.0.0/24"]}, **c["params"]),
                                   []).errors or ["(accepted)"]),
)


def cases(module: Any, test_name: str) -> Iterator[dict]:
    """The test's parametrize table, each row as {argname: value}."""
    func = getattr(module, test_name)
    for mark in getattr(func, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names = [n.strip() for n in mark.args[0].split(",")] if isinstance(mark.args[0], str) else list(mark.args[0])
        for row in mark.args[1]:
            row = getattr(row, "values", row)  # pytest.param(...)
            yield dict(zip(names, row if len(names) > 1 else (row,)))


def _mask(value: Any) -> Any:
    """Secrets in the test tables are shown as a placeholder, as the code's messages do."""
    if isinstance(value, dict):
        return {k: "(secret)" if any(s in str(k) for s in SECRET_KEYS) else _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def _printable(text: str) -> str:
    """Control characters and line breaks as escapes, so each cell stays on one line."""
    out = []
    for char in text:
        if char == "\n":
            out.append("\\n")
        elif not char.isprintable() and char != " ":
            out.append(char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    return "".join(out)


def _cell(text: str) -> str:
    return "`" + _printable(text).replace("`", "'").replace("|", "\\|") + "`"


def _input(case: dict, inputs: Tuple[str, ...]) -> str:
    if len(inputs) == 1:
        return repr(_mask(case[inputs[0]]))
    return ", ".join(f"{name}={_mask(case[name])!r}" for name in inputs)


def render() -> str:
    """The markdown between the markers (markers excluded)."""
    lines = ["", "Generated by `make bad-input-table` from the parametrized unit tests named in each heading;",
             "`tests/unit/test_bad_input_table.py` fails when this section is out of date.", ""]
    for source in SOURCES:
        module = load_test_module(source.test_file)
        lines += [f"### `{source.test_file}::{source.test_name}`", "", "| input | error |", "|---|---|"]
        for case in cases(module, source.test_name):
            messages = source.call(module, case)
            lines.append(f"| {_cell(_input(case, source.inputs))} | {'<br>'.join(_cell(m) for m in messages)} |")
        lines.append("")
    return "\n".join(lines)


def splice(doc: str, section: str) -> str:
    """The doc with the text between the markers replaced."""
    head, sep, rest = doc.partition(START)
    if not sep or END not in rest:
        raise SystemExit(f"{DOC}: markers {START} / {END} not found")
    return head + START + "\n" + section + "\n" + END + rest.split(END, 1)[1]


def main(argv: List[str]) -> int:
    with open(DOC, encoding="utf-8") as handle:
        doc = handle.read()
    new = splice(doc, render())
    if "--write" in argv:
        with open(DOC, "w", encoding="utf-8") as handle:
            handle.write(new)
        return 0
    if new != doc:
        print(f"{DOC}: the bad-input table is out of date; run: make bad-input-table")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
