# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""network_prune: the pure plan (what is a candidate, what blocks it, what happens to the link); the read -> plan
-> apply flow: test_network_prune_io.py."""

import os

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import fleet, nat, netlink, network_prune, networkd
from ansible_collections.corral.nspawn.plugins.module_utils.fleet import FLEET_HEADER
from ansible_collections.corral.nspawn.plugins.module_utils.network_prune import HostState, MachineSettings
from ansible_collections.corral.nspawn.plugins.module_utils.unitfile import HEADER
from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.network_prune_fakes import BRIDGE, ZONE, host_net


def managed_files(*, bridge=True, zone=True):
    files = {}
    if bridge:
        files.update(networkd.build_bridge_files(BRIDGE))
    if zone:
        files.update(networkd.build_zone_files(ZONE))
    return files


def unmanaged(text):
    return text.replace(HEADER, "")


def state(files=None, net=None, settings=None, running=()):
    return HostState(managed_files() if files is None else files, net or host_net(), settings or {}, list(running))


def victims(result):
    return {v.ifname: (v.link, [os.path.basename(p) for p in v.files]) for v in result.victims}


# ---------------------------------------------------------------- candidates

def test_undeclared_managed_bridge_is_pruned_with_all_its_files_and_link():
    result = network_prune.plan(["vz-apps"], {}, state(), fleet_prune=False)
    assert result.errors == [] and result.warnings == []
    assert victims(result) == {"br-old": ("delete", ["50-corral-br-old-port-eth1.network", "50-corral-br-old.netdev",
                                                     "50-corral-br-old.network"])}
    assert result.victims[0].as_dict()["kind"] == "bridge"


def test_declared_networks_are_kept_and_a_zone_is_named_as_a_zone():
    assert network_prune.plan(["vz-apps", "br-old"], {}, state(), False).victims == []
    zone = network_prune.plan(["br-old"], {}, state(), False).victims
    assert [(v.kind, v.name, v.ifname) for v in zone] == [("zone", "apps", "vz-apps")]


def test_links_and_files_corral_did_not_create_are_never_candidates():
    files = {path: unmanaged(text) for path, text in managed_files().items()}  # same names, no marker
    net = host_net()
    net.links["br-hand"] = netlink.Link("br-hand", 50, kind="bridge", up=True)  # ip link add, no files at all
    assert network_prune.plan([], {}, state(files, net), False).victims == []


def test_a_file_at_another_path_than_the_module_would_write_is_ignored():
    text = networkd.render_netdev("br-x")
    groups = network_prune.group_files({"/etc/systemd/network/50-corral-other.netdev": text})
    assert groups == {}


def test_managed_network_with_a_hand_made_netdev_keeps_the_link_and_the_netdev():
    files = managed_files(zone=False)
    netdev = networkd.netdev_path("br-old")
    files[netdev] = unmanaged(files[netdev])
    result = network_prune.plan(["br-declared"], {}, state(files), False)
    assert victims(result)["br-old"][0] == "keep"
    assert netdev not in result.victims[0].files
    assert any("was not written by corral.nspawn" in w for w in result.warnings)


def test_a_link_that_is_already_gone_only_loses_its_files():
    net = host_net()
    del net.links["br-old"]
    assert victims(network_prune.plan(["vz-apps"], {}, state(net=net), False))["br-old"][0] == "absent"


# ---------------------------------------------------------------- what blocks a prune

@pytest.mark.parametrize("machines, defaults", [
    ([{"name": "web", "zone": "apps"}], {}),
    ([{"name": "web"}], {"zone": "apps"}),                                   # through the fleet defaults
    ([{"name": "web", "settings": {"zone": "apps"}}], {}),                  # through the settings shorthand
])
def test_a_zone_a_declared_machine_uses_is_refused_naming_the_machine(machines, defaults):
    declared, errors = network_prune.declared_machines(machines, defaults)
    assert errors == []
    result = network_prune.plan(["br-old"], declared, state(), False)
    assert result.victims == []
    assert result.errors == ["zone apps (vz-apps) is used by declared machine(s) web; remove them in the same "
                             "change or keep it declared"]


@pytest.mark.parametrize("item, defaults, link", [
    ({"name": "web", "bridge": "br-new"}, {"zone": "apps"}, "br-new"),      # its own bridge over the default zone
    ({"name": "web", "zone": "db"}, {"bridge": "br0"}, "vz-db"),
    ({"name": "web", "network": "none"}, {"zone": "apps"}, None),
    ({"name": "web"}, {"bridge": "br0"}, "br0"),
])
def test_a_declared_machine_is_on_the_network_the_fleet_gives_it(item, defaults, link):
    """The fleet's attachment rule (netmodel.merge_attachment): the most specific layer that sets one wins whole."""
    assert network_prune.declared_machines([item], defaults) == ({"web": link}, [])


