# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Roles: argument_specs document every variable, defaults mirror them 1:1, the guide is current."""

import os
import re
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLES = ("host", "network", "fleet")


def load(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.mark.parametrize("role", ROLES)
def test_defaults_mirror_argument_specs(role):
    options = load("roles", role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    defaults = load("roles", role, "defaults", "main.yml")
    assert set(defaults) == set(options), "defaults/main.yml and meta/argument_specs.yml list different variables"
    for name, spec in options.items():
        assert name.startswith(f"corral_{role}_"), f"{name}: role variables are prefixed corral_{role}_"
        assert spec.get("description"), f"{name}: undocumented"
        assert defaults[name] == spec.get("default"), f"{name}: default {defaults[name]!r} != spec {spec.get('default')!r}"


@pytest.mark.parametrize("role", ROLES)
def test_internal_facts_are_underscore_prefixed(role):
    tasks_dir = os.path.join(ROOT, "roles", role, "tasks")
    for name in os.listdir(tasks_dir):
        with open(os.path.join(tasks_dir, name), encoding="utf-8") as handle:
            text = handle.read()
        for var in re.findall(r"^\s+register:\s*(\S+)", text, re.M) + re.findall(r"set_fact:\n\s+(\w+):", text):
            if var in PUBLIC_FACTS:
                continue
            assert var.startswith("_corral_"), f"{role}/tasks/{name}: internal fact {var} must start with _corral_"


# Facts a role sets for later plays on purpose: documented in docs/user-guide.md, prefixed with the role.
PUBLIC_FACTS = {"corral_fleet_result"}


def test_public_facts_are_documented():
    with open(os.path.join(ROOT, "docs", "user-guide.md"), encoding="utf-8") as handle:
        guide = handle.read()
    for fact in PUBLIC_FACTS:
        assert f"`{fact}`" in guide, f"{fact} is set by a role for later plays but docs/user-guide.md does not say so"


def test_fleet_role_machine_keys_match_the_module():
    from ansible_collections.corral.nspawn.plugins.module_utils import fleet
    from ansible_collections.corral.nspawn.plugins.plugin_utils import machines
    options = load("roles", "fleet", "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    # groups and vars: read by the inventory plugin only, dropped by the role before the module call
    assert set(options["corral_fleet_machines"]["options"]) == set(fleet.MACHINE_KEYS) | set(machines.INVENTORY_KEYS)
    assert not set(fleet.MACHINE_KEYS) & set(machines.INVENTORY_KEYS)


def test_user_guide_variables_reference_is_current():
    res = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "gen_role_vars.py"), "--check"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_host_role_second_prepare_call_has_the_same_options():
    """install.yml's host_prepare call (after the package install) repeats main.yml's options exactly."""
    first = next(t for t in load("roles", "host", "tasks", "main.yml") if "corral.nspawn.host_prepare" in t)
    second = next(t for t in load("roles", "host", "tasks", "install.yml") if "corral.nspawn.host_prepare" in t)
    assert first["corral.nspawn.host_prepare"] == second["corral.nspawn.host_prepare"]
