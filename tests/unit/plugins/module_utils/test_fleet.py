# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for fleet.py: merging, validation, the machine spec, fleet-wide cross-checks (fleet_plan and fleet_io:
test_fleet_plan.py, test_fleet_io.py)."""

import os
import re

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import fleet, fleet_io
from ansible_collections.corral.nspawn.plugins.module_utils.files import ensure_file
from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.fleet_fakes import FakeModule


# ---------------------------------------------------------------- merging and validation

def test_deep_merge_recurses_into_dicts_replaces_lists_and_inherits_none():
    base = {"resources": {"memory_max": "512M", "cpu_quota": "50%"}, "settings": {"bind": ["/a"]}, "zone": "z"}
    over = {"resources": {"memory_max": "1G"}, "settings": {"bind": ["/b"]}, "zone": None}
    merged = fleet.deep_merge(base, over)
    assert merged == {"resources": {"memory_max": "1G", "cpu_quota": "50%"}, "settings": {"bind": ["/b"]},
                      "zone": "z"}
    assert base["resources"]["memory_max"] == "512M"  # inputs are not mutated


def test_machine_overrides_defaults_which_override_builtin_defaults():
    machine = fleet.merge_machine({"state": "stopped", "resources": {"tasks_max": 10}},
                                  {"name": "web", "resources": {"memory_max": "1G"}, "enabled": False})
    assert (machine.state, machine.enabled) == ("stopped", False)
    assert machine.resources == {"tasks_max": 10, "memory_max": "1G"}
    assert fleet.merge_machine({}, {"name": "x"}).state == "running"


@pytest.mark.parametrize("items, defaults, templates, message", [
    ([{"name": "a"}, {"name": "a"}], {}, [], "'a' is declared twice"),
    ([{"name": "bad name"}], {}, [], "machines[].name: 'bad name' is not a valid machine name"),
    ([{"name": "a", "template": "nope"}], {}, [{"name": "t"}], "machines[a].template: 'nope' is not in templates (declared: t)"),
    ([{"name": "a", "template": "t", "image": {"source": "tar"}}], {}, [{"name": "t"}], "either template or image.source"),
    ([{"name": "a", "zone": "z", "bridge": "br0"}], {}, [], "zone and bridge are given in the same layer"),
    ([{"name": "a", "zone": "much-too-long-zone"}], {}, [], "machines[a].zone:"),
    ([{"name": "a", "bridge": "x" * 16}], {}, [], "machines[a].bridge:"),
    ([{"name": "a", "gateway": "10.0.0.1"}], {}, [], "gateway: needs address"),
    ([{"name": "a", "state": "sleeping"}], {}, [], "state: 'sleeping' is not one of running, stopped, present"),
    ([{"name": "a", "restart": "sometimes"}], {}, [], "restart: 'sometimes' is not one of"),
    ([{"name": "a", "settings": ["x"]}], {}, [], "settings: must be a dictionary"),
    ([{"name": "a", "colour": "red"}], {}, [], "unknown key(s) colour"),
    ([{"name": "a"}], {"name": "b"}, [], "'name' cannot have a default"),
    ([{"name": "a"}], {"memory": "1G"}, [], "defaults: unknown key(s) memory"),
    ([{"name": "t"}], {}, [{"name": "t"}], "'t' is also a template name"),
    ([{"name": "a"}], {}, [{"name": "bad/tmpl"}], "templates[0].name"),
])
def test_invalid_fleets_fail_with_option_value_and_allowed_form(items, defaults, templates, message):
    with pytest.raises(fleet.FleetError) as info:
        fleet.desired_machines(items, defaults, templates)
    assert message in str(info.value)


def test_all_problems_are_reported_at_once():
    with pytest.raises(fleet.FleetError) as info:
        fleet.desired_machines([{"name": "a", "state": "x"}, {"name": "b", "zone": "z", "bridge": "b"}], {}, [])
    assert len(info.value.details["errors"]) == 2


def test_machine_spec_matches_machine_keys():
    assert set(fleet.machine_spec()) == set(fleet.MACHINE_KEYS)
    assert all("default" not in spec for spec in fleet.machine_spec().values())  # unset keys must inherit


def test_secrets_are_machine_options_not_image_keys():
    with pytest.raises(fleet.FleetError, match=r"machines\[a\].image.root_password: give it as machines\[\].root_password"):
        fleet.desired_machines([{"name": "a", "image": {"root_password": "x"}}], {}, [])
    assert fleet.machine_spec()["root_password"]["no_log"] and fleet.defaults_spec()["root_password_hash"]["no_log"]
    machine = fleet.merge_machine({"root_password_hash": "$6$h"}, {"name": "a", "template": "t"})
    options = fleet.image_options_for(machine)
    assert options["root_password_hash"] == "$6$h" and options["clone_from"] == "t"


def test_templates_refuse_secrets(tmp_path):
    ctx = fleet_io.Context(None, str(tmp_path), str(tmp_path), str(tmp_path), False, "on_change")
    with pytest.raises(fleet.FleetError, match="templates are never booted"):
        fleet.validate_template(ctx, {"name": "t", "source": "directory", "path": "/x", "root_password": "y"})


# ---------------------------------------------------------------- fleet-wide cross-checks before any change

@pytest.mark.parametrize("items, templates, message", [
    ([], [{"name": "t"}, {"name": "t"}], "templates[].name: 't' is declared twice"),
    ([], [{"name": "a", "source": "clone", "clone_from": "b"}, {"name": "b", "source": "clone", "clone_from": "a"}],
     "clone_from: cycle"),
    ([], [{"name": "a", "source": "clone", "clone_from": "a"}], "cycle a -> a"),
    ([{"name": "w1", "settings": {"port": ["tcp:8080:80"]}}, {"name": "w2", "settings": {"port": "8080:81"}}], [],
     "machines[w1, w2].settings.port: host port tcp/8080 is forwarded by 2 machines"),
])
def test_fleet_wide_conflicts_are_refused_before_any_change(items, templates, message):
    """Regression: duplicate templates, template cycles and shared host ports were accepted and failed mid-run."""
    with pytest.raises(fleet.FleetError) as info:
        fleet.desired_machines(items, {}, templates)
    assert message in str(info.value)


def test_same_port_number_on_other_protocols_is_fine():
    machines = fleet.desired_machines([{"name": "a", "settings": {"port": ["tcp:53"]}},
                                       {"name": "b", "settings": {"port": ["udp:53"]}}], {},
                                      [{"name": "t", "source": "clone", "clone_from": "base"}])
    assert [m.name for m in machines] == ["a", "b"]


def test_a_mode_repair_keeps_the_mtime(tmp_path):
    """Regression (drift e2e): rewriting the file for a chmod made the fleet think the settings changed."""
    path = tmp_path / "web.nspawn"
    path.write_text("[Exec]\nBoot=yes\n")
    os.chmod(path, 0o600)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    result = ensure_file(FakeModule(None, {}), str(path), "[Exec]\nBoot=yes\n", 0o644)
    assert result.changed and (path.stat().st_mode & 0o777) == 0o644 and path.stat().st_mtime_ns == 1_000_000_000


@pytest.mark.parametrize("machine, message", [
    ({"name": "a", "timeout": 0}, "machines[a].timeout: 0 must be a whole number of seconds, at least 1"),
    ({"name": "a", "wait": "soon"}, "machines[a].wait: 'soon' is not a boolean"),
])
def test_bad_wait_and_timeout_are_refused(machine, message):
    with pytest.raises(fleet.FleetError, match=re.escape(message)):
        fleet.desired_machines([machine], {}, [])