@pytest.mark.parametrize("item, defaults, host_defaults, link", [
    ({"name": "web"}, {"zone": "apps"}, {"bridge": "br0"}, "br0"),               # the host layer's bridge, whole
    ({"name": "web"}, {"zone": "apps"}, {"network": "none"}, None),              # network: none over a default zone
    ({"name": "web", "zone": "db"}, {"zone": "apps"}, {"bridge": "br0"}, "vz-db"),  # its own zone over the host's bridge
    ({"name": "web"}, {"zone": "apps"}, {"resources": {"cpu_quota": "50%"}}, "vz-apps"),  # no attachment: inherits
    ({"name": "web", "groups": ["g"], "vars": {"a": 1}}, {}, {"bridge": "br0"}, "br0"),  # inventory keys are ignored
])
def test_the_host_layer_replaces_the_fleet_wide_attachment_as_in_the_fleet(item, defaults, host_defaults, link):
    """The role passes defaults combined with host_defaults (both keys in one dict, as the fleet role does) and
    host_defaults again; the machine is on the network fleet.merge_machine gives it."""
    combined = fleet.deep_merge(defaults, host_defaults)
    machine = fleet.merge_machine(combined, {k: v for k, v in item.items() if k not in ("groups", "vars")},
                                  host_defaults)
    kind = fleet.machine_attachment(machine)
    assert link == (f"vz-{kind['name']}" if kind["kind"] == "zone" else kind["name"])  # the fleet agrees
    assert network_prune.declared_machines([item], combined, host_defaults) == ({"web": link}, [])


def test_a_zone_only_the_fleet_wide_layer_names_is_pruned_and_the_host_layers_bridge_is_kept():
    """zone apps in the defaults, bridge br-old in the host layer: web is on br-old only, so removing the
    undeclared zone goes ahead, and removing the bridge is refused naming web."""
    defaults, host_defaults = {"zone": "apps", "bridge": "br-old"}, {"bridge": "br-old"}  # as the role passes them
    declared, errors = network_prune.declared_machines([{"name": "web"}], defaults, host_defaults)
    assert errors == [] and declared == {"web": "br-old"}
    zone_gone = network_prune.plan(["br-old"], declared, state(), False)
    assert zone_gone.errors == [] and list(victims(zone_gone)) == ["vz-apps"]
    bridge_gone = network_prune.plan(["vz-apps"], declared, state(), False)
    assert bridge_gone.victims == []
    assert bridge_gone.errors == ["bridge br-old is used by declared machine(s) web; remove them in the same change "
                                  "or keep it declared"]


def test_a_machine_moving_to_another_network_does_not_block():
    declared, errors = network_prune.declared_machines([{"name": "web", "bridge": "br-new"}], {})
    assert declared == {"web": "br-new"} and errors == []
    net = host_net(**{"vz-apps": ["vb-web"]})  # still attached until the fleet restarts it
    result = network_prune.plan(["br-old", "br-new"], declared, state(net=net), False)
    assert result.errors == [] and victims(result)["vz-apps"][0] == "delete"
    assert result.victims[0].gone_first == ["vb-web"]


def test_settings_that_stay_on_the_host_block_and_fleet_prune_lifts_only_fleet_ones():
    settings = {"old": MachineSettings("br-old", fleet=True), "hand": MachineSettings("vz-apps", fleet=False)}
    kept = network_prune.plan([], {}, state(settings=settings), fleet_prune=False, prune_all=True)
    assert kept.victims == [] and len(kept.errors) == 2
    assert "bridge br-old is joined by machine(s) old in /etc/systemd/nspawn" in kept.errors[0]
    assert "zone apps (vz-apps) is joined by machine(s) hand" in kept.errors[1]
    pruned = network_prune.plan([], {}, state(settings=settings), fleet_prune=True, prune_all=True)
    assert [e.split(" is ")[0] for e in pruned.errors] == ["zone apps (vz-apps)"]
    assert list(victims(pruned)) == ["br-old"]


