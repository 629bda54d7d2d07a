# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Containers as inventory hosts: the declared fleet read as the fleet role reads it, discovery, naming."""

import json

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import fleet
from ansible_collections.corral.nspawn.plugins.plugin_utils import machines as mx

HOSTVARS = {
    "ansible_host": "192.0.2.11", "ansible_user": "admin", "ansible_port": 2222,
    "ansible_ssh_private_key_file": "/keys/id", "ansible_ssh_common_args": "-o ProxyJump=bastion",
    "corral_fleet_defaults": {"zone": "apps", "groups": ["fleet"], "vars": {"tier": "x", "deep": {"a": 1}}},
    "corral_fleet_host_defaults": {"vars": {"deep": {"b": 2}}},
    "corral_fleet_machines": [
        {"name": "web", "address": "10.88.0.10/24", "groups": ["web"], "vars": {"http_port": 80}},
        {"name": "db", "bridge": "br0", "state": "stopped"},
    ],
}


def test_declared_merges_defaults_host_defaults_and_machine_like_the_role():
    web, db = mx.declared("node1", HOSTVARS)
    assert web["groups"] == ["web"]  # lists replaced
    assert web["vars"] == {"tier": "x", "deep": {"a": 1, "b": 2}, "http_port": 80}  # dicts merged
    # the attachment is not merged key by key: db's own bridge replaces the inherited zone, as in the fleet
    assert db["groups"] == ["fleet"] and db["bridge"] == "br0" and "zone" not in db


@pytest.mark.parametrize("machine, host_defaults, expected", [
    ({"name": "m"}, {"bridge": "br0"}, {"nspawn_bridge": "br0"}),                    # host layer over the default zone
    ({"name": "m"}, {"network": "none"}, {}),                                        # no zone, no bridge
    ({"name": "m", "zone": "db"}, {"bridge": "br0"}, {"nspawn_zone": "db"}),          # its own zone over the host's bridge
    ({"name": "m"}, {"resources": {"cpu_quota": "50%"}}, {"nspawn_zone": "apps"}),    # no attachment there: inherits
])
def test_zone_and_bridge_vars_name_the_network_the_fleet_deploys_the_machine_on(machine, host_defaults, expected):
    """corral_fleet_defaults {zone: apps}; the most specific layer that sets an attachment key wins whole."""
    hostvars = {"corral_fleet_defaults": {"zone": "apps"}, "corral_fleet_host_defaults": host_defaults,
                "corral_fleet_machines": [machine]}
    entry, = mx.plan("node1", hostvars, ["declared"], None)
    assert {k: v for k, v in entry["vars"].items() if k in ("nspawn_zone", "nspawn_bridge")} == expected
    # the fleet role passes the defaults combined with the host layer, and the host layer again
    fleet_machine = fleet.merge_machine(fleet.deep_merge({"zone": "apps"}, host_defaults), machine, host_defaults)
    assert (fleet_machine.zone, fleet_machine.bridge) == (expected.get("nspawn_zone"), expected.get("nspawn_bridge"))


def test_declared_unset_key_inherits_the_default_as_in_the_fleet_module():
    """A key given as null (e.g. templated to none) inherits, as fleet.merge_machine merges it: the inventory
    must not see a machine the fleet does not deploy."""
    hostvars = {"corral_fleet_defaults": {"vars": {"tier": "x"}, "groups": ["fleet"]},
                "corral_fleet_machines": [{"name": "web", "vars": None, "groups": None}]}
    web, = mx.declared("node1", hostvars)
    assert web["vars"] == {"tier": "x"} and web["groups"] == ["fleet"]


