# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The network model: attachment merge rule, container links, the fleet-wide address planner (issue 11)."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import fleet, fleet_io, fleet_plan, images_setup, netmodel
from ansible_collections.corral.nspawn.plugins.module_utils.images import validate, normalize

ZONE = {"name": "web", "address": ["10.77.1.1/24", "fd00:77:1::1/64"], "dhcp_pool_offset": 100}
BRIDGE = {"name": "br-lab", "address": ["10.78.0.1/24"], "dhcp_server": True, "dhcp_pool_offset": 50,
          "dhcp_pool_size": 20}


# ---------------------------------------------------------------- the merge rule

@pytest.mark.parametrize("defaults, host_defaults, item, expected", [
    # nothing anywhere: the unit's own --network-veth
    ({}, {}, {}, {"kind": "veth", "name": None}),
    ({"zone": "web"}, {}, {}, {"kind": "zone", "name": "web"}),
    # issue 11 item 1: a machine replaces the inherited zone with a bridge (was "zone and bridge are exclusive")
    ({"zone": "web"}, {}, {"bridge": "br-lab"}, {"kind": "bridge", "name": "br-lab"}),
    ({"zone": "web"}, {}, {"network": "host"}, {"kind": "host", "name": None}),
    ({"zone": "web"}, {}, {"network": "none"}, {"kind": "none", "name": None}),
    ({"zone": "web"}, {}, {"network": "veth"}, {"kind": "veth", "name": None}),
    ({"zone": "web"}, {}, {"zone": "db"}, {"kind": "zone", "name": "db"}),
    # null inherits (the layer sets nothing)
    ({"zone": "web"}, {}, {"zone": None}, {"kind": "zone", "name": "web"}),
    # the host layer replaces the fleet's as a whole, the machine replaces both
    ({"zone": "web"}, {"bridge": "br0"}, {}, {"kind": "bridge", "name": "br0"}),
    ({"zone": "web"}, {"bridge": "br0"}, {"zone": "db"}, {"kind": "zone", "name": "db"}),
    ({"bridge": "br0"}, {"network": "host"}, {}, {"kind": "host", "name": None}),
    # other keys still merge key by key: an address does not drop the inherited zone
    ({"zone": "web"}, {}, {"address": "10.77.1.10/24"}, {"kind": "zone", "name": "web"}),
])
def test_most_specific_layer_wins_as_a_whole(defaults, host_defaults, item, expected):
    machine = fleet.merge_machine(defaults, dict(item, name="m"), host_defaults)
    assert fleet.machine_attachment(machine) == expected
    assert fleet._check_machine(machine, set()) == []


def test_role_combined_defaults_keep_the_rule():
    """The role passes defaults combined with host_defaults, and host_defaults again: the host layer wins whole."""
    combined = {"zone": "web", "bridge": "br0"}
    machine = fleet.merge_machine(combined, {"name": "m"}, {"bridge": "br0"})
    assert fleet.machine_attachment(machine) == {"kind": "bridge", "name": "br0"}


@pytest.mark.parametrize("item, message", [
    ({"zone": "a", "bridge": "b"}, "zone and bridge are given in the same layer"),
    ({"zone": "a", "network": "host"}, "zone and network are given in the same layer"),
    ({"network": "lan"}, "network: 'lan' is not one of veth, host, none"),
])
def test_attachment_errors(item, message):
    machine = fleet.merge_machine({}, dict(item, name="m"))
    assert any(message in e for e in fleet._check_machine(machine, set()))


@pytest.mark.parametrize("network, settings, expected", [
    ("host", {}, "Private=no"),
    ("none", {}, "VirtualEthernet=no"),
])
def test_network_modes_render_settings(network, settings, expected, tmp_path):
    ctx = fleet_io.Context(None, str(tmp_path), str(tmp_path), str(tmp_path), False, "on_change")
    machine = fleet.merge_machine({}, {"name": "m", "network": network, "settings": settings})
    text = fleet_io.plan_settings(ctx, [fleet_io.settings_item(ctx, machine)]).items[0].content
    assert expected in text


