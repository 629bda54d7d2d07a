# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The example inventory deployed with playbooks/site.yml to two real test hosts at once.

One flow, in order: converge -> everything running with its limits -> connectivity
(zone, NAT, port forward) -> second run changed=0 -> --check --diff reports nothing ->
editing one container's limit changes only that container -> prune removes an
undeclared fleet machine and nothing else.
"""

import copy
import json
import os
import shutil

import pytest
import yaml

import harness
from harness import in_machine

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SITE = os.path.join(ROOT, "playbooks", "site.yml")
EXAMPLES = os.path.join(ROOT, "examples", "inventory")
HOSTS = ["flt-a", "flt-b"]
MACHINES = ("web", "app", "db")
ADDRESSES = {"web": "10.88.0.10", "app": "10.88.0.11", "db": "10.88.0.12"}


@pytest.fixture(scope="module")
def fleet_hosts(make_hosts):
    return make_hosts(HOSTS)


@pytest.fixture(scope="module")
def inventory(fleet_hosts, tmp_path_factory):
    """The example group_vars with both test hosts in nspawn_hosts; flt-b gets a per-host override."""
    directory = tmp_path_factory.mktemp("fleet-inventory")
    shutil.copytree(os.path.join(EXAMPLES, "group_vars"), directory / "group_vars")
    (directory / "host_vars").mkdir()
    (directory / "host_vars" / "flt-b.yml").write_text(yaml.safe_dump(
        {"corral_fleet_host_defaults": {"resources": {"cpu_quota": "100%"}}}))
    data = json.loads(harness._write_inventory(fleet_hosts))  # pylint: disable=protected-access
    data["all"]["children"] = {"nspawn_hosts": {"hosts": data["all"]["children"]["test_hosts"]["hosts"]}}
    (directory / "hosts.yml").write_text(json.dumps(data))
    return str(directory / "hosts.yml")


def example_machines():
    with open(os.path.join(EXAMPLES, "group_vars", "nspawn_hosts", "fleet.yml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)["corral_fleet_machines"]


def site(inventory, extra_vars=None, check=False, diff=False):
    run = harness.run_playbook(SITE, inventory, extra_vars, check=check, diff=diff)
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert set(run.recap) == set(HOSTS), run.stdout[-3000:]
    # the recap's changed counts are read only for hosts where nothing failed
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in run.recap.values()), run.recap
    return run


def check_site(hosts, inventory, extra_vars=None):
    """site.yml --check --diff; it must leave every host's fingerprint as it was."""
    before = {h.name: h.fingerprint() for h in hosts}
    run = site(inventory, extra_vars, check=True, diff=True)
    for host in hosts:
        harness.assert_same(before[host.name], host.fingerprint(), f"[{host.name}] site.yml --check")
    return run


def show(host, machine, *props):
    out = host.ssh(f"systemctl show -p {','.join(props)} systemd-nspawn@{machine}.service").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_converge_deploys_every_container_running_enabled_with_limits(fleet_hosts, inventory):
    run = site(inventory)
    assert all(r["failed"] == 0 and r["changed"] > 0 for r in run.recap.values()), run.recap
    for host in fleet_hosts:
        for machine in MACHINES:
            state = host.ssh(f"systemctl -M {machine} is-system-running --wait", check=False, timeout=60).stdout
            assert state.strip() in ("running", "degraded"), f"{host.name}/{machine}: {state}"
            unit = show(host, machine, "ActiveState", "UnitFileState", "MemoryMax", "CPUQuotaPerSecUSec")
            assert (unit["ActiveState"], unit["UnitFileState"]) == ("active", "enabled"), unit
        assert show(host, "web", "MemoryMax")["MemoryMax"] == str(256 * 1024 ** 2)   # per-container override
        assert show(host, "app", "MemoryMax")["MemoryMax"] == str(512 * 1024 ** 2)   # fleet-wide default
        assert show(host, "db", "MemoryMax")["MemoryMax"] == str(1024 ** 3)
        quota = show(host, "app", "CPUQuotaPerSecUSec")["CPUQuotaPerSecUSec"]
        assert quota == ("1s" if host.name == "flt-b" else "500ms"), f"{host.name}: per-host override: {quota}"
        assert host.ssh("systemctl is-enabled machines.target").stdout.strip() == "enabled"


