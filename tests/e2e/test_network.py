# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""corral.nspawn.zone / bridge / nat on a real test host.

One host ("net-a"): zone "web" (10.88.10.1/24 + fd00:88:10::1/64) with z1 (static address written
into its root, web server) and z2 (DHCP from the zone), bridge corralbr0 (10.20.0.1/24, DHCP) with b1.
A foreign nft table (loaded by the stock nftables.service, whose config flushes the ruleset) and a
foreign networkd bridge exist from the start and must be unchanged at the end, also after a reboot.

The first tests (rhythms) need a host where zone, bridge and table do not exist yet; they run first
in file order and say so when they find them. Every later test gets what it builds on from the
module-scoped fixtures ``network`` (zone, bridge, NAT applied) and ``machines`` (z1, z2, b1
running), so each one also runs alone, e.g.
``pytest tests/e2e/test_network.py::test_flush_ruleset_then_rerun_restores``.
"""

import json
import shlex

import pytest

import harness
from harness import in_machine as inside, wait_until

ZONE = {"name": "web", "address": ["10.88.10.1/24", "fd00:88:10::1/64"]}
BRIDGE = {"name": "corralbr0", "address": ["10.20.0.1/24"], "dhcp_server": True}
NAT = {"uplinks": ["uplink0"],
       "forwards": [{"host_port": 8080, "address": "10.88.10.2", "port": 80},
                    {"host_port": 8080, "address": "fd00:88:10::2", "port": 80}]}
MACHINES = {"z1": "Zone=web", "z2": "Zone=web", "b1": "Bridge=corralbr0"}
Z1_NETWORK = ("[Match]\nName=host0\n\n[Network]\nAddress=10.88.10.2/24\nGateway=10.88.10.1\n"
              "Address=fd00:88:10::2/64\nGateway=fd00:88:10::1\nIPv6AcceptRA=no\n")
FOREIGN_NFT = """#!/usr/sbin/nft -f
flush ruleset
table inet foreign {
    set blocked {
        type ipv4_addr
        elements = { 192.0.2.7 }
    }

    chain input {
        type filter hook input priority filter + 5; policy accept;
        ip saddr @blocked drop
    }
}
"""
FOREIGN_BRIDGE = ("/etc/systemd/network/20-foreign.netdev", "[NetDev]\nName=foreignbr\nKind=bridge\n",
                  "/etc/systemd/network/20-foreign.network",
                  "[Match]\nName=foreignbr\n[Network]\nAddress=192.168.77.1/24\nConfigureWithoutCarrier=yes\n")
FETCH = "python3 -c 'import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())'"
# Serves every connection until it is killed (by PID, at the end of the test that started it).
LISTEN = ("import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
          "s.bind(('203.0.113.2', 9000))\ns.listen(16)\nwhile True:\n"
          "    c, a = s.accept()\n    print(a[0], flush=True)\n    c.close()\n")


def pings(host, name, address):
    return inside(host, name, f"ping -c1 -W2 {address}").returncode == 0


def assert_fresh(host, what, paths):
    """These tests need a host where ``what`` does not exist yet: the file's first tests, in file order."""
    found = host.existing(*paths)
    assert not found, (f"{what} already exists ({', '.join(found)}): this rhythm needs a fresh host; "
                       "run test_network.py in file order, or this test alone")


def diagnose(host) -> str:
    """What the host's network looks like, for failure messages."""
    script = ("networkctl list --no-pager; ip -br addr; systemctl list-jobs --no-pager; "
              "systemctl --failed --no-pager; nft list ruleset; "
              "for m in z1 z2 b1; do echo == $m; systemd-run -M $m --quiet --wait --pipe -- ip -br addr; done; "
              "journalctl -b -u systemd-networkd --no-pager -n 40")
    return host.ssh(script, check=False, timeout=60).stdout[-8000:]


def foreign_state(host):
    return (host.ssh("nft list table inet foreign").stdout,
            host.ssh("ip -br addr show foreignbr").stdout)


def corral_table(host):
    return host.ssh("nft list table inet corral", check=False)


def add_machine(host, name, network):
    root = f"/var/lib/machines/{name}"
    host.ssh(f"rm -rf {root} && cp -a --reflink=auto /srv/corral/images/debian12 {root} && : > {root}/etc/machine-id "
             f"&& mkdir -p /etc/systemd/nspawn && printf '[Network]\\n{network}\\n' > /etc/systemd/nspawn/{name}.nspawn")