def test_network_mode_contradicting_settings_is_refused(tmp_path):
    ctx = fleet_io.Context(None, str(tmp_path), str(tmp_path), str(tmp_path), False, "on_change")
    machine = fleet.merge_machine({}, {"name": "m", "network": "host", "settings": {"private_network": True}})
    with pytest.raises(fleet.FleetError, match="network='host' means private_network=false"):
        fleet_io.settings_item(ctx, machine)


# ---------------------------------------------------------------- links inside the container

@pytest.mark.parametrize("kind, settings, links", [
    ("zone", {}, ["host0"]),
    ("veth", {}, ["host0"]),
    ("host", {}, []),
    ("none", {"macvlan": ["eth0"]}, ["mv-eth0"]),
    ("zone", {"macvlan": "eth0 eth1", "ipvlan": ["eth2"]}, ["host0", "mv-eth0", "mv-eth1", "iv-eth2"]),
    ("none", {"interface": ["eth1", "eth2:lan"]}, ["eth1", "lan"]),
    ("bridge", {"virtual_ethernet_extra": ["vex0:inner"]}, ["host0", "inner"]),
    ("none", {"macvlan": ["enp0s31f6long"]}, ["mv-enp0s31f6lo*"]),   # nspawn shortens names over 15 characters
])
def test_container_links(kind, settings, links):
    assert netmodel.container_links(kind, settings) == links


def test_links_are_computed_for_prepared_roots_only():
    cloned = fleet.merge_machine({}, {"name": "m", "template": "t", "zone": "web", "settings": {"macvlan": ["eth0"]}})
    assert fleet.image_options_for(cloned)["network_links"] == ["host0", "mv-eth0"]
    opted_out = fleet.merge_machine({}, {"name": "m", "template": "t", "image": {"network_links": []}})
    assert fleet.image_options_for(opted_out)["network_links"] == []
    adopted = fleet.merge_machine({}, {"name": "m", "zone": "web"})
    assert fleet.image_options_for(adopted) is None
    command = fleet.merge_machine({}, {"name": "m", "template": "t", "settings": {"boot": False}})
    assert "network_links" not in fleet.image_options_for(command)


# ---------------------------------------------------------------- in-container files (issue 11 item 2, issue 19 item 5)

def test_dhcp_machine_gets_a_host0_file_and_networkd():
    """Regression: a DHCP machine got no network file and networkd stayed disabled (Debian, Arch)."""
    params = {"network_links": ["host0", "mv-eth0"]}
    files = {rel: text for rel, text, _label in images_setup.network_files(params)}
    assert "DHCP=yes" in files["etc/systemd/network/10-corral-host0.network"]
    assert "Name=mv-eth0" in files["etc/systemd/network/10-corral-mv-eth0.network"]
    assert images_setup.wants_networkd(params)
    assert not images_setup.wants_networkd(dict(params, enable_networkd=False))


def test_static_host0_with_ipv6_and_dhcp_for_the_others():
    params = {"address": "10.77.1.10/24", "address6": "fd00:77:1::10/64", "network_links": ["host0", "eth1"]}
    files = {rel: text for rel, text, _label in images_setup.network_files(params)}
    host0 = files["etc/systemd/network/10-corral-host0.network"]
    for line in ("Address=10.77.1.10/24", "Gateway=10.77.1.1", "Address=fd00:77:1::10/64", "Gateway=fd00:77:1::1",
                 "LinkLocalAddressing=ipv6"):
        assert line in host0
    assert "DHCP" not in host0 and "DHCP=yes" in files["etc/systemd/network/10-corral-eth1.network"]


def test_ipv4_only_static_file_is_unchanged():
    """Roots prepared before IPv6 support keep their file byte for byte (no restart on upgrade)."""
    text = images_setup.host0_network("10.0.0.5/24")
    assert "Address=10.0.0.5/24\nGateway=10.0.0.1\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n" in text


