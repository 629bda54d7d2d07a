# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for network_prune_io: the read -> plan -> apply flow with files in a temp dir and netlink/commands faked."""

import os

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import netlink, network_prune, network_prune_io, networkd
from ansible_collections.corral.nspawn.plugins.module_utils.fleet import FLEET_HEADER
from ansible_collections.corral.nspawn.tests.unit.fakes import Exit as Failed, FakeModule
from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.network_prune_fakes import BRIDGE, ZONE, host_net


def prune_module(params, check_mode=False):
    """The shared fake module in diff mode."""
    return FakeModule(params, check_mode=check_mode, diff=True)


@pytest.fixture
def host(tmp_path, monkeypatch):
    network_dir, settings_dir = tmp_path / "network", tmp_path / "nspawn"
    network_dir.mkdir()
    settings_dir.mkdir()
    monkeypatch.setattr(networkd, "NETWORK_DIR", str(network_dir))
    monkeypatch.setattr(network_prune, "SETTINGS_DIR", str(settings_dir))
    for path, text in {**networkd.build_bridge_files(BRIDGE), **networkd.build_zone_files(ZONE)}.items():
        (network_dir / os.path.basename(path)).write_text(text)
    (network_dir / "50-corral-br-hand.netdev").write_text("[NetDev]\nName=br-hand\nKind=bridge\n")
    fake = {"net": host_net(), "commands": [], "deleted": [], "dir": network_dir, "settings": settings_dir}
    monkeypatch.setattr(netlink, "read", lambda: fake["net"])
    monkeypatch.setattr(netlink, "delete_link", fake["deleted"].append)
    monkeypatch.setattr(network_prune_io, "run", lambda module, argv, **kw: fake["commands"].append(argv))
    monkeypatch.setattr(network_prune_io, "list_machines", lambda module: [{"machine": m} for m in fake.get("running", [])])
    return fake


def params(zones=("apps",), bridges=(), machines=(), prune=False, prune_all=False, fleet_prune_all=False):
    return {"zones": list(zones), "bridges": list(bridges), "prune_all": prune_all,
            "settings_dir": network_prune.SETTINGS_DIR,  # the host fixture's directory
            "fleet": {"machines": list(machines), "defaults": {}, "prune": prune, "prune_all": fleet_prune_all}}


def test_check_apply_check_apply(host):
    before = sorted(os.listdir(host["dir"]))
    check = network_prune_io.run_prune(prune_module(params(), check_mode=True))
    assert check["changed"] and sorted(os.listdir(host["dir"])) == before
    assert host["commands"] == [] and host["deleted"] == []
    assert "delete link br-old" in check["changes"]
    headers = [d["before_header"] for d in check["diff"]]
    assert "link br-old" in headers and any(h.endswith("50-corral-br-old.netdev") for h in headers)
    applied = network_prune_io.run_prune(prune_module(params()))
    assert applied["changes"] == check["changes"] and applied["pruned"] == check["pruned"]
    assert sorted(os.listdir(host["dir"])) == ["50-corral-br-hand.netdev", "50-corral-vz-apps.netdev",
                                               "50-corral-vz-apps.network"]
    assert host["deleted"] == ["br-old"] and host["commands"] == [["networkctl", "reload"]]
    del host["net"].links["br-old"]
    for check_mode in (True, False):
        again = network_prune_io.run_prune(prune_module(params(), check_mode=check_mode))
        assert not again["changed"] and again["changes"] == [] and "diff" not in again


def test_refusal_changes_nothing_and_names_the_machines(host):
    before = sorted(os.listdir(host["dir"]))
    with pytest.raises(Failed, match=r"prune: refusing to remove anything: bridge br-old is used by declared "
                                     r"machine\(s\) db"):
        network_prune_io.run_prune(prune_module(params(zones=(), prune_all=True,
                                                       machines=[{"name": "db", "bridge": "br-old"}])))
    assert sorted(os.listdir(host["dir"])) == before and host["commands"] == [] and host["deleted"] == []


def test_the_host_layer_attachment_decides_as_in_the_fleet(host):
    """fleet.defaults as the role passes them (zone apps combined with the host layer's bridge br-old) and
    fleet.host_defaults {bridge: br-old}: db is on br-old only, so apps may go and br-old may not."""
    fleet = {"machines": [{"name": "db"}], "defaults": {"zone": "apps", "bridge": "br-old"},
             "host_defaults": {"bridge": "br-old"}, "prune": False, "prune_all": False}
    before = sorted(os.listdir(host["dir"]))
    with pytest.raises(Failed, match=r"refusing to remove anything: bridge br-old is used by declared machine\(s\) db; "
                                     r"remove them in the same change or keep it declared; nothing was changed"):
        network_prune_io.run_prune(prune_module(dict(params(zones=("apps",)), fleet=fleet)))
    assert sorted(os.listdir(host["dir"])) == before and host["deleted"] == []
    applied = network_prune_io.run_prune(prune_module(dict(params(zones=(), bridges=("br-old",)), fleet=fleet)))
    assert applied["changed"] and [v["ifname"] for v in applied["pruned"]] == ["vz-apps"]


def test_ports_still_attached_at_apply_time_fail_before_any_change(host):
    (host["settings"] / "old.nspawn").write_text(FLEET_HEADER + "[Network]\nBridge=br-old\n")
    host["net"] = host_net(**{"br-old": ["vb-old"]})
    predicted = network_prune_io.run_prune(prune_module(params(prune=True, fleet_prune_all=True), check_mode=True))
    assert predicted["changed"]  # the fleet removes "old" first
    before = sorted(os.listdir(host["dir"]))
    with pytest.raises(Failed, match=r"container ports are still attached .*br-old: vb-old"):
        network_prune_io.run_prune(prune_module(params(prune=True, fleet_prune_all=True)))  # ... but it did not
    assert sorted(os.listdir(host["dir"])) == before and host["deleted"] == []


def test_an_empty_fleet_prunes_machines_only_with_its_prune_all(host):
    """The fleet refuses prune with no machines unless prune_all: then "old" stays and keeps br-old."""
    (host["settings"] / "old.nspawn").write_text(FLEET_HEADER + "[Network]\nBridge=br-old\n")
    with pytest.raises(Failed, match=r"bridge br-old is joined by machine\(s\) old"):
        network_prune_io.run_prune(prune_module(params(prune=True), check_mode=True))
    assert network_prune_io.run_prune(prune_module(params(prune=True, fleet_prune_all=True), check_mode=True))["changed"]


def test_settings_dir_is_where_staying_settings_are_read(host, tmp_path):
    """issue 13: the shared settings_dir option, not a fixed /etc/systemd/nspawn, says which .nspawn files stay."""
    other = tmp_path / "other-nspawn"
    other.mkdir()
    (other / "hand.nspawn").write_text("[Network]\nBridge=br-old\n")
    with pytest.raises(Failed, match=f"bridge br-old is joined by machine\\(s\\) hand in {other} "):
        network_prune_io.run_prune(prune_module(dict(params(), settings_dir=str(other)), check_mode=True))
    assert network_prune_io.run_prune(prune_module(params(), check_mode=True))["changed"]  # the fixture's dir is empty


def test_relative_settings_dir_is_refused_before_any_change(host):
    before = sorted(os.listdir(host["dir"]))
    with pytest.raises(Failed, match=r"^settings_dir: 'nspawn' is not allowed; give an absolute directory path"):
        network_prune_io.run_prune(prune_module(dict(params(), settings_dir="nspawn")))
    assert sorted(os.listdir(host["dir"])) == before and host["commands"] == [] and host["deleted"] == []
