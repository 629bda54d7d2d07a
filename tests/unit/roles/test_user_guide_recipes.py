# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every YAML recipe in docs/user-guide.md and the example inventory passes the real validators.

Role variables are checked against the roles' argument_specs; machines and templates go
through the fleet planner (settings, resources and image logic validate their options), so a
recipe with a misspelled option fails here instead of in a user's run.
"""

import glob
import importlib.util
import os
import re
import sys

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.corral.nspawn.plugins.module_utils import fleet, fleet_io, nspawn_settings
from ansible_collections.corral.nspawn.plugins.plugin_utils.machines import INVENTORY_KEYS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
GUIDE = os.path.join(ROOT, "docs", "user-guide.md")
ROLES = ("host", "network", "fleet")


def role_options():
    options = {}
    for role in ROLES:
        with open(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml"), encoding="utf-8") as handle:
            options.update(yaml.safe_load(handle)["argument_specs"]["main"]["options"])
    return options


def _argspec(options: dict) -> dict:
    """Role argument_specs -> module argument spec (drop the doc-only keys)."""
    spec = {}
    for name, opt in options.items():
        entry = {k: v for k, v in opt.items() if k in ("type", "elements", "required", "default", "choices")}
        if "options" in opt:
            entry["options"] = _argspec(opt["options"])
        spec[name] = entry
    return spec


def _recipes_module():
    """tests/e2e/recipes.py: the one reader of the guide's recipe markers (the e2e test uses it too)."""
    spec = importlib.util.spec_from_file_location("guide_recipes", os.path.join(ROOT, "tests", "e2e", "recipes.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["guide_recipes"] = module   # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


RECIPES = _recipes_module()
E2E_TEST = os.path.join(ROOT, "tests", "e2e", "test_recipes.py")


def guide_recipes():
    return RECIPES.load(GUIDE)


def example_vars():
    data = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "inventory", "*_vars", "**", "*.yml"), recursive=True)):
        with open(path, encoding="utf-8") as handle:
            data.update(yaml.safe_load(handle) or {})
    return data


def check(variables: dict, tmp_path):
    spec = _argspec(role_options())
    known = {k: v for k, v in variables.items() if k in spec}
    assert set(variables) == set(known), f"unknown variables: {set(variables) - set(spec)}"
    result = ArgumentSpecValidator({k: spec[k] for k in known}).validate(known)
    assert not result.error_messages, result.error_messages
    # groups and vars of a machine are read by the inventory plugin; the role drops them before the module
    machines = [{k: v for k, v in m.items() if k not in INVENTORY_KEYS}
                for m in variables.get("corral_fleet_machines", [])]
    templates = variables.get("corral_fleet_templates", [])
    defaults = fleet.deep_merge(variables.get("corral_fleet_defaults", {}), variables.get("corral_fleet_host_defaults", {}))
    for item in templates:
        fleet.validate_template(str(tmp_path), item)
    if not machines and not variables.get("corral_fleet_defaults"):
        return []
    machines = machines or [{"name": "probe"}]  # a defaults-only recipe is checked on one machine
    # No root is made up here: a recipe without a template or image.source (its own or one it builds
    # on) fails as it would on a fresh host ("state=running needs a root").
    desired = fleet.desired_machines(machines, defaults, templates)
    rendered = fleet_io.render_all(ctx_of(tmp_path), desired)
    return [w for d in rendered for w in d.warnings]


def ctx_of(tmp_path):
    return fleet_io.Context(None, str(tmp_path), str(tmp_path), str(tmp_path), False, "on_change")


def _host_has(needs):
    """The host of a recipe has what its marker says it needs (bind sources), this machine aside."""
    paths = [n for n in needs if n.startswith("/")]
    return lambda path: path in paths or os.path.exists(path)


@pytest.mark.parametrize("name", sorted(guide_recipes()))
def test_guide_recipe_is_valid_and_warns_about_nothing(name, tmp_path, monkeypatch):
    """Each recipe with what it builds on, as one inventory: valid, no warning (a reader copies it as is)."""
    recipes = guide_recipes()
    original = nspawn_settings.bind_source_errors
    needs = [n for r in RECIPES.chain(recipes, [name]) for n in recipes[r].needs]
    monkeypatch.setattr(nspawn_settings, "bind_source_errors",
                        lambda params, exists=None: original(params, _host_has(needs)))
    # the test's settings_dir stands for the fleet's default /etc/systemd/nspawn, a trusted directory
    monkeypatch.setattr(nspawn_settings, "TRUSTED_DIRS", (str(tmp_path),))
    warnings = check(RECIPES.compose(recipes, [name]), tmp_path)
    assert not warnings, f"recipe {name} warns: {warnings}"


def test_a_recipe_must_declare_the_host_paths_it_binds(tmp_path, monkeypatch):
    """Regression (issue 19, 7): recipes silently relied on host paths and a template default."""
    text = ("<!-- recipe: b | test: e2e -->\n```yaml\ncorral_fleet_machines:\n  - name: b\n    image: {source: directory, "
            "path: /srv/x}\n    settings: {bind: ['/srv/nowhere-rcp19:/src:idmap']}\n```\n")
    recipes = RECIPES.parse(text)
    with pytest.raises(fleet.FleetError, match="the source /srv/nowhere-rcp19 does not exist on the host"):
        check(RECIPES.compose(recipes, ["b"]), tmp_path)
    lonely = RECIPES.parse("<!-- recipe: c | test: e2e -->\n```yaml\ncorral_fleet_machines: [{name: c}]\n```\n")
    with pytest.raises(fleet.FleetError, match="state=running needs a root"):
        check(RECIPES.compose(lonely, ["c"]), tmp_path)


@pytest.mark.parametrize("text, message", [
    ("```yaml\na: 1\n```\n", "has no '<!-- recipe: ... -->' marker"),
    ("<!-- recipe: a | test: maybe -->\n```yaml\na: 1\n```\n", "must be 'e2e' or 'settings (why not end to end)'"),
    ("<!-- recipe: a | builds-on: zz | test: e2e -->\n```yaml\na: 1\n```\n", "builds-on ['zz'] is not a recipe"),
    ("<!-- recipe: a | colour: red | test: e2e -->\n```yaml\na: 1\n```\n", "bad marker field"),
])
def test_bad_markers_are_refused(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        RECIPES.parse(text)


def test_every_recipe_says_how_it_is_tested_and_e2e_ones_have_an_outcome_check():
    with open(GUIDE, encoding="utf-8") as handle:
        guide = handle.read()
    with open(E2E_TEST, encoding="utf-8") as handle:
        e2e = handle.read()
    for name, recipe in guide_recipes().items():
        after = guide.split(recipe.text, 1)[1][:1500]
        if name not in ("layering", "prune-networks", "inventory-groups"):   # examples outside the Recipes section
            assert "*Tested:*" in after.split("<!-- recipe:")[0], f"recipe {name}: no '*Tested:*' line after its block"
        if recipe.end_to_end:
            assert f"def outcome_{name.replace('-', '_')}(" in e2e, f"recipe {name}: no outcome check in {E2E_TEST}"


def test_example_inventory_is_valid(tmp_path):
    variables = example_vars()
    assert {"corral_fleet_machines", "corral_network_zones", "corral_network_port_forwards"} <= set(variables)
    check(variables, tmp_path)