@pytest.mark.parametrize("params, message", [
    ({"address6": "10.0.0.5/24"}, "address6: '10.0.0.5/24' must be an IPv6 address"),
    ({"address6": "fd00::5"}, "address6: 'fd00::5' must be an IPv6 address"),
    ({"gateway6": "fd00::1"}, "gateway6: only used together with address6"),
    ({"network_links": ["host0", "bad name"]}, "network_links[1]: 'bad name'"),
])
def test_image_network_options_are_validated(params, message):
    errors = validate(normalize(dict(params, name="m", source="directory", path="/srv/x")))
    assert any(message in e for e in errors), errors


# ---------------------------------------------------------------- the address planner

def _plan(machines, zones=(ZONE,), bridges=(BRIDGE,), forwards=(), on_host=None):
    nets = netmodel.known_networks(list(zones), list(bridges), on_host or {})
    wanted = []
    for m in machines:
        machine = fleet.merge_machine({}, dict(m))
        att = fleet.machine_attachment(machine)
        wanted.append(netmodel.Wanted(machine.name, att["kind"], att["name"],
                                      [(k, getattr(machine, k)) for k in ("address", "address6") if getattr(machine, k)]))
    return netmodel.plan_addresses(wanted, nets, list(forwards), [z["name"] for z in zones])


@pytest.mark.parametrize("machines, error", [
    # issue 11 item 3, each case was accepted and started
    ([{"name": "a", "zone": "web", "address": "10.77.1.10/24"}, {"name": "b", "zone": "web", "address": "10.77.1.10/24"}],
     "machines[a.address, b.address]: 10.77.1.10 is given to 2 machines"),
    ([{"name": "a", "zone": "web", "address": "10.77.1.1/24"}], "is the host's own address on zone web"),
    ([{"name": "a", "zone": "web", "address": "10.77.1.0/24"}], "is the network address of 10.77.1.0/24"),
    ([{"name": "a", "zone": "web", "address": "10.77.1.255/24"}], "is the broadcast address of 10.77.1.0/24"),
    ([{"name": "a", "zone": "web", "address": "10.99.0.10/24"}], "10.99.0.10/24 is outside the subnet of zone web"),
    ([{"name": "a", "zone": "web", "address": "10.77.1.10/16"}], "has prefix length /16"),
    ([{"name": "a", "bridge": "br-lab", "address": "10.77.1.10/24"}], "outside the subnet of bridge br-lab"),
    ([{"name": "a", "zone": "web", "address6": "fd00:99::10/64"}], "outside the subnet of zone web"),
    ([{"name": "a", "zone": "web", "address6": "fd00:77:1::1/64"}], "is the host's own address"),
    ([{"name": "a", "bridge": "br-lab", "address6": "fd00:78::10/64"}],
     "bridge br-lab (br-lab, corral_network_bridges) has no IPv6 subnet"),
    ([{"name": "a", "network": "host", "address": "10.77.1.10/24"}], "needs a virtual Ethernet link"),
])
def test_wrong_addresses_are_refused(machines, error):
    plan = _plan(machines)
    assert any(error in e for e in plan.errors), plan.errors


def test_every_error_at_once():
    plan = _plan([{"name": "a", "zone": "web", "address": "10.77.1.1/24"},
                  {"name": "b", "zone": "web", "address": "10.77.1.0/24"},
                  {"name": "c", "zone": "web", "address": "10.99.0.10/24"}])
    assert len(plan.errors) == 3


@pytest.mark.parametrize("machines, warning", [
    ([{"name": "a", "zone": "web", "address": "10.77.1.150/24"}], "inside the DHCP pool of zone web"),
    ([{"name": "a", "bridge": "br-lab", "address": "10.78.0.60/24"}], "(10.78.0.50-10.78.0.69)"),
    ([{"name": "a", "zone": "nowhere"}], "zone 'nowhere' is declared by no corral_network_zones entry"),
    ([{"name": "a", "bridge": "br-x", "address": "10.1.0.5/24"}], "not checked: bridge br-x"),
])
def test_warnings(machines, warning):
    plan = _plan(machines)
    assert plan.errors == [] and any(warning in w for w in plan.warnings), plan.warnings


