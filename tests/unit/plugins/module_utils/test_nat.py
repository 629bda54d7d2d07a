# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for nat.py: validation, normalisation, sysctl, boot unit."""

import ipaddress

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import hostprep, nat, unitfile
from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.nat_fakes import fwd, params

MANAGED = [{"path": "/etc/systemd/network/50-corral-vz-web.network", "name": "vz-web",
            "addresses": ["10.88.10.1/24"]},
           {"path": "/etc/systemd/network/50-corral-corralbr0.network", "name": "corralbr0",
            "addresses": ["10.20.0.1/24", "fd00:20::1/64"]}]


@pytest.mark.parametrize("kw, fragment", [
    ({"table": "io.systemd.nat"}, "table: 'io.systemd.nat' is not allowed"),
    ({"table": "1corral"}, "table: '1corral' is not allowed"),
    ({"masquerade": ["10.88.10.0"]}, "masquerade: '10.88.10.0' is not a subnet in CIDR form"),
    ({"masquerade": ["10.88.300.0/24"]}, "masquerade: '10.88.300.0/24' is not a subnet"),
    ({"uplinks": ["an-uplink-too-long"]}, "uplinks: 'an-uplink-too-long' is 18 characters"),
    ({"links": ["bad name"]}, "links: 'bad name' contains characters not allowed"),
    ({"forwards": [fwd(host_port=0)]}, "forwards[0].host_port: 0 is not a port; allowed 1..65535"),
    ({"forwards": [fwd(port=65536)]}, "forwards[0].port: 65536 is not a port; allowed 1..65535"),
    ({"forwards": [fwd(address="10.88.10")]}, "forwards[0].address: '10.88.10' is not an IPv4 or IPv6 address"),
    ({"forwards": [fwd(), fwd(address="10.88.10.3", port=81)]},
     "forwards[1]: tcp host_port 8080 (IPv4) is already forwarded by forwards[0]; each host port once per protocol"),
])
def test_bad_input_is_an_error_naming_the_option(kw, fragment):
    result = nat.plan(params(**kw), MANAGED)
    assert any(fragment in e for e in result.errors), result.errors


def test_same_port_different_protocol_or_family_is_fine():
    result = nat.plan(params(forwards=[fwd(), fwd(proto="udp"), fwd(address="fd00:20::5")]), MANAGED)
    assert result.errors == [] and result.warnings == []
    assert [f["address"] for f in result.forwards] == ["10.88.10.2", "10.88.10.2", "fd00:20::5"]


def test_target_outside_managed_subnets_warns_but_is_applied():
    result = nat.plan(params(forwards=[fwd(address="192.168.1.9")]), MANAGED)
    assert result.errors == []
    assert result.warnings == ["forwards[0]: 192.168.1.9 is outside every managed container subnet (10.88.10.0/24, "
                               "10.20.0.0/24, fd00:20::/64); "
                               "the forward is applied anyway"]
    assert len(result.forwards) == 1


def test_port_defaults_to_host_port_and_address_is_canonical():
    result = nat.plan(params(forwards=[{"proto": "udp", "host_port": 53, "address": "FD00:20:0::7", "port": None}]),
                      MANAGED)
    assert result.forwards == [{"proto": "udp", "host_port": 53, "address": "fd00:20::7", "port": 53}]


def test_masquerade_defaults_to_managed_subnets_and_accepts_interface_form():
    defaults = [str(n) for n in nat.plan(params(), MANAGED).masquerade]
    assert defaults == ["10.88.10.0/24", "10.20.0.0/24", "fd00:20::/64"]
    given = nat.plan(params(masquerade=["10.88.10.1/24", "10.88.10.0/24"]), MANAGED).masquerade
    assert given == [ipaddress.ip_network("10.88.10.0/24")]
    assert nat.plan(params(masquerade=[]), MANAGED).masquerade == []


def test_links_are_container_prefixes_plus_managed_bridges_plus_extra_without_duplicates():
    result = nat.plan(params(links=["lxcbr0", "ve-*"]), MANAGED)
    assert result.links == ["ve-*", "vb-*", "vz-*", "corralbr0", "lxcbr0"]


@pytest.mark.parametrize("kw, expected", [
    ({}, {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}),  # managed has a v6 subnet
    ({"masquerade": ["10.0.0.0/24"]}, {"net.ipv4.ip_forward": "1"}),
    ({"masquerade": ["10.0.0.0/24"], "forwards": [fwd()]},
     {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.route_localnet": "1"}),
    ({"masquerade": ["10.0.0.0/24"], "forwards": [fwd()], "localhost": False}, {"net.ipv4.ip_forward": "1"}),
    ({"masquerade": [], "forwards": [fwd(address="fd00::2")]},
     {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}),
])
def test_sysctl_settings(kw, expected):
    assert nat.sysctl_settings(nat.plan(params(**kw), MANAGED)) == expected


def test_sysctl_file_and_live_changes():
    text = hostprep.sysctl_text({"net.ipv4.ip_forward": "1"})
    assert text == unitfile.HEADER + "net.ipv4.ip_forward = 1\n"
    assert hostprep.proc_path("net.ipv4.conf.all.route_localnet") == "/proc/sys/net/ipv4/conf/all/route_localnet"
    assert nat.sysctl_changes({"a": "1", "b": "1"}, {"a": "1\n", "b": "0\n"}) == {"b": "1"}
    assert nat.sysctl_changes({"a": "1"}, {"a": None}) == {"a": "1"}


def test_boot_unit_loads_our_file_after_nftables_service():
    doc = unitfile.parse(nat.render_unit("corral", "/usr/sbin/nft"))
    assert unitfile.get(doc, "Service", "ExecStart") == ["/usr/sbin/nft -f /etc/nftables.d/corral.nft"]
    assert "nftables.service" in unitfile.get(doc, "Unit", "After")[0]
    assert unitfile.get(doc, "Unit", "Before") == ["network-pre.target shutdown.target"]
    assert unitfile.get(doc, "Install", "WantedBy") == ["sysinit.target"]
    assert nat.unit_path("corral") == "/etc/systemd/system/corral-nft-corral.service"
    assert nat.sysctl_path("corral") == "/etc/sysctl.d/90-corral-nat-corral.conf"


def test_ruleset_params_feed_the_builder():
    result = nat.plan(params(uplinks=["uplink0"], forwards=[fwd()]), MANAGED)
    assert set(result.ruleset_params()) == {"table", "masquerade", "uplinks", "links", "forwards", "localhost"}