def test_containers_talk_in_the_zone_reach_the_uplink_and_serve_the_forward(fleet_hosts, inventory):
    for host in fleet_hosts:
        ping = in_machine(host, "web", f"ping -c1 -W3 {ADDRESSES['db']}")
        assert ping.returncode == 0, f"{host.name}: web cannot reach db in the zone: {ping.stdout}{ping.stderr}"
        out = in_machine(host, "app", "ping -c1 -W3 203.0.113.2")
        assert out.returncode == 0, f"{host.name}: app cannot reach the uplink through NAT: {out.stdout}{out.stderr}"
        host.ssh("systemd-run -M web --unit=corral-http --collect python3 -m http.server 80 --directory /etc",
                 check=False)
        fetch = ("python3 -c \"import urllib.request,sys; "
                 "sys.stdout.write(urllib.request.urlopen('http://203.0.113.1:8080/hostname', timeout=5).read().decode())\"")
        for _attempt in range(20):
            got = host.uplink(fetch)
            if got.returncode == 0:
                break
            host.ssh("sleep 0.5")
        assert got.returncode == 0 and got.stdout.strip() == "web", f"{host.name}: forward 8080->web:80: {got.stderr}"


def test_second_run_changes_nothing_on_any_host(inventory):
    run = site(inventory)
    assert {h: r["changed"] for h, r in run.recap.items()} == {h: 0 for h in HOSTS}, run.stdout[-4000:]


def test_check_diff_on_the_converged_fleet_reports_nothing(fleet_hosts, inventory):
    run = check_site(fleet_hosts, inventory)
    assert {h: r["changed"] for h, r in run.recap.items()} == {h: 0 for h in HOSTS}
    assert "--- before" not in run.stdout and "+++ after" not in run.stdout, run.stdout[-4000:]


def _fingerprint(host):
    """Start time of every unit and mtime of every fleet file: what an untouched container keeps."""
    script = ("for m in web app db; do echo $m $(systemctl show -p ActiveEnterTimestampMonotonic --value "
              "systemd-nspawn@$m.service) $(stat -c %.9Y /etc/systemd/nspawn/$m.nspawn "
              "/etc/systemd/system/systemd-nspawn@$m.service.d/*.conf); done")
    return dict(line.split(" ", 1) for line in host.ssh(script).stdout.splitlines())


def test_editing_one_limit_changes_only_that_container(fleet_hosts, inventory):
    before = {h.name: _fingerprint(h) for h in fleet_hosts}
    machines = example_machines()
    db = next(m for m in machines if m["name"] == "db")
    db["resources"]["memory_max"] = "768M"
    check = check_site(fleet_hosts, inventory, {"corral_fleet_machines": machines})
    assert {h: r["changed"] for h, r in check.recap.items()} == {h: 1 for h in HOSTS}
    run = site(inventory, {"corral_fleet_machines": machines})
    assert {h: r["changed"] for h, r in run.recap.items()} == {h: 1 for h in HOSTS}
    for host in fleet_hosts:
        after = _fingerprint(host)
        assert after["web"] == before[host.name]["web"] and after["app"] == before[host.name]["app"]
        assert after["db"].split()[0] == before[host.name]["db"].split()[0], "db was restarted for a limit"
        assert after["db"] != before[host.name]["db"], "db's drop-in was not rewritten"
        assert show(host, "db", "MemoryMax")["MemoryMax"] == str(768 * 1024 ** 2)  # live, no restart
    again = site(inventory, {"corral_fleet_machines": machines})
    assert {h: r["changed"] for h, r in again.recap.items()} == {h: 0 for h in HOSTS}


