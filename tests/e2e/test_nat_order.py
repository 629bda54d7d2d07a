# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""corral.nspawn.nat on a real test host: the kernel ruleset first, then files, boot unit and sysctls;
route_localnet only while a loopback forward needs it, and only together with its guard chain.

One host ("nat1"), no containers: these tests look at the ruleset, the persisted files, the boot
unit and the sysctls. The first test needs a host where corral's table was never applied.
"""

import concurrent.futures
import shlex
import time

import pytest

TABLE = "corral"
RULESET = f"/etc/nftables.d/{TABLE}.nft"
UNIT = f"corral-nft-{TABLE}.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
SYSCTL_FILE = f"/etc/sysctl.d/90-corral-nat-{TABLE}.conf"
LOCALNET = "net.ipv4.conf.all.route_localnet"
NAT = {"masquerade": ["10.88.60.0/24"], "uplinks": ["uplink0"],
       "forwards": [{"host_port": 8080, "address": "10.88.60.2", "port": 80}]}
# A valid Linux interface name that nft 1.0.6's JSON parser refuses (it reads "tcp" as a protocol):
# validation accepts it, the kernel transaction is refused. (If validation learns to refuse it, pick
# another value only nft refuses: this test is about what a refused transaction leaves behind.)
REFUSED = dict(NAT, links=["tcp"])


@pytest.fixture(scope="module")
def host(make_host):
    return make_host("nat1")


def host_state(host) -> dict:
    """Everything a refused run must leave as it was."""
    listing = host.ssh("ls -la --time-style=full-iso /etc/nftables.d /etc/sysctl.d 2>&1", check=False).stdout
    return {"files": {path: host.stat(path) for path in (RULESET, UNIT_FILE, SYSCTL_FILE)},
            "listing": listing,
            "unit": host.ssh(f"systemctl is-enabled {UNIT}", check=False).stdout.strip(),
            "sysctl": host.ssh(f"sysctl -n net.ipv4.ip_forward {LOCALNET}").stdout.split()}


def localnet_live(host) -> str:
    return host.ssh(f"sysctl -n {LOCALNET}").stdout.strip()


def localnet_persisted(host) -> str:
    """route_localnet as our sysctl.d file sets it ('' when the file or the line is missing)."""
    out = host.ssh(f"cat {SYSCTL_FILE}", check=False).stdout
    return next((line.split("=")[1].strip() for line in out.splitlines() if line.startswith(LOCALNET)), "")


def table(host) -> str:
    return host.ssh(f"nft list table inet {TABLE}", check=False).stdout


def has_guard(host) -> bool:
    text = table(host)
    return "chain localnet" in text and "ip daddr 127.0.0.0/8 drop" in text


def test_refused_ruleset_leaves_files_unit_and_sysctls_unchanged(host):
    assert not host.existing(RULESET, UNIT_FILE, SYSCTL_FILE), "needs a host where nat was never applied"
    before = host_state(host)
    assert before["sysctl"] == ["0", "0"] and before["unit"] != "enabled", before
    # Values nft refuses never reach it: validation names them first.
    for bad, message in ((dict(NAT, uplinks=["*"]), "uplinks: a bare '*' matches every interface"),
                         (dict(NAT, forwards=[dict(NAT["forwards"][0], host_port=True)]),
                          "forwards[0].host_port: True is not a port"),
                         (dict(NAT, table="cor\nral"), "table: 'cor\\nral' contains a line break")):
        refused = host.module("nat", bad)
        assert refused.get("failed") and message in refused["msg"], (message, refused)
        assert host_state(host) == before
    result = host.module("nat", REFUSED)
    assert result.get("failed"), result
    assert host_state(host) == before
    assert "nft refused the transaction for table inet corral; nothing was changed" in result["msg"], result["msg"]
    assert not result.get("changed"), result
    assert not table(host)
    # Nothing left behind that needs repair: the next run with good values applies everything.
    host.run("nat", NAT)
    assert has_guard(host) and localnet_live(host) == "1" and localnet_persisted(host) == "1"
    assert host.ssh(f"systemctl is-enabled {UNIT}", check=False).stdout.strip() == "enabled"
    # A refused change of a table in place leaves the table, its files and sysctls as they were.
    before = host_state(host), table(host)
    result = host.module("nat", dict(REFUSED, forwards=[]))
    assert result.get("failed") and not result.get("changed"), result
    assert (host_state(host), table(host)) == before


@pytest.mark.parametrize("change", ["no forwards", "localhost false", "state absent"])
def test_route_localnet_goes_back_with_its_forward(host, change):
    host.run("nat", NAT)
    assert has_guard(host) and localnet_live(host) == "1" and localnet_persisted(host) == "1"
    args = {"no forwards": dict(NAT, forwards=[]), "localhost false": dict(NAT, localhost=False),
            "state absent": {"state": "absent"}}[change]
    results = host.rhythm("nat", args)
    assert f"set {LOCALNET} = 0" in results[1]["changes"], results[1]["changes"]
    assert localnet_live(host) == "0" and localnet_persisted(host) == ""
    assert not has_guard(host)
    if change == "state absent":
        assert not host.existing(RULESET, UNIT_FILE, SYSCTL_FILE) and not table(host)


def test_flush_ruleset_then_next_run_restores_the_guard_first(host):
    host.run("nat", NAT)
    assert has_guard(host) and localnet_live(host) == "1"
    host.ssh("nft flush ruleset")
    # The window: route_localnet stays 1 with no guard until the next run (see docs/networking.md).
    assert not has_guard(host) and localnet_live(host) == "1"
    restored = host.run("nat", NAT)
    assert restored["changed"] and restored["changes"][0] == f"create table inet {TABLE}", restored["changes"]
    assert has_guard(host) and localnet_live(host) == "1"
    assert not host.run("nat", NAT)["changed"]


def test_nftables_restart_or_reload_loads_our_table_again(host):
    """The stock nftables.conf starts with 'flush ruleset'; our unit is PartOf= it and reloads with it."""
    host.ssh("grep -q '^flush ruleset' /etc/nftables.conf && systemctl enable --now nftables.service")
    try:
        host.run("nat", NAT)
        assert has_guard(host) and localnet_live(host) == "1"
        assert host.ssh(f"systemctl is-active {UNIT}", check=False).stdout.strip() == "active"
        for verb in ("restart", "reload"):
            host.ssh(f"systemctl {verb} nftables.service")
            assert has_guard(host), f"systemctl {verb} nftables.service left no guard chain"
        assert not host.run("nat", NAT)["changed"]
        # Control: with our unit stopped the same restart does flush our table; the next run restores it.
        host.ssh(f"systemctl stop {UNIT} && systemctl restart nftables.service")
        assert not table(host) and localnet_live(host) == "1"
        restored = host.run("nat", NAT)
        assert restored["changes"] == [f"create table inet {TABLE}", f"start {UNIT}"], restored["changes"]
        assert has_guard(host) and not host.run("nat", NAT)["changed"]
    finally:
        host.ssh("systemctl disable --now nftables.service", check=False)


def blocked_module(host, timeout=120.0):
    """PID of the module process (the host lock's holder) once it blocks opening a FIFO, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = host.ssh("pid=$(cut -d' ' -f1 /run/corral-nspawn.lock 2>/dev/null); "
                       "[ -n \"$pid\" ] && echo $pid $(cat /proc/$pid/wchan 2>/dev/null)", check=False).stdout.split()
        if len(out) == 2 and out[1] == "wait_for_partner":
            return int(out[0])
        time.sleep(0.2)
    return None