def test_running_container_ports_block_unless_the_fleet_removes_the_machine_first():
    net = host_net(**{"br-old": ["vb-old", "vb-stray"]})
    settings = {"old": MachineSettings("br-old", fleet=True)}
    blocked = network_prune.plan(["vz-apps"], {}, state(net=net, settings=settings, running=["old", "stray"]), True)
    assert blocked.errors == ["bridge br-old has running container(s) attached: stray (port vb-stray)"]
    net = host_net(**{"br-old": ["vb-old"]})
    leaving = network_prune.plan(["vz-apps"], {}, state(net=net, settings=settings, running=["old"]), True)
    assert leaving.errors == [] and leaving.victims[0].gone_first == ["vb-old"]


def test_an_unknown_container_port_is_named_by_its_port():
    net = host_net(**{"br-old": ["vb-mystery"]})
    result = network_prune.plan(["vz-apps"], {}, state(net=net), False)
    assert result.errors == ["bridge br-old has running container(s) attached: port vb-mystery"]


def test_foreign_port_keeps_the_link_our_port_does_not():
    ours = network_prune.plan(["vz-apps"], {}, state(net=host_net(**{"br-old": ["eth1"]})), False)
    assert victims(ours)["br-old"][0] == "delete" and ours.warnings == []
    foreign = network_prune.plan(["vz-apps"], {}, state(net=host_net(**{"br-old": ["dummy7"]})), False)
    assert victims(foreign)["br-old"][0] == "keep" and foreign.errors == []
    assert "ports corral.nspawn did not attach (dummy7)" in foreign.warnings[0]


def test_every_problem_is_reported_at_once():
    declared = {"web": "vz-apps", "db": "br-old"}
    result = network_prune.plan(["br-other"], declared, state(), False)
    assert len(result.errors) == 2 and result.victims == []


def test_nothing_declared_prunes_only_with_prune_all():
    """Regression (issue 17): like the fleet, an empty declaration is what a host that lost its variables
    looks like; it must not remove every network."""
    refused = network_prune.plan([], {"web": "vz-apps"}, state(), False)
    assert len(refused.errors) == 2 and "used by declared machine(s) web" in refused.errors[1]  # all at once
    assert refused.errors[0].startswith("zones and bridges are empty, so pruning would remove every zone and "
                                        "bridge corral.nspawn created on this host (br-old, vz-apps)")
    assert list(victims(network_prune.plan([], {}, state(), False, prune_all=True))) == ["br-old", "vz-apps"]
    assert network_prune.plan([], {}, state(files={}), False).errors == []  # nothing of ours: nothing to refuse


def test_machines_without_a_name_are_an_error_naming_the_index():
    _declared, errors = network_prune.declared_machines([{"zone": "apps"}], {})
    assert errors == ["fleet.machines[0].name: missing; every declared machine needs its name"]


@pytest.mark.parametrize("text, expected", [
    (FLEET_HEADER + "[Network]\nZone=apps\n", MachineSettings("vz-apps", True)),
    ("[Network]\nBridge=br0\n", MachineSettings("br0", False)),
    ("[Exec]\nBoot=yes\n", MachineSettings(None, False)),
    ("not a unit file", MachineSettings(None, False)),
])
def test_settings_network(text, expected):
    assert network_prune.settings_network(text) == expected


def test_port_owner_uses_the_names_systemd_nspawn_derives():
    assert network_prune.port_owner("vb-averyverylon", ["averyverylongname", "other"]) == "averyverylongname"
    assert network_prune.port_owner("vb-x", ["y"]) is None


def test_still_attached_lists_only_ports_that_were_to_leave():
    host = state(net=host_net(**{"br-old": ["vb-old"]}), settings={"old": MachineSettings("br-old", True)})
    result = network_prune.plan(["vz-apps"], {}, host, True)
    assert network_prune.still_attached(result.victims, host_net(**{"br-old": ["vb-old"]})) == ["br-old: vb-old"]
    assert network_prune.still_attached(result.victims, host_net()) == []


# ---------------------------------------------------------------- nat derives rules from the declared networks

def test_nat_networks_limits_masquerade_and_links_to_the_declared_ones():
    managed = networkd.managed_networks(managed_files())
    params = {"table": "corral", "masquerade": None, "uplinks": [], "links": [], "forwards": [], "localhost": True}
    everything = nat.plan(dict(params), managed)
    assert sorted(str(n) for n in everything.masquerade) == ["10.77.1.0/24", "10.77.2.0/24"]
    declared = nat.plan(dict(params, networks=["vz-apps"]), managed)
    assert [str(n) for n in declared.masquerade] == ["10.77.1.0/24"] and "br-old" not in declared.links
    errors = nat.plan(dict(params, networks=["bad name"]), managed).errors
    assert len(errors) == 1 and errors[0].startswith("networks: 'bad name' contains characters not allowed")
