# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for zones, bridges and NAT in one call (corral.nspawn.networks, the network role)."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import nat_io, netlink, network_io, networkd, networks


DEFAULTS = {"zones": [], "bridges": [], "nat": None, "networkd": True}


@pytest.fixture
def make(fake_module, systemd_sim):
    """``make(params, check_mode=False, diff=False, unit=(UnitFileState, ActiveState))``: the shared fake module
    with the networks defaults, systemd-networkd in the systemctl simulator."""
    def build(params, check_mode=False, diff=False, unit=("enabled", "active")):
        systemd_sim.add(networks.NETWORKD, UnitFileState=unit[0], ActiveState=unit[1])
        return fake_module(dict(DEFAULTS, **params), check_mode=check_mode, diff=diff, systemd=systemd_sim)
    return build


@pytest.fixture
def applied(monkeypatch):
    """The three modules' flows replaced by recorders: (kind, the params they saw, check mode)."""
    seen = []

    def flow(kind, changed):
        def run(item, _state=None):
            seen.append((kind, item.params, item.check_mode))
            item.warn("careful")
            return {"changed": changed(item.params), "changes": ["did it"] if changed(item.params) else [],
                    "diff": [{"before": "a", "after": "b"}] if changed(item.params) else []}
        return run

    monkeypatch.setattr(netlink, "require", lambda module: None)
    monkeypatch.setattr(network_io, "read", networkd.NetworkState)   # the seam moved (issue 16): one read per call
    monkeypatch.setattr(network_io, "zone", flow("zone", lambda p: p["name"] == "new"))
    monkeypatch.setattr(network_io, "bridge", flow("bridge", lambda p: False))
    monkeypatch.setattr(nat_io, "run", flow("nat", lambda p: bool(p["forwards"])))
    return seen


def test_every_item_runs_with_its_own_modules_defaults_in_order(make, applied):
    module = make({"zones": [{"name": "apps", "address": ["10.88.0.1/24"]}, {"name": "new"}],
                  "bridges": [{"name": "br0"}], "nat": {"forwards": []}}, diff=True)
    result = networks.run_networks(module)
    assert [(k, p["name"] if k != "nat" else p["table"]) for k, p, _c in applied] == [
        ("zone", "apps"), ("zone", "new"), ("bridge", "br0"), ("nat", "corral")]
    zone = applied[0][1]
    assert zone["pool"] == "10.88.0.0/16" and zone["netdev"] is True and zone["state"] == "present"
    assert applied[2][1]["stp"] is False and applied[2][1]["ports"] == []
    assert applied[3][1]["localhost"] is True
    assert result["changed"] and result["changes"] == ["zones[new]: did it"]
    assert result["diff"] == [{"before": "a", "after": "b"}]
    assert module.warnings[:2] == ["zones[apps]: careful", "zones[new]: careful"]


def test_a_noop_is_one_show_and_changes_nothing(make, applied):
    module = make({"zones": [{"name": "apps"}], "bridges": [{"name": "br0"}], "nat": {}})
    result = networks.run_networks(module)
    assert not result["changed"] and result["changes"] == []
    assert [c[:2] for c in module.calls] == [["systemctl", "show"]]


@pytest.mark.parametrize("check", [True, False])
def test_networkd_is_enabled_and_started_only_outside_check_mode(make, applied, check):
    module = make({"zones": [{"name": "apps"}]}, check_mode=check, unit=("disabled", "inactive"))
    result = networks.run_networks(module)
    assert result["changed"] and result["changes"][0] == f"networkd: enable and start {networks.NETWORKD}"
    assert (["systemctl", "enable", "--now", networks.NETWORKD] in module.calls) is (not check)
    assert all(c for _k, _p, c in applied) is check


def test_without_zones_or_bridges_networkd_is_not_asked(make, applied):
    module = make({"nat": {"forwards": [{"host_port": 8080, "address": "10.88.0.10"}]}})
    assert networks.run_networks(module)["changes"] == ["nat: did it"]
    assert module.calls == []


@pytest.mark.parametrize("params, message", [
    ({"zones": [{"name": "apps", "colour": "red"}]}, "zones[apps]: unsupported option(s): colour. Supported parameters include: address"),
    ({"zones": [{"name": "apps", "ip_masquerade": "sometimes"}]}, "zones[apps]: value of ip_masquerade must be one of"),
    ({"zones": [{"address": ["10.0.0.1/24"]}]}, "zones[0]: missing required arguments: name"),
    ({"zones": ["apps"]}, "zones[0]: must be a dictionary of corral.nspawn.zone options, got 'apps'"),
    ({"zones": [{"name": "apps"}, {"name": "apps"}]}, "zones[apps]: declared twice"),
    ({"bridges": [{"name": "x" * 16}]}, "bridges[" + "x" * 16 + "]:"),
    ({"nat": {"forwards": [{"host_port": 80}]}}, "nat: missing required arguments: address found in forwards"),
])
def test_bad_input_fails_naming_the_item_before_any_change(make, applied, params, message):
    module = make(params)
    with pytest.raises(networks.ItemFailed) as info:
        networks.run_networks(module)
    assert message in str(info.value)
    assert applied == [] and module.calls == []


def test_a_failure_part_way_reports_what_changed_so_far(make, applied, monkeypatch):
    def broken(item, _state=None):
        item.fail_json(msg="link br0 did not come up", link={"name": "br0"})
    monkeypatch.setattr(network_io, "bridge", broken)
    module = make({"zones": [{"name": "new"}], "bridges": [{"name": "br0"}]})
    with pytest.raises(networks.ItemFailed) as info:
        networks.run_networks(module)
    assert str(info.value) == "bridges[br0]: link br0 did not come up"
    assert info.value.details == {"link": {"name": "br0"}, "changed": True, "changes": ["zones[new]: did it"]}