def test_prune_removes_only_the_undeclared_fleet_container(fleet_hosts, inventory):
    machines = example_machines()
    extra = copy.deepcopy(machines) + [{"name": "extra", "address": "10.88.0.20/24"}]
    site(inventory, {"corral_fleet_machines": extra})
    for host in fleet_hosts:
        host.ssh("printf '[Exec]\\nBoot=yes\\n' > /etc/systemd/nspawn/manual.nspawn")
        assert show(host, "extra", "ActiveState")["ActiveState"] == "active"
    before = {h.name: _fingerprint(h) for h in fleet_hosts}
    run = site(inventory, {"corral_fleet_machines": machines, "corral_fleet_prune": True})
    assert {h: r["changed"] for h, r in run.recap.items()} == {h: 1 for h in HOSTS}
    for host in fleet_hosts:
        assert show(host, "extra", "ActiveState", "UnitFileState") == {"ActiveState": "inactive",
                                                                       "UnitFileState": "disabled"}
        left = host.existing("/etc/systemd/nspawn/extra.nspawn", "/etc/systemd/system/systemd-nspawn@extra.service.d")
        assert left == [], f"{host.name}: prune left {left}"
        assert host.ssh("test -d /var/lib/machines/extra/etc && test -f /etc/systemd/nspawn/manual.nspawn",
                        check=False).returncode == 0, "root (no purge) or the unmanaged file was removed"
        assert _fingerprint(host) == before[host.name], "prune touched a declared container"
        host.ssh("rm -f /etc/systemd/nspawn/manual.nspawn")
    again = site(inventory, {"corral_fleet_machines": machines, "corral_fleet_prune": True})
    assert {h: r["changed"] for h, r in again.recap.items()} == {h: 0 for h in HOSTS}


def test_root_password_never_reaches_results_or_the_host_journal(fleet_hosts):
    host = fleet_hosts[0]
    secret = "$6$corralsecret$doNotLogMe" + "x" * 76  # of the real SHA-512-crypt form, which is checked
    result = host.run("fleet", {
        "templates": [{"name": "debian12-tmpl", "source": "directory", "path": "/srv/corral/images/debian12"}],
        "machines": [{"name": "sec", "template": "debian12-tmpl", "root_password_hash": secret,
                      "state": "stopped", "enabled": False}],
        "defaults": {"root_password": "plainCorralSecret"},
    }, check=True, diff=True)
    assert result["machines"]["sec"]["changed"]
    dumped = json.dumps(result)
    assert "corralsecret" not in dumped and "plainCorralSecret" not in dumped
    journal = host.ssh("journalctl --no-pager -n 300", check=False).stdout
    invoked = "Invoked with" in journal and ('"name": "sec"' in journal or "'name': 'sec'" in journal)
    assert invoked, "the module's invocation is not in the journal: the check below would prove nothing"
    assert "corralsecret" not in journal and "plainCorralSecret" not in journal
    assert host.ssh("test -e /var/lib/machines/sec", check=False).returncode != 0, "check mode created a root"


def test_after_a_reboot_the_fleet_comes_back_without_ansible(fleet_hosts, inventory):
    host = fleet_hosts[0]
    host.reboot()
    for machine in MACHINES:
        state = host.ssh(f"timeout 90 sh -c 'until systemctl -M {machine} is-system-running --wait; do sleep 1; done'",
                         check=False, timeout=120).stdout
        assert state.strip().splitlines()[-1:] in (["running"], ["degraded"]), f"{machine} after reboot: {state}"
    ping = in_machine(host, "web", f"ping -c1 -W3 {ADDRESSES['app']}")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    run = site(inventory)
    assert run.recap[host.name]["changed"] == 0, run.stdout[-4000:]