@pytest.mark.parametrize("machines", [
    [{"name": "a", "zone": "web", "address": "10.77.1.10/24", "address6": "fd00:77:1::10/64"},
     {"name": "b", "zone": "web"}, {"name": "c", "bridge": "br-lab", "address": "10.78.0.70/24"}],
    [{"name": "a", "address": "192.168.5.5/24"}],   # a plain veth: no subnet to check against
])
def test_good_plans_have_no_errors_or_warnings(machines):
    plan = _plan(machines)
    assert plan.errors == [] and plan.warnings == []


def test_pool_below_and_above():
    net = netmodel.known_networks([ZONE], [], {})["vz-web"]
    first, last = netmodel.pool_range(net, net.interfaces[0].network)
    assert (str(first), str(last)) == ("10.77.1.100", "10.77.1.254")
    plain = netmodel.known_networks([{"name": "x", "address": ["10.5.0.1/24"]}], [], {})["vz-x"]
    assert str(netmodel.pool_range(plain, plain.interfaces[0].network)[0]) == "10.5.0.1"


def test_forward_to_no_declared_machine_warns():
    forwards = [{"host_port": 8080, "address": "10.77.1.10", "port": 80},
                {"host_port": 8081, "address": "10.77.1.99"},
                {"host_port": 8443, "address": "fd00:77:1::10"}]
    plan = _plan([{"name": "a", "zone": "web", "address": "10.77.1.10/24", "address6": "fd00:77:1::10/64"}],
                 forwards=forwards)
    assert [w for w in plan.warnings if "forwards" in w] == [
        "corral_network_port_forwards: tcp/8081 -> 10.77.1.99 targets no declared machine's static address "
        "(nor a fixed DHCP lease) on this host; the forward leads nowhere until a machine has that address"]


def test_host_files_and_declared_networks():
    """Subnets come from managed files on the host too; a declared zone without address keeps the host's."""
    text = ("# Managed by corral.nspawn. Do not edit: changes are overwritten on the next run.\n\n[Match]\n"
            "Name=vz-db\n\n[Network]\nAddress=10.88.7.1/24\nDHCPServer=yes\n\n[DHCPServer]\nPoolOffset=64\n")
    on_host = netmodel.host_networks({"/etc/systemd/network/50-corral-vz-db.network": text,
                                      "/etc/systemd/network/90-foreign.network": "[Match]\nName=x\n"})
    assert list(on_host) == ["vz-db"] and on_host["vz-db"].pool_offset == 64
    nets = netmodel.known_networks([{"name": "db"}], [], on_host)
    assert [str(i) for i in nets["vz-db"].interfaces] == ["10.88.7.1/24"]
    derived = netmodel.known_networks([{"name": "fresh"}], [], {})["vz-fresh"]
    assert derived.interfaces and derived.interfaces[0].network.subnet_of(netmodel.ipaddress.ip_network("10.88.0.0/16"))
    assert "vz-db" not in netmodel.known_networks([{"name": "db", "state": "absent"}], [], on_host)


def test_fleet_check_addresses_raises_all_errors_before_any_change(tmp_path):
    machines = fleet.desired_machines([{"name": "a", "zone": "web", "address": "10.77.1.1/24"},
                                       {"name": "b", "zone": "web", "address": "10.99.0.10/24"}], {}, [])
    with pytest.raises(fleet.FleetError) as caught:
        fleet_io.check_addresses({"network_zones": [ZONE]}, machines, str(tmp_path))
    assert len(caught.value.details["errors"]) == 2


def test_split_addresses():
    assert fleet_plan.split_addresses("10.77.1.220\nfd00:77:1:0:b8::1\nfe80::1\n127.0.0.1") == {
        "addresses": ["10.77.1.220", "fd00:77:1:0:b8::1"], "ipv4": ["10.77.1.220"], "ipv6": ["fd00:77:1:0:b8::1"]}
