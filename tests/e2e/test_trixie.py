# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The compatibility subset on two systemd generations at once (issue 14).

One mixed pair for the whole file: txi-a is a Debian 13 host (systemd 257, nftables 1.1,
Python 3.13 without ``crypt``, no openssl binary), txi-b a Debian 12 host (systemd 252); both see
the container images of both releases. playbooks/site.yml deploys to both in one run: on txi-a
trixie containers (web, db) and a bookworm one (app), on txi-b a trixie container (web) next to a
bookworm one (app): mixed fleets both ways, each host with the example zone, bridge, NAT and the 8080 -> web:80 forward.

One flow, in file order (run the file whole): generations -> converge -> zone/NAT/forward incl.
127.0.0.1 -> root password hashed without ``crypt`` -> no-op and ``--check --diff`` ->
settings version -> tar import through importctl and a clone with a fresh identity -> live limit
-> host reboot (and a no-op run after it). The catalogue test at the end reads the nspawn binaries of both
cached host roots and needs no host.
"""

import json
import os
import pathlib
import re
import shutil
import warnings

import pytest
import yaml

import harness
from harness import in_machine

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SITE = os.path.join(ROOT, "playbooks", "site.yml")
EXAMPLES = os.path.join(ROOT, "examples", "inventory")
TRIXIE, BOOKWORM = "txi-a", "txi-b"
HOSTS = [TRIXIE, BOOKWORM]
MACHINES = {"txi-a": ("web", "app", "db"), "txi-b": ("web", "app")}
ADDRESSES = {"web": "10.88.0.10", "app": "10.88.0.11", "db": "10.88.0.12"}
TEMPLATES = [{"name": "t12", "source": "directory", "path": harness.image_path("bookworm")},
             {"name": "t13", "source": "directory", "path": harness.image_path("trixie")}]
# Which release each container runs (VERSION_ID of its os-release), per host.
RELEASES = {TRIXIE: {"web": "13", "app": "12", "db": "13"},
            BOOKWORM: {"web": "13", "app": "12"}}
ROOT_PASSWORD = "txi-Root-pw"  # set on txi-a's db: hashed by a Python 3.13 host


@pytest.fixture(scope="module")
def pair(make_hosts):
    return make_hosts(HOSTS, suites={TRIXIE: "trixie"}, images=("bookworm", "trixie"))


def machines_of(host: str, memory_db: str = "1G") -> list:
    machines = [{"name": name, "address": f"{ADDRESSES[name]}/24",
                 "template": "t13" if RELEASES[host][name] == "13" else "t12"} for name in MACHINES[host]]
    machines[0]["resources"] = {"memory_max": "256M"}
    if host == TRIXIE:
        machines[2]["resources"] = {"memory_max": memory_db, "cpu_quota": "100%"}
        machines[2]["root_password"] = ROOT_PASSWORD
    return machines


@pytest.fixture(scope="module")
def inventory(pair, tmp_path_factory):
    """The example group_vars; each host's own machines and both templates in host_vars."""
    directory = tmp_path_factory.mktemp("txi-inventory")
    shutil.copytree(os.path.join(EXAMPLES, "group_vars"), directory / "group_vars")
    (directory / "host_vars").mkdir()
    write_host_vars(directory)
    data = json.loads(harness._write_inventory(pair))  # pylint: disable=protected-access
    data["all"]["children"] = {"nspawn_hosts": {"hosts": data["all"]["children"]["test_hosts"]["hosts"]}}
    (directory / "hosts.yml").write_text(json.dumps(data))
    return str(directory / "hosts.yml")


def write_host_vars(directory, memory_db: str = "1G") -> None:
    for host in HOSTS:
        (directory / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(
            {"corral_fleet_templates": TEMPLATES, "corral_fleet_machines": machines_of(host, memory_db)}))


def site(inventory, check=False, diff=False, limit=None):
    run = harness.run_playbook(SITE, inventory, check=check, diff=diff, extra_args=("--limit", limit) if limit else ())
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert set(run.recap) == ({limit} if limit else set(HOSTS)), run.stdout[-3000:]
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in run.recap.values()), run.recap
    return run


def changed(run) -> dict:
    return {h: r["changed"] for h, r in run.recap.items()}


def show(host, machine, *props):
    out = host.ssh(f"systemctl show -p {','.join(props)} systemd-nspawn@{machine}.service").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_running(host, machine, seconds=90):
    state = host.ssh(f"timeout {seconds} sh -c 'until systemctl -M {machine} is-system-running --wait; do sleep 1; "
                     "done' 2>&1 | tail -3", check=False, timeout=seconds + 30).stdout
    if state.strip().splitlines()[-1:] not in (["running"], ["degraded"]):
        why = host.ssh(f"machinectl list --no-pager; systemctl status --no-pager -n 30 systemd-nspawn@{machine}; "
                       "systemctl list-jobs --no-pager", check=False).stdout
        raise AssertionError(f"{host.name}/{machine} is not up: {state!r}\n{why}")


