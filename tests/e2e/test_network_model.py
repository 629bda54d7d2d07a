# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The network model (issue 11, issue 19 item 5) with playbooks/site.yml on two real test hosts.

Both hosts get zone "web" (10.77.1.0/24 + fd00:77:1::/64, DHCP pool from .100) as the fleet-wide
attachment, bridge "br-lab" (10.78.0.0/24, DHCP) and NAT to the simulated uplink. Machines:

- ``app``: inherits the attachment, DHCP (a lease from the zone's pool);
  on nmd-b the host layer (``corral_fleet_host_defaults: {bridge: br-lab}``) replaces the zone as a whole;
- ``st``: ``zone: web`` (over the host layer) with static IPv4 and IPv6 addresses, target of two forwards;
- ``lab``: ``bridge: br-lab`` over the inherited zone, DHCP;
- ``hn``: ``network: host``;
- ``mv`` (nmd-a only): ``network: none`` plus a macvlan on a veth whose peer is a port of br-lab, so its
  ``mv-*`` link gets DHCP "from the LAN" through the configuration the image preparation wrote.

The converge run is a module fixture; every test reads from it and runs alone too.
"""

import ipaddress
import json
import os

import pytest

import harness
from harness import in_machine as inside, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SITE = os.path.join(ROOT, "playbooks", "site.yml")
HOSTS = ["nmd-a", "nmd-b"]
ZONE = {"name": "web", "address": ["10.77.1.1/24", "fd00:77:1::1/64"], "dhcp_pool_offset": 100}
BRIDGE = {"name": "br-lab", "address": ["10.78.0.1/24"], "dhcp_server": True, "dhcp_pool_offset": 100}
TEMPLATE = {"name": "nmd-tmpl", "source": "directory", "path": "/srv/corral/images/debian12"}
DEFAULTS = {"template": "nmd-tmpl", "zone": "web"}
MACHINES = [{"name": "app"},
            {"name": "st", "zone": "web", "address": "10.77.1.10/24", "address6": "fd00:77:1::10/64"},
            {"name": "lab", "bridge": "br-lab"},
            {"name": "hn", "network": "host"}]
MV = {"name": "mv", "network": "none", "settings": {"macvlan": ["mvp0"]}}
FORWARDS = [{"host_port": 8080, "address": "10.77.1.10", "port": 80},
            {"host_port": 8080, "address": "fd00:77:1::10", "port": 80}]
FETCH = "python3 -c 'import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())'"
# After site.yml: every host's corral_fleet_result, written on the controller.
RESULT_PLAY = {"name": "Save the fleet result", "hosts": "nspawn_hosts", "gather_facts": False, "tasks": [
    {"name": "result", "ansible.builtin.copy": {"content": "{{ corral_fleet_result | to_json }}",
                                                "dest": "{{ _out }}/{{ inventory_hostname }}.json"},
     "delegate_to": "localhost", "check_mode": False, "diff": False, "changed_when": False}]}


def host_vars(name):
    machines = MACHINES + ([MV] if name == "nmd-a" else [])
    bridge = dict(BRIDGE, ports=["mvp1"]) if name == "nmd-a" else BRIDGE
    extra = {"corral_fleet_host_defaults": {"bridge": "br-lab"}} if name == "nmd-b" else {}
    return dict(corral_fleet_machines=machines, corral_network_bridges=[bridge], **extra)


GROUP_VARS = {"corral_host_bootstrap_packages": [], "corral_network_zones": [ZONE],
              "corral_network_nat_uplinks": ["uplink0"], "corral_network_port_forwards": FORWARDS,
              "corral_fleet_templates": [TEMPLATE], "corral_fleet_defaults": DEFAULTS}


@pytest.fixture(scope="module")
def hosts(make_hosts):
    return dict(zip(HOSTS, make_hosts(HOSTS)))


@pytest.fixture(scope="module")
def inventory(hosts, tmp_path_factory):
    directory = tmp_path_factory.mktemp("nmd")
    data = json.loads(harness._write_inventory(list(hosts.values())))  # pylint: disable=protected-access
    members = data["all"]["children"]["test_hosts"]["hosts"]
    for name, entry in members.items():
        entry.update(host_vars(name))
    data["all"]["children"] = {"nspawn_hosts": {"hosts": members, "vars": GROUP_VARS}}
    (directory / "hosts.yml").write_text(json.dumps(data))
    (directory / "site.yml").write_text(json.dumps([{"ansible.builtin.import_playbook": SITE}, RESULT_PLAY]))
    return str(directory)


def site(inventory, check=False):
    """site.yml plus the saved corral_fleet_result of each host; the run must succeed on both."""
    out = os.path.join(inventory, "out")
    os.makedirs(out, exist_ok=True)
    run = harness.run_playbook(os.path.join(inventory, "site.yml"), os.path.join(inventory, "hosts.yml"),
                               {"_out": out}, check=check)
    assert run.rc == 0 and set(run.recap) == set(HOSTS), run.stdout[-6000:] + run.stderr[-2000:]
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in run.recap.values()), run.recap
    results = {}
    for name in HOSTS:
        with open(os.path.join(out, f"{name}.json"), encoding="utf-8") as handle:
            results[name] = json.load(handle)
    return run, results


@pytest.fixture(scope="module")
def converged(hosts, inventory):
    a = hosts["nmd-a"]
    # the "LAN" of mv: a veth pair, one end a port of br-lab (declared in corral_network_bridges), the
    # other the macvlan parent; and an IPv6 address on the uplink for the forward to an IPv6 target
    a.ssh("ip link add mvp0 type veth peer name mvp1 && ip link set mvp0 up")
    for host in hosts.values():
        host.ssh("ip addr add 2001:db8:113::1/64 dev uplink0 nodad && "
                 "ip -n uplink addr add 2001:db8:113::2/64 dev eth0 nodad")
    run, results = site(inventory)
    yield {"run": run, "results": results}
    for host in hosts.values():   # terminate, not power off: the hosts go next
        host.ssh("machinectl terminate app st lab hn mv", check=False)


def changed_tasks(run):
    """The TASK headers followed by a changed: line, for the failure message."""
    task, out = "", []
    for line in run.stdout.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed:"):
            out.append(f"{task} {line[:300]}")
    return out


def machines_of(converged, host):
    return converged["results"][host]["machines"]


def test_attachment_most_specific_layer_wins_as_a_whole(hosts, converged):
    expected = {"nmd-a": {"app": ("zone", "web"), "st": ("zone", "web"), "lab": ("bridge", "br-lab"),
                          "hn": ("host", None), "mv": ("none", None)},
                "nmd-b": {"app": ("bridge", "br-lab"), "st": ("zone", "web"), "lab": ("bridge", "br-lab"),
                          "hn": ("host", None)}}
    for name, machines in expected.items():
        got = {m: (r["attachment"]["kind"], r["attachment"]["name"]) for m, r in machines_of(converged, name).items()}
        assert got == machines, name
    nspawn = {(h, m): hosts[h].ssh(f"cat /etc/systemd/nspawn/{m}.nspawn").stdout
              for h in HOSTS for m in ("app", "hn")}
    assert "Zone=web" in nspawn["nmd-a", "app"] and "Bridge" not in nspawn["nmd-a", "app"]
    assert "Bridge=br-lab" in nspawn["nmd-b", "app"] and "Zone" not in nspawn["nmd-b", "app"]
    assert "Private=no" in nspawn["nmd-a", "hn"] and "VirtualEthernet=no" in nspawn["nmd-a", "hn"]
    # host networking from outside: hn sees the host's uplink link
    assert "uplink0" in inside(hosts["nmd-a"], "hn", "ip -br link", check=True).stdout


def _in(address, network):
    return ipaddress.ip_address(address) in ipaddress.ip_network(network)


def test_dhcp_and_static_addresses_in_the_fleet_result(hosts, converged):
    """Issue 11 item 2: a DHCP machine gets a lease (was: no IPv4 address); addresses in corral_fleet_result."""
    a, b = machines_of(converged, "nmd-a"), machines_of(converged, "nmd-b")
    for machines in (a, b):
        assert machines["st"]["ipv4"] == ["10.77.1.10"] and machines["st"]["ipv6"] == ["fd00:77:1::10"]
        assert [x for x in machines["lab"]["ipv4"] if _in(x, "10.78.0.0/24")], machines["lab"]
    app_v4 = [x for x in a["app"]["ipv4"] if _in(x, "10.77.1.0/24")]
    assert app_v4 and int(app_v4[0].split(".")[-1]) >= 100, a["app"]   # from the pool
    assert [x for x in b["app"]["ipv4"] if _in(x, "10.78.0.0/24")], b["app"]
    # the result says what the machine has: compared with its own view from outside
    seen = inside(hosts["nmd-a"], "app", "ip -o addr show dev host0", check=True).stdout
    assert all(address in seen for address in a["app"]["addresses"]), (a["app"], seen)


def test_dhcp_machine_reaches_the_uplink_through_nat(hosts, converged):
    # the uplink has no route to 10.77.1.0/24: an answer comes back only through the masquerade
    assert wait_until(lambda: inside(hosts["nmd-a"], "app", "ping -c1 -W2 203.0.113.2").returncode == 0, 20)


def test_macvlan_link_gets_dhcp_from_the_lan(hosts, converged):
    """Issue 19 item 5: the image preparation configures mv-* too (was: no network file for it)."""
    a = hosts["nmd-a"]
    assert "Name=mv-mvp0" in a.ssh("cat /var/lib/machines/mv/etc/systemd/network/10-corral-mv-mvp0.network").stdout

    def lease():
        out = inside(a, "mv", "ip -o -4 addr show dev mv-mvp0").stdout
        return "10.78.0." in out and out
    assert wait_until(lease, 30), inside(a, "mv", "ip -o addr").stdout


def test_forwards_reach_static_ipv4_and_ipv6_targets(hosts, converged):
    for host in hosts.values():
        inside(host, "st", "sh -c 'mkdir -p /srv/www && echo hello-from-st > /srv/www/index.html'", check=True)
        host.ssh("systemd-run -M st --unit=nmd-web --collect -- /usr/bin/python3 -m http.server 80 --bind :: -d /srv/www")
        for url in ("http://203.0.113.1:8080/", "http://[2001:db8:113::1]:8080/"):
            assert wait_until(lambda u=url: host.uplink(f"{FETCH} {u}").stdout.strip() == "hello-from-st", 15), url


def test_second_run_check_and_apply_change_nothing(hosts, converged, inventory):
    before = {n: h.fingerprint() for n, h in hosts.items()}
    run, _results = site(inventory, check=True)
    for name, host in hosts.items():
        harness.assert_same(before[name], host.fingerprint(), f"[{name}] site.yml --check")
    assert all(r["changed"] == 0 for r in run.recap.values()), (run.recap, changed_tasks(run))
    run, results = site(inventory)
    assert all(r["changed"] == 0 for r in run.recap.values()), (run.recap, changed_tasks(run))
    assert results["nmd-a"]["machines"]["st"]["ipv4"] == ["10.77.1.10"]


WRONG = [  # issue 11 item 3: each was accepted and started a machine
    ({"name": "bad", "address": "10.77.1.10/24"}, "10.77.1.10 is given to 2 machines"),
    ({"name": "bad", "address": "10.77.1.1/24"}, "is the host's own address on zone web"),
    ({"name": "bad", "address": "10.77.1.0/24"}, "is the network address of 10.77.1.0/24"),
    ({"name": "bad", "address": "10.99.0.10/24"}, "10.99.0.10/24 is outside the subnet of zone web"),
    ({"name": "bad", "address6": "fd00:77:1::1/64"}, "fd00:77:1::1/64 is the host's own address"),
]


def fleet_args(extra):
    return {"machines": MACHINES + [extra], "defaults": DEFAULTS, "host_defaults": {"bridge": "br-lab"},
            "templates": [TEMPLATE], "network_zones": [ZONE], "network_bridges": [BRIDGE],
            "port_forwards": FORWARDS}


def test_wrong_addresses_refused_before_any_change(hosts, converged):
    b = hosts["nmd-b"]
    for machine, message in WRONG:
        before = b.fingerprint()
        result = b.module("fleet", fleet_args(dict(machine, zone="web")))
        assert result.get("failed") and message in result.get("msg", ""), (machine, result.get("msg"))
        harness.assert_same(before, b.fingerprint(), f"refused {machine}")
    assert b.existing("/var/lib/machines/bad", "/etc/systemd/nspawn/bad.nspawn") == []


def test_wrong_addresses_all_at_once_in_check_mode(hosts, converged):
    a = hosts["nmd-a"]
    machines = MACHINES + [dict(m, name=f"bad{i}", zone="web") for i, (m, _msg) in enumerate(WRONG)]
    before = a.fingerprint()
    result = a.module("fleet", dict(fleet_args({"name": "ok"}), machines=machines, host_defaults={}), check=True)
    assert result.get("failed"), result
    assert all(message in result["msg"] for _m, message in WRONG), result["msg"]
    assert len(result["errors"]) == len(WRONG), result["errors"]
    harness.assert_same(before, a.fingerprint(), "refused fleet (check mode)")


def test_unknown_zone_and_stray_forward_warn(hosts, converged):
    a = hosts["nmd-a"]
    args = fleet_args({"name": "stray", "zone": "nowhere"})
    args["port_forwards"] = FORWARDS + [{"host_port": 9090, "address": "10.77.1.99"}]
    result = a.run("fleet", dict(args, host_defaults={}), check=True)
    warnings = " | ".join(result.get("warnings", []))
    assert "zone 'nowhere' is declared by no corral_network_zones entry" in warnings, warnings
    assert "tcp/9090 -> 10.77.1.99 targets no declared machine" in warnings, warnings
    assert "tcp/8080" not in warnings, warnings