def kill_at(host, path, args):
    """Run nat with a FIFO in place of ``path`` and kill -9 the module when it opens it.

    The FIFO is only a breakpoint: opening it blocks the module at a known point of its run. The
    file's own content is put back after the kill, so the host is left exactly as a kill -9 at that
    point leaves it.
    """
    saved = host.ssh(f"cat {path}", check=False)
    host.ssh(f"rm -f {path} && mkfifo -m 0644 {path}")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    run = pool.submit(host.module, "nat", args)
    try:
        pid = blocked_module(host)
        assert pid, f"the nat module never blocked on {path}"
        host.ssh(f"kill -9 {pid}")
        killed = run.result(timeout=120)
    finally:
        pool.shutdown(wait=False)
        host.ssh(f"rm -f {path}")
        if saved.returncode == 0:
            host.ssh(f"printf %s {shlex.quote(saved.stdout)} > {path}")
    assert killed.get("failed") or killed.get("unreachable"), f"the killed run reported success: {killed}"
    return killed


LOOPBACK_OFF = dict(NAT, localhost=False)


@pytest.mark.parametrize("point, path", [("before the transaction", SYSCTL_FILE),
                                         ("after the transaction, before the files", RULESET)])
def test_kill_9_around_the_nft_transaction(host, point, path):
    """Issue 10's fault row "kill -9 during the nft apply": the transaction is one netlink batch the
    kernel commits whole, so a kill lands before it or after it; both points are hit on purpose here.
    Whatever the kill leaves, route_localnet=1 is never live without the guard chain, and the next
    run completes the table, its files, the boot unit and the sysctls; the run after it changes nothing."""
    host.run("nat", LOOPBACK_OFF)
    assert localnet_live(host) == "0" and not has_guard(host)
    before = table(host)
    kill_at(host, path, NAT)
    after_kill = table(host)
    if point == "before the transaction":
        assert after_kill == before, "the kill before the transaction changed the table"
    else:
        assert has_guard(host) and after_kill != before, "the transaction had not committed at the breakpoint"
        assert "localnet" not in host.ssh(f"cat {RULESET}").stdout, "the files were written before the breakpoint"
    assert localnet_live(host) == "0" or has_guard(host), "route_localnet is on without its guard chain"
    finished = host.run("nat", NAT)
    assert finished["changed"], finished
    assert has_guard(host) and localnet_live(host) == "1" and localnet_persisted(host) == "1"
    assert host.ssh(f"systemctl is-enabled {UNIT}", check=False).stdout.strip() == "enabled"
    assert "127.0.0.0/8" in host.ssh(f"cat {RULESET}").stdout
    assert not host.run("nat", NAT)["changed"]