def test_each_host_runs_the_generation_it_claims(pair):
    trixie, bookworm = pair
    assert trixie.ssh("systemctl --version").stdout.startswith("systemd 257 ")
    assert bookworm.ssh("systemctl --version").stdout.startswith("systemd 252 ")
    assert trixie.ssh("nft --version").stdout.startswith("nftables v1.1.")
    assert bookworm.ssh("nft --version").stdout.startswith("nftables v1.0.")
    # The root password test below is about exactly this host: Python 3.13, no crypt, no openssl.
    probe = "python3 -c 'import sys; print(sys.version_info[:2])'; python3 -c 'import crypt'; command -v openssl"
    out = trixie.ssh(probe, check=False)
    assert out.stdout.splitlines()[0] == "(3, 13)" and "No module named 'crypt'" in out.stderr, out
    assert out.returncode != 0 and len(out.stdout.splitlines()) == 1, "openssl is on the trixie host"


def test_converge_mixed_fleets_on_both_generations(pair, inventory):
    run = site(inventory)
    assert all(count > 0 for count in changed(run).values()), run.recap
    for host in pair:
        for machine in MACHINES[host.name]:
            wait_running(host, machine)
            unit = show(host, machine, "ActiveState", "UnitFileState")
            assert (unit["ActiveState"], unit["UnitFileState"]) == ("active", "enabled"), (host.name, unit)
            release = in_machine(host, machine, "sh -c '. /etc/os-release; echo $VERSION_ID'").stdout.strip()
            assert release == RELEASES[host.name][machine], f"{host.name}/{machine} runs Debian {release}"
        assert show(host, "web", "MemoryMax")["MemoryMax"] == str(256 * 1024 ** 2)
        assert host.ssh("systemctl is-enabled machines.target").stdout.strip() == "enabled"


def test_zone_bridge_nat_and_forwards_including_localhost(pair):
    fetch = ("python3 -c \"import urllib.request,sys; "
             "sys.stdout.write(urllib.request.urlopen('http://{}:8080/hostname', timeout=5).read().decode())\"")
    for host in pair:
        ping = in_machine(host, "web", f"ping -c1 -W3 {ADDRESSES['app']}")
        assert ping.returncode == 0, f"{host.name}: web cannot reach app in the zone: {ping.stdout}{ping.stderr}"
        out = in_machine(host, "app", "ping -c1 -W3 203.0.113.2")
        assert out.returncode == 0, f"{host.name}: app cannot reach the uplink through NAT: {out.stdout}{out.stderr}"
        bridge = host.ssh("ip -br addr show br-corral").stdout
        assert "10.89.0.1/24" in bridge, f"{host.name}: bridge br-corral: {bridge}"
        host.ssh("systemd-run -M web --unit=corral-http --collect python3 -m http.server 80 --directory /etc",
                 check=False)
        for where, runner in (("uplink", host.uplink), ("host", lambda cmd: host.ssh(cmd, check=False))):
            address = "203.0.113.1" if where == "uplink" else "127.0.0.1"
            for _attempt in range(20):
                got = runner(fetch.format(address))
                if got.returncode == 0:
                    break
                host.ssh("sleep 0.5")
            assert got.returncode == 0 and got.stdout.strip() == "web", \
                f"{host.name}: forward {address}:8080 -> web:80 from the {where}: {got.stdout}{got.stderr}"
        assert host.ssh("sysctl -n net.ipv4.conf.all.route_localnet").stdout.strip() == "1"