def start_web(host):
    inside(host, "z1", "sh -c 'mkdir -p /srv/www && echo hello-from-z1 > /srv/www/index.html'", check=True)
    host.ssh("systemd-run -M z1 --unit=corral-web --collect -- python3 -m http.server 80 --bind :: --directory /srv/www")
    assert wait_until(lambda: "hello-from-z1" in host.ssh(f"{FETCH} http://10.88.10.2/", check=False).stdout, 20)


@pytest.fixture(scope="module")
def host(make_host):
    host = make_host("net-a")
    # networkd comes from the host role (the test host starts without it, as Debian does);
    # forwarding is left to the nat module, whose sysctls are checked below.
    host.prepare(corral_host_ip_forward=False)
    host.ssh(f"printf %s {shlex.quote(FOREIGN_NFT)} > /etc/nftables.conf && systemctl enable --now nftables.service")
    host.ssh(f"printf %s {shlex.quote(FOREIGN_BRIDGE[1])} > {FOREIGN_BRIDGE[0]} && "
             f"printf %s {shlex.quote(FOREIGN_BRIDGE[3])} > {FOREIGN_BRIDGE[2]} && networkctl reload")
    assert wait_until(lambda: "192.168.77.1/24" in host.ssh("ip -br addr show foreignbr", check=False).stdout, 20)
    host.ssh("ip addr add 2001:db8:113::1/64 dev uplink0 nodad && "
             "ip -n uplink addr add 2001:db8:113::2/64 dev eth0 nodad")
    host.foreign = foreign_state(host)
    host.forward_before = host.ssh("sysctl -n net.ipv4.ip_forward").stdout.strip()
    yield host
    host.ssh("for m in z1 z2 b1; do machinectl disable $m; machinectl terminate $m; done; "
             "rm -rf /var/lib/machines/z1 /var/lib/machines/z2 /var/lib/machines/b1", check=False)


ZONE_FILES = ("/etc/systemd/network/50-corral-vz-web.network", "/etc/systemd/network/50-corral-vz-web.netdev")
BRIDGE_FILES = ("/etc/systemd/network/50-corral-corralbr0.network", "/etc/systemd/network/50-corral-corralbr0.netdev")
NAT_FILES = ("/etc/nftables.d/corral.nft",)


@pytest.fixture(scope="module")
def zone(host):
    """Zone web applied (a no-op after the zone rhythm)."""
    host.run("zone", ZONE)
    return host


@pytest.fixture(scope="module")
def network(zone):
    """Zone, bridge and NAT as the rhythm tests leave them (applied here when those did not run)."""
    for module, args in (("bridge", BRIDGE), ("nat", NAT)):
        zone.run(module, args)
    return zone


@pytest.fixture(scope="module")
def machines(network):
    """z1 (static address in the zone), z2 (DHCP from the zone) and b1 (bridge): enabled, running, reachable."""
    host = network
    for name, link in MACHINES.items():
        add_machine(host, name, link)
    host.ssh(f"printf %s {shlex.quote(Z1_NETWORK)} > /var/lib/machines/z1/etc/systemd/network/10-host0.network")
    host.ssh("machinectl enable z1 z2 b1 && machinectl start z1 z2 b1")
    assert wait_until(lambda: pings(host, "z2", "10.88.10.2"), 60), "z2 (DHCP) cannot reach z1 in the zone"
    assert wait_until(lambda: pings(host, "b1", "10.20.0.1"), 60), "b1 got no address on corralbr0"
    return host


@pytest.fixture
def uplink_listener(host):
    """A TCP listener on 203.0.113.2:9000 in the uplink namespace for as long as the test runs;
    /tmp/peer.txt gets the source address of every connection. Stopped by its PID at the end."""
    host.ssh(f"printf %s {shlex.quote(LISTEN)} > /tmp/listen.py && : > /tmp/peer.txt")
    # setsid from a non-interactive shell execs in place: $! is the listener's own PID.
    pid = int(host.ssh("setsid ip netns exec uplink python3 /tmp/listen.py >> /tmp/peer.txt 2>&1 < /dev/null & "
                       "echo $!").stdout.strip())
    listening = "ip netns exec uplink ss -Hltn 'sport = :9000' | grep -q ."
    assert wait_until(lambda: host.ssh(listening, check=False).returncode == 0, 20), "the uplink listener never listened"
    yield pid
    host.ssh(f"kill {pid}", check=False)


def test_zone_rhythm_check_mode_writes_nothing(host):
    assert_fresh(host, "zone web", ZONE_FILES)
    first, second = host.rhythm("zone", ZONE)[:2]
    assert second["address"] == ZONE["address"]
    assert {f["path"] for f in first["files"]} == set(ZONE_FILES)
    assert any("DHCPServer=yes" in d["after"] for d in first["diff"])
    link = json.loads(host.ssh("ip -j addr show vz-web").stdout)[0]
    assert "UP" in link["flags"]
    assert {f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]} >= set(ZONE["address"])