@pytest.mark.parametrize("key", [LOCALNET, "net.ipv4.ip_forward"])
def test_sysctl_set_back_by_hand_is_restored_and_reported(host, key):
    """Drift: a sysctl the forwards need, set back live by hand; the next run restores it (the guard
    chain is still there, so route_localnet may go back on) and the run after changes nothing."""
    host.run("nat", NAT)
    assert has_guard(host) and host.ssh(f"sysctl -n {key}").stdout.strip() == "1"
    host.ssh(f"sysctl -qw {key}=0")
    restored = host.run("nat", NAT)
    assert f"set {key} = 1" in restored["changes"], restored["changes"]
    assert host.ssh(f"sysctl -n {key}").stdout.strip() == "1" and has_guard(host)
    assert not host.run("nat", NAT)["changed"]


def monotonic(host, unit: str, prop: str) -> int:
    return int(host.ssh(f"systemctl show -p {prop} --value {unit}").stdout.strip() or 0)


def test_boot_loads_the_guard_before_any_network_is_configured(host):
    """The boot-time window: sysctl.d sets route_localnet early; the guard must be in before networkd starts."""
    host.run("nat", NAT)
    host.ssh("systemctl enable systemd-networkd.service")
    host.reboot()
    assert has_guard(host) and localnet_live(host) == "1"
    guard_loaded = monotonic(host, UNIT, "ActiveEnterTimestampMonotonic")
    networkd_started = monotonic(host, "systemd-networkd.service", "InactiveExitTimestampMonotonic")
    assert 0 < guard_loaded <= networkd_started, (guard_loaded, networkd_started)
    assert "network-pre.target" in host.ssh(f"systemctl show -p Before --value {UNIT}").stdout
    assert not host.run("nat", NAT)["changed"]
