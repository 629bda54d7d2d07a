# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every YAML recipe in docs/user-guide.md and the example inventory passes the real validators.

Role variables are checked against the roles' argument_specs; machines and templates go
through the fleet planner (settings, resources and image logic validate their options), so a
recipe with a misspelled option fails here instead of in a user's run.
"""

import glob
import os
import re

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.corral.nspawn.plugins.module_utils import fleet
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


def guide_recipes():
    with open(GUIDE, encoding="utf-8") as handle:
        blocks = re.findall(r"```yaml\n(.*?)```", handle.read(), re.S)
    return [yaml.safe_load(block) for block in blocks]


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
    if not machines and not variables.get("corral_fleet_defaults"):
        return
    machines = machines or [{"name": "probe"}]  # a defaults-only recipe is checked on one machine
    ctx = fleet.Context(None, str(tmp_path), str(tmp_path), str(tmp_path), False, "on_change")
    declared = templates + [{"name": m["template"], "source": "directory", "path": "/srv"}
                            for m in machines + [defaults] if m.get("template")
                            and m["template"] not in [t["name"] for t in templates]]
    desired = fleet.desired_machines(machines, defaults, declared)
    fleet.render_all(ctx, [m for m in desired if m.state != "running" or m.template or m.image.get("source")
                           or (tmp_path / m.name).mkdir() is None], declared)
    for item in templates:
        fleet.adapter_validate_template(ctx, item)


@pytest.mark.parametrize("recipe", guide_recipes(), ids=lambda r: ",".join(sorted(r or {}))[:60])
def test_guide_recipe_is_valid(recipe, tmp_path):
    check(recipe, tmp_path)


def test_example_inventory_is_valid(tmp_path):
    variables = example_vars()
    assert {"corral_fleet_machines", "corral_network_zones", "corral_network_port_forwards"} <= set(variables)
    check(variables, tmp_path)