def test_check_mode_of_a_new_zone_creates_nothing(host):
    result = host.run("zone", {"name": "db"}, check=True)  # run() compares host.fingerprint() around it
    assert result["changed"] and result["address"][0].startswith("10.88."), result
    assert host.existing("/etc/systemd/network/50-corral-vz-db.network",
                         "/etc/systemd/network/50-corral-vz-db.netdev") == []
    assert host.ssh("ip link show vz-db", check=False).returncode != 0


def test_bridge_rhythm_and_refusals(zone):
    host = zone
    assert_fresh(host, "bridge corralbr0", BRIDGE_FILES)
    host.rhythm("bridge", BRIDGE)
    assert "10.20.0.1/24" in host.ssh("ip -br addr show corralbr0").stdout
    foreign = host.module("bridge", {"name": "foreignbr", "address": ["10.30.0.1/24"]})
    assert foreign["failed"] and "not managed by corral.nspawn" in foreign["msg"], foreign
    overlap = host.module("bridge", {"name": "br9", "address": ["203.0.113.9/24"]})
    assert overlap["failed"] and "overlaps address 203.0.113.1/24 on uplink0" in overlap["msg"], overlap
    clash = host.module("bridge", {"name": "br9", "address": ["10.88.10.77/16"]})
    assert clash["failed"] and "managed link vz-web" in clash["msg"], clash
    assert host.existing("/etc/systemd/network/50-corral-br9.netdev", "/etc/systemd/network/50-corral-br9.network") == []


def test_nat_rhythm_check_mode_applies_no_rules(host):
    assert_fresh(host, "the nat boot file", NAT_FILES)

    def after_check(index, _result):
        if index == 0:
            assert corral_table(host).returncode != 0, "check mode created the table"
            for path in ("/etc/nftables.d/corral.nft", "/etc/sysctl.d/90-corral-nat-corral.conf"):
                assert host.ssh(f"test -e {path}", check=False).returncode != 0, f"check mode wrote {path}"
            assert host.ssh("sysctl -n net.ipv4.ip_forward").stdout.strip() == host.forward_before
    results = host.rhythm("nat", NAT, after=after_check)
    table_diff = results[1]["diff"][0]
    assert table_diff["before"] == "" and "dnat ip6 to [fd00:88:10::2]:80" in table_diff["after"]
    # the diff's nft syntax is exactly what nft lists, and the boot file loads to the same table
    assert corral_table(host).stdout == table_diff["after"]
    host.ssh("ip netns add corraltest && ip netns exec corraltest nft -f /etc/nftables.d/corral.nft && "
             "ip netns exec corraltest nft list table inet corral > /tmp/fromfile.nft; ip netns del corraltest")
    assert host.ssh("cat /tmp/fromfile.nft").stdout == table_diff["after"]
    assert host.ssh("systemctl is-enabled corral-nft-corral.service").stdout.strip() == "enabled"
    assert host.ssh("sysctl -n net.ipv4.ip_forward net.ipv4.conf.all.route_localnet "
                    "net.ipv6.conf.all.forwarding").stdout.split() == ["1", "1", "1"]
    assert foreign_state(host) == host.foreign


def test_nat_bad_input_changes_nothing(network):
    host = network
    before = host.fingerprint()
    bad = [({**NAT, "forwards": NAT["forwards"] + [{"host_port": 8080, "address": "10.88.10.3"}]},
            "tcp host_port 8080 (IPv4) is already forwarded by forwards[0]"),
           ({**NAT, "forwards": [{"host_port": 70000, "address": "10.88.10.2"}]}, "not a port; allowed 1..65535"),
           ({**NAT, "masquerade": ["10.88.10/24"]}, "masquerade: '10.88.10/24' is not a subnet")]
    for args, fragment in bad:
        result = host.module("nat", args)
        assert result["failed"] and fragment in result["msg"], result
    harness.assert_same(before, host.fingerprint(), "nat with bad input")