def libxcrypt(password: str, crypted: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import crypt  # pylint: disable=import-outside-toplevel,deprecated-module
    return crypt.crypt(password, crypted)


def test_root_password_hashed_on_a_host_without_crypt(pair):
    """The trixie host hashed db's root password with neither Python's crypt nor openssl; the controller's
    libxcrypt (Python 3.11) verifies the hash, and the no-op run below verifies it on the host again."""
    trixie = pair[0]
    line = trixie.ssh("grep '^root:' /var/lib/machines/db/etc/shadow").stdout.strip()
    crypted = line.split(":")[1]
    assert crypted.startswith("$6$") and len(crypted.split("$")[2]) == 16, line
    assert libxcrypt(ROOT_PASSWORD, crypted) == crypted
    assert libxcrypt("wrong", crypted) != crypted
    other = pair[1].ssh("grep '^root:' /var/lib/machines/app/etc/shadow").stdout.split(":")[1]
    assert not other.startswith("$"), "txi-b's app has no root password declared"


def test_second_run_and_check_diff_change_nothing(pair, inventory):
    run = site(inventory)
    assert changed(run) == {h: 0 for h in HOSTS}, run.stdout[-4000:]
    before = {h.name: h.fingerprint() for h in pair}
    check = site(inventory, check=True, diff=True)
    assert changed(check) == {h: 0 for h in HOSTS}, check.stdout[-4000:]
    assert "--- before" not in check.stdout and "+++ after" not in check.stdout, check.stdout[-4000:]
    for host in pair:
        harness.assert_same(before[host.name], host.fingerprint(), f"[{host.name}] site.yml --check --diff")


def test_settings_reads_each_hosts_systemd_version(pair):
    """The version branch of the settings catalogue runs on the real systemctl of each generation
    (check mode: nothing is written)."""
    for host, version in zip(pair, (257, 252)):
        result = harness.succeeded(host.module("settings", {"name": "txiver", "suppress_sync": True}, check=True))
        assert result["changed"] and result["systemd_version"] == version, result
        assert host.existing("/etc/systemd/nspawn/txiver.nspawn") == []
        assert not any("needs systemd" in w for w in result.get("warnings", [])), result


def test_tar_import_through_importctl_and_a_clone_with_a_fresh_identity(pair):
    trixie = pair[0]
    args = {"name": "imp13", "source": "tar", "path": harness.image_path("trixie", tar=True)}
    results = trixie.rhythm("image", args)
    # systemd 257: importctl, not machinectl import-tar (which systemd 252 uses, see test_image.py).
    assert results[0]["method"] == results[1]["method"] == "importctl import-tar", results[1]
    assert trixie.ssh("cat /var/lib/machines/imp13/etc/machine-id").stdout == ""
    # One clone of the import; both boot, each must come up with an identity of its own.
    trixie.rhythm("image", {"name": "txc1", "source": "clone", "clone_from": "imp13", "hostname": "txc1"})
    trixie.ssh("machinectl start imp13 txc1")
    ids = {}
    for name in ("imp13", "txc1"):
        wait_running(trixie, name)
        leader = trixie.ssh(f"machinectl show -p Leader --value {name}").stdout.strip()
        ids[name] = trixie.ssh(f"cat /proc/{leader}/root/etc/machine-id").stdout.strip()
        if name == "txc1":
            assert trixie.ssh(f"cat /proc/{leader}/root/etc/hostname").stdout.strip() == "txc1"
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids.values()) and len(set(ids.values())) == 2, ids
    trixie.ssh("machinectl poweroff imp13 txc1", check=False)


def test_live_limit_change_on_the_trixie_host_without_restart(pair, inventory):
    """The fleet's live path (set-property --runtime, then its NeedDaemonReload reading) on systemd 257;
    the no-op run after it is the last run of the reboot test below. (Its check mode and the same
    change on systemd 252 are in test_fleet.py.)"""
    trixie = pair[0]
    leader = trixie.ssh("machinectl show -p Leader --value db").stdout.strip()
    write_host_vars(pathlib.Path(os.path.dirname(inventory)), "768M")
    run = site(inventory, limit=TRIXIE)
    assert changed(run) == {TRIXIE: 1}, run.stdout[-4000:]
    assert show(trixie, "db", "MemoryMax")["MemoryMax"] == str(768 * 1024 ** 2)
    assert trixie.ssh("machinectl show -p Leader --value db").stdout.strip() == leader, "db restarted for a limit"


def test_reboot_of_the_trixie_host_brings_the_fleet_back(pair, inventory):
    trixie = pair[0]
    trixie.reboot()
    for machine in MACHINES[TRIXIE]:
        wait_running(trixie, machine)
    ping = in_machine(trixie, "web", f"ping -c1 -W3 {ADDRESSES['app']}")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert show(trixie, "db", "MemoryMax")["MemoryMax"] == str(768 * 1024 ** 2), "the live limit did not persist"
    run = site(inventory, limit=TRIXIE)
    assert changed(run) == {TRIXIE: 0}, run.stdout[-4000:]


NSPAWN_KEY_RE = re.compile(rb"(?<=\x00)((?:Exec|Files|Network)\.[A-Za-z]+)(?=\x00)")


@pytest.mark.parametrize("suite", sorted(harness.SUITES))
def test_settings_catalogue_equals_the_keys_of_each_generations_nspawn(suite):
    """Every [Exec]/[Files]/[Network] key the real systemd-nspawn of the release parses (its gperf table,
    read from the binary of the cached host root) is in the catalogue, and no catalogue key is unknown to it."""
    from ansible_collections.corral.nspawn.plugins.module_utils import schema  # pylint: disable=import-outside-toplevel
    with open(os.path.join(harness.cached_root("host", suite), "usr/bin/systemd-nspawn"), "rb") as handle:
        real = {m.decode() for m in NSPAWN_KEY_RE.findall(handle.read())}
    assert len(real) > 50, f"found only {sorted(real)}: the binary's layout changed, this test proves nothing"
    catalogue = {f"{key.section}.{key.key}" for key in schema.TABLE.values()}
    assert catalogue == real, {"unknown to nspawn": sorted(catalogue - real), "missing": sorted(real - catalogue)}
