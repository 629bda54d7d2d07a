# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the bridge/zone reconcile flow with netlink and commands faked (files in a temp dir)."""

import os

import pytest

from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.io_fake import Failed, FakeModule
from ansible_collections.corral.nspawn.plugins.module_utils import netlink, network_io, networkd
from ansible_collections.corral.nspawn.tests.unit.fakes import exit_result


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Network dir in tmp; a host with uplink0; commands recorded; netlink 'live' state settable."""
    monkeypatch.setattr(networkd, "NETWORK_DIR", str(tmp_path))
    state = {"net": netlink.HostNet(), "commands": []}
    state["net"].links["uplink0"] = netlink.Link("uplink0", 2, up=True, addresses=["203.0.113.1/24"])

    def fake_run(module, argv, **kw):
        state["commands"].append(list(argv))
        if argv[:2] == ["networkctl", "reload"]:  # networkd brings the bridge up with its addresses
            for path in os.listdir(tmp_path):
                text = open(os.path.join(tmp_path, path), encoding="utf-8").read()
                for entry in networkd.managed_networks({path: text}):
                    state["net"].links[entry["name"]] = netlink.Link(entry["name"], 9, kind="bridge", up=True,
                                                                     addresses=list(entry["addresses"]))
        return 0, "", ""

    monkeypatch.setattr(network_io, "run", fake_run)
    monkeypatch.setattr(netlink, "read", lambda: state["net"])
    monkeypatch.setattr(netlink, "wait_for", lambda check, timeout: (check(state["net"]), state["net"]))
    state["dir"] = tmp_path
    return state


class via_main:  # noqa: N801 - the seam moved (issue 16): network_io through errors.run_module, asserts unchanged
    @staticmethod
    def bridge(module):
        return exit_result(module, network_io.bridge)

    @staticmethod
    def zone(module):
        return exit_result(module, network_io.zone)


def bridge_params(**kw):
    params = {"name": "corralbr0", "state": "present", "stp": False, "mac_address": None, "ports": [],
              "force": False, "address": ["10.20.0.1/24"], "dhcp_server": True, "dhcp_pool_offset": None,
              "dhcp_pool_size": None, "dhcp_dns": None, "dhcp_static_leases": None, "ip_masquerade": "no",
              "timeout": 5}
    params.update(kw)
    return params


def test_check_then_apply_then_idempotent(env):
    check = via_main.bridge(FakeModule(bridge_params(), check_mode=True))
    assert check["changed"] and os.listdir(env["dir"]) == [] and env["commands"] == []
    applied = via_main.bridge(FakeModule(bridge_params()))
    assert applied["changed"] and env["commands"] == [["networkctl", "reload"]]
    assert applied["link"]["addresses"] == ["10.20.0.1/24"]
    again = via_main.bridge(FakeModule(bridge_params()))
    assert not again["changed"] and again["changes"] == [] and env["commands"] == [["networkctl", "reload"]]


def test_lost_address_is_repaired_with_reload_and_reconfigure(env):
    via_main.bridge(FakeModule(bridge_params()))
    env["net"].links["corralbr0"].addresses.clear()
    predicted = via_main.bridge(FakeModule(bridge_params(), check_mode=True))
    assert predicted["changed"] and "repair live state" in predicted["changes"][0]
    repaired = via_main.bridge(FakeModule(bridge_params()))
    assert repaired["changed"] and env["commands"][-2:] == [["networkctl", "reload"],
                                                            ["networkctl", "reconfigure", "corralbr0"]]


def test_verification_failure_shows_the_observed_state(env, monkeypatch):
    down = netlink.Link("corralbr0", 9, kind="bridge", up=False, operstate="down")
    monkeypatch.setattr(netlink, "wait_for", lambda check, timeout: (check(netlink.HostNet({"corralbr0": down})),
                                                                     netlink.HostNet({"corralbr0": down})))
    with pytest.raises(Failed, match=r"did not bring corralbr0 into the expected state.*link is not up.*"
                                     r"missing address\(es\) 10.20.0.1/24.*operstate=down"):
        via_main.bridge(FakeModule(bridge_params()))


def test_overlap_and_takeover_fail_before_any_change(env):
    with pytest.raises(Failed, match="overlaps address 203.0.113.1/24 on uplink0"):
        via_main.bridge(FakeModule(bridge_params(address=["203.0.113.7/24"])))
    env["net"].links["corralbr0"] = netlink.Link("corralbr0", 5, kind="bridge", up=True)
    with pytest.raises(Failed, match="not managed by corral.nspawn"):
        via_main.bridge(FakeModule(bridge_params()))
    assert os.listdir(env["dir"]) == [] and env["commands"] == []
    assert via_main.bridge(FakeModule(bridge_params(force=True)))["changed"]


def test_removed_port_file_is_deleted_and_absent_removes_everything(env):
    via_main.bridge(FakeModule(bridge_params(ports=["eth1", "eth2"])))
    result = via_main.bridge(FakeModule(bridge_params(ports=["eth2"])))
    assert result["files"] == [{"path": networkd.port_path("corralbr0", "eth1"), "action": "remove"}]
    gone = via_main.bridge(FakeModule(bridge_params(state="absent")))
    assert gone["changed"] and os.listdir(env["dir"]) == []
    assert "delete link corralbr0" in gone["changes"]


def test_zone_address_is_derived_once_and_kept(env):
    params = {"name": "web", "state": "present", "pool": "10.88.0.0/16", "netdev": True, "address": None,
              "dhcp_server": None, "dhcp_pool_offset": None, "dhcp_pool_size": None, "dhcp_dns": None,
              "dhcp_static_leases": None, "ip_masquerade": "no", "timeout": 5}
    first = via_main.zone(FakeModule(dict(params)))
    assert first["changed"] and first["address"][0].startswith("10.88.")
    again = via_main.zone(FakeModule(dict(params)))
    assert not again["changed"] and again["address"] == first["address"]
    # the subnet is taken now: another zone in a pool holding only that /24 finds nothing free
    with pytest.raises(Failed, match="pool: no free /24 left in"):
        via_main.zone(FakeModule(dict(params, name="db", pool=first["address"][0].rsplit(".", 1)[0] + ".0/24")))


class Recording(FakeModule):
    def fail_json(self, **kw):
        self.failure = kw
        super().fail_json(**kw)


@pytest.mark.parametrize("state", ["present", "absent"])
def test_a_failed_reload_after_the_files_were_written_reports_changed(env, monkeypatch, state):
    """Regression: the files were changed, then networkctl reload failed; the run said changed=false."""
    from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError
    if state == "absent":
        via_main.bridge(FakeModule(bridge_params()))

    def refuse(module, argv, **kw):
        env["commands"].append(list(argv))
        if argv[:2] == ["networkctl", "reload"]:
            raise CommandError(argv, 1, "", "Failed to reload network settings: Connection refused")
        return 0, "", ""
    monkeypatch.setattr(network_io, "run", refuse)
    module = Recording(bridge_params(state=state))
    with pytest.raises(Failed, match="networkctl reload"):
        via_main.bridge(module)
    assert module.failure["changed"] is True
    assert any(str(env["dir"]) in path for path in module.failure["files"]), module.failure


def zone_params(name, **kw):
    return dict({"name": name, "state": "present", "pool": "10.88.0.0/16", "netdev": True, "address": None,
                 "dhcp_server": None, "dhcp_pool_offset": None, "dhcp_pool_size": None, "dhcp_dns": None,
                 "dhcp_static_leases": None, "ip_masquerade": "no", "timeout": 5}, **kw)


@pytest.mark.parametrize("check_mode", [True, False])
def test_one_read_and_one_reload_for_every_link_of_a_call(env, monkeypatch, check_mode):
    """Issue 16: the networks module reads the networkd dir and netlink once and reloads networkd once."""
    reads = []
    real_read = netlink.read
    monkeypatch.setattr(netlink, "read", lambda: reads.append(1) or real_read())
    state = network_io.read()
    pool = "10.77.0.0/23"   # two /24s: the second zone must see the first one's pick, planned or written
    first = network_io.zone(FakeModule(zone_params("a", pool=pool), check_mode), state)
    second = network_io.zone(FakeModule(zone_params("b", pool=pool), check_mode), state)
    third = network_io.bridge(FakeModule(bridge_params(), check_mode), state)
    assert first["changed"] and second["changed"] and third["changed"] and first["address"] != second["address"]
    assert env["commands"] == [] and reads == [1]
    network_io.finish(FakeModule({}, check_mode), state)
    assert env["commands"] == ([] if check_mode else [["networkctl", "reload"]])
    assert (len(os.listdir(env["dir"])) == 6) is not check_mode
    if not check_mode:   # verified after the one reload (the fake networkd brings the links up then)
        assert third["link"]["addresses"] == ["10.20.0.1/24"] and second["link"]["up"]


def test_the_networks_module_reloads_networkd_once_for_all_its_zones_and_bridges(env, monkeypatch):
    """Issue 16: corral.nspawn.networks ran each zone and bridge on its own (a read and a reload each)."""
    from ansible_collections.corral.nspawn.plugins.module_utils import networks
    monkeypatch.setattr(netlink, "require", lambda module: None)
    module = FakeModule({"zones": [{"name": "a"}, {"name": "b"}], "bridges": [dict(name="corralbr0",
                                                                                   address=["10.20.0.1/24"])],
                         "nat": None, "networkd": False})
    module._diff = False
    result = networks.run_networks(module)
    assert result["changed"] and sorted(result["zones"]) == ["a", "b"]
    assert env["commands"] == [["networkctl", "reload"]]
    assert result["bridges"]["corralbr0"]["link"]["addresses"] == ["10.20.0.1/24"]


def test_a_later_item_refused_still_gets_the_earlier_items_files_reloaded(env, monkeypatch):
    from ansible_collections.corral.nspawn.plugins.module_utils import networks
    monkeypatch.setattr(netlink, "require", lambda module: None)
    pool = "10.66.0.0/24"   # one /24: the second zone finds nothing free
    module = FakeModule({"zones": [{"name": "a", "pool": pool, "netdev": False}, {"name": "b", "pool": pool}],
                         "bridges": [], "nat": None, "networkd": False})
    with pytest.raises(networks.ItemFailed, match=r"zones\[b\]: pool: no free /24 left in 10.66.0.0/24"):
        networks.run_networks(module)
    assert env["commands"] == [["networkctl", "reload"]] and len(os.listdir(env["dir"])) == 1