def test_containers_zone_ping_masquerade_and_port_forwards(machines, uplink_listener):
    host = machines
    assert "10.88.10." in inside(host, "z2", "ip -4 -br addr show host0").stdout
    assert pings(host, "b1", "10.88.10.2"), "bridge container cannot reach the zone container through the host"
    # the uplink has no route back: reaching it needs our masquerade; it sees the host's uplink address
    host.run("nat", {**NAT, "state": "absent"})
    assert not pings(host, "z2", "203.0.113.2")
    assert host.run("nat", NAT)["changed"]
    assert pings(host, "z2", "203.0.113.2")
    # Retried: on a loaded machine z1's own networkd may not be up yet; the listener is (fixture).
    connect = "python3 -c \"import socket; socket.create_connection(('203.0.113.2', 9000), 3).close()\""
    assert wait_until(lambda: inside(host, "z1", connect).returncode == 0, 40), \
        "z1 (static address) cannot open a TCP connection to the uplink through the masquerade"

    def seen_peer():
        return host.ssh("head -n1 /tmp/peer.txt", check=False).stdout.strip()

    peer = wait_until(seen_peer, 10)
    assert peer == "203.0.113.1", f"the uplink saw {peer!r}, not the host's uplink address"
    start_web(host)
    for url in ("http://203.0.113.1:8080/", "http://[2001:db8:113::1]:8080/"):
        assert host.uplink(f"{FETCH} {url}").stdout.strip() == "hello-from-z1", url
    for url in ("http://127.0.0.1:8080/", "http://203.0.113.1:8080/", "http://10.20.0.1:8080/"):
        assert host.ssh(f"{FETCH} {url}", check=False).stdout.strip() == "hello-from-z1", url


def test_foreign_drop_chain_is_reported_and_integrate_opens_it(machines):
    host = machines
    host.ssh("nft add table ip dockerish && nft 'add chain ip dockerish FORWARD "
             "{ type filter hook forward priority filter; policy drop; }'")
    try:
        assert not pings(host, "b1", "10.88.10.2"), "a drop-policy forward chain should block container traffic"
        warned = host.run("nat", NAT)
        assert not warned["changed"] and warned["blockers"] == [
            {"family": "ip", "table": "dockerish", "chain": "FORWARD", "hook": "forward", "reason": "policy drop"}]
        assert any("table ip dockerish chain FORWARD" in w for w in warned.get("warnings", [])), warned
        args = {**NAT, "integrate": True}
        host.rhythm("nat", args, diff=False)
        assert pings(host, "b1", "10.88.10.2")
        assert "corral.nspawn:corral" in host.ssh("nft list table ip dockerish").stdout
    finally:
        host.ssh("nft delete table ip dockerish", check=False)
    assert not host.run("nat", NAT)["changed"]


def test_flush_ruleset_then_rerun_restores(network):
    host = network
    host.ssh("nft flush ruleset && nft -f /etc/nftables.conf")  # the admin reloads their own rules
    assert corral_table(host).returncode != 0
    restored = host.run("nat", NAT)
    assert restored["changed"] and any("create table inet corral" in c for c in restored["changes"]), restored
    assert not host.run("nat", NAT)["changed"]
    assert foreign_state(host) == host.foreign


def test_reboot_brings_everything_back_without_ansible(machines):
    host = machines
    table = corral_table(host).stdout
    host.reboot()
    assert wait_until(lambda: all(host.ssh(f"machinectl show {m} -p State --value", check=False).stdout.strip()
                                  == "running" for m in MACHINES), 90)
    assert corral_table(host).stdout == table
    assert foreign_state(host) == host.foreign
    assert host.ssh("sysctl -n net.ipv4.ip_forward net.ipv4.conf.all.route_localnet").stdout.split() == ["1", "1"]
    assert "10.20.0.1/24" in host.ssh("ip -br addr show corralbr0").stdout
    assert wait_until(lambda: pings(host, "z2", "10.88.10.2"), 60), diagnose(host)
    assert wait_until(lambda: pings(host, "z1", "203.0.113.2"), 30), diagnose(host)
    start_web(host)
    assert host.uplink(f"{FETCH} http://203.0.113.1:8080/").stdout.strip() == "hello-from-z1"
    for module, args in (("zone", ZONE), ("bridge", BRIDGE), ("nat", NAT)):
        again = host.run(module, args)
        assert not again["changed"], (module, again.get("changes"), again.get("diff"), diagnose(host))


def test_bridge_absent_rhythm_removes_files_and_link(machines):
    host = machines
    host.ssh("machinectl disable b1; machinectl terminate b1", check=False)
    # the bridge is removed only once b1's veth has left it (no sleep: wait for exactly that)
    assert wait_until(lambda: host.ssh("ip -o link show master corralbr0", check=False).stdout.strip() == "", 30), \
        host.ssh("ip -o link show master corralbr0", check=False).stdout
    host.rhythm("bridge", {"name": "corralbr0", "state": "absent"})
    assert host.ssh("ip link show corralbr0", check=False).returncode != 0
    assert host.ssh("ls /etc/systemd/network/ | grep corralbr0", check=False).stdout == ""
    assert foreign_state(host) == host.foreign