def test_plan_declared_vars_and_groups():
    entries = {e["machine"]: e for e in mx.plan("node1", HOSTVARS, ["declared"], None)}
    web = entries["web"]
    assert web["groups"] == ["nspawn_containers", "node1_containers", "web"]
    assert web["vars"] == {
        "ansible_connection": "corral.nspawn.nspawn", "nspawn_machine": "web", "nspawn_container_host": "node1",
        "nspawn_source": "declared", "nspawn_groups": ["web"], "nspawn_host": "192.0.2.11",
        "nspawn_host_user": "admin", "nspawn_host_port": 2222, "nspawn_host_private_key_file": "/keys/id",
        "nspawn_ssh_common_args": "-o ProxyJump=bastion", "nspawn_zone": "apps", "nspawn_address": "10.88.0.10",
        "tier": "x", "deep": {"a": 1, "b": 2}, "http_port": 80}
    assert entries["db"]["vars"]["nspawn_state"] == "stopped" and "nspawn_running" not in entries["db"]["vars"]


def test_plan_discovered_adds_undeclared_and_marks_running():
    running = [{"name": "web", "os": "debian", "version": "12"}, {"name": "extra", "os": "arch", "version": None}]
    entries = {e["machine"]: e for e in mx.plan("node1", HOSTVARS, ["declared", "discovered"], running)}
    assert entries["web"]["vars"]["nspawn_running"] is True and entries["web"]["vars"]["nspawn_os"] == "debian 12"
    assert entries["db"]["vars"]["nspawn_running"] is False
    assert entries["extra"]["groups"] == ["nspawn_containers", "node1_containers", "nspawn_undeclared"]
    assert entries["extra"]["vars"]["nspawn_source"] == "discovered"
    only = mx.plan("node1", HOSTVARS, ["discovered"], running)
    assert sorted(e["machine"] for e in only) == ["extra", "web"]


def test_local_host_gives_local_mode():
    assert mx.connection_vars("here", {"ansible_connection": "local", "ansible_host": "x"}) == {}
    assert mx.connection_vars("node9", {}) == {"nspawn_host": "node9"}
    assert mx.connection_vars("n", {"ansible_ssh_host": "h", "ansible_ssh_user": "u"}) == {
        "nspawn_host": "h", "nspawn_host_user": "u"}


def test_machinectl_list_json_keeps_containers_only():
    text = json.dumps([{"machine": "web", "class": "container", "os": "debian", "version": "12", "addresses": None},
                       {"machine": "vm1", "class": "vm"}, {"machine": ".host", "class": "host"}])
    assert [m["name"] for m in mx.parse_machinectl_list(text)] == ["web"]
    with pytest.raises(mx.MachinesError, match="printed no JSON"):
        mx.parse_machinectl_list("No machines.")


@pytest.mark.parametrize("fmt,expected", [("{machine}.{host}", "web.node-1"), ("{host}_{machine}", "node-1_web"),
                                          ("{machine}", "web")])
def test_host_name(fmt, expected):
    assert mx.host_name(fmt, "web", "node-1") == expected


@pytest.mark.parametrize("fmt,fragment", [("{name}", "use fields"), ("{machine} x", "without spaces")])
def test_bad_name_format_is_refused(fmt, fragment):
    with pytest.raises(mx.MachinesError, match=fragment):
        mx.host_name(fmt, "web", "node1")


def test_group_names_are_made_safe():
    assert mx.safe_group("node-1.example_containers") == "node_1_example_containers"
    assert mx.safe_group("1st") == "_1st"


@pytest.mark.parametrize("hostvars,fragment", [
    ({"corral_fleet_machines": {"name": "web"}}, "corral_fleet_machines is dict; use a list"),
    ({"corral_fleet_machines": ["web"]}, r"corral_fleet_machines\[0\] is str; use a mapping"),
    ({"corral_fleet_machines": [{"address": "x"}]}, r"corral_fleet_machines\[0\].name is None"),
    ({"corral_fleet_machines": [{"name": "w", "groups": "web"}]}, r"\(w\).groups is 'web'; use a list"),
    ({"corral_fleet_machines": [{"name": "w", "vars": ["a"]}]}, r"\(w\).vars is \['a'\]; use a mapping"),
    ({"corral_fleet_defaults": ["zone"], "corral_fleet_machines": []}, "corral_fleet_defaults is list; use a mapping"),
])
def test_bad_fleet_data_is_refused_naming_host_and_key(hostvars, fragment):
    with pytest.raises(mx.MachinesError, match=fragment):
        mx.plan("node1", hostvars, ["declared"], None)
