# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""corral.nspawn.fleet's promises that no other test ran, on one test host ("prm2").

Machines rst (running), pst (``state: present``) and prg (running, later pruned with purge),
cloned from one template. ``restart: never`` leaves a changed machine running and reports it;
``restart: always`` restarts every running machine on every run (and only running ones);
``state: present`` leaves the runtime state alone in both directions; ``purge`` removes the
root of a pruned machine and nothing else. Whether a machine restarted is read from outside:
the PID of its leader and the environment of its init.

Tests build on each other in file order; run the file as a whole.
"""

import copy

import pytest

from harness import wait_until
from promised import check_run, inside, ok, prepare, rhythm

TEMPLATES = [{"name": "prmtmpl", "source": "directory", "path": "/srv/corral/images/debian12"}]
MACHINES = [
    {"name": "rst", "state": "running"},
    {"name": "pst", "state": "present"},
    {"name": "prg", "state": "running"},
]


def fleet_args(machines=None, **extra) -> dict:
    return {"templates": TEMPLATES, "defaults": {"template": "prmtmpl", "enabled": False},
            "machines": copy.deepcopy(machines if machines is not None else MACHINES), **extra}


def with_env(machines, name, value, **extra):
    """``machines`` with Environment=PRM=value (a change that needs a restart) on ``name``."""
    machines = copy.deepcopy(machines)
    for machine in machines:
        if machine["name"] == name:
            machine.setdefault("settings", {})["environment"] = {"PRM": value}
            machine.update(extra)
    return machines


def leader(host, name) -> str:
    return host.ssh(f"machinectl show -p Leader --value {name}", check=False).stdout.strip()


def active(host, name) -> str:
    return host.ssh(f"systemctl is-active systemd-nspawn@{name}.service", check=False).stdout.strip()


def init_env(host, name) -> str:
    """PRM=... as the container's init sees it: set only by a (re)start after the change."""
    env = host.ssh(f"tr '\\0' '\\n' < /proc/{leader(host, name)}/environ").stdout
    return next((line for line in env.splitlines() if line.startswith("PRM=")), "")


@pytest.fixture(scope="module")
def host(make_host):
    host = make_host("prm2")
    prepare(host)
    return host


def test_converge_state_present_creates_but_does_not_start(host):
    results = rhythm(host, "fleet", fleet_args())
    assert results[1]["machines"]["pst"]["state"] == "stopped", results[1]["machines"]
    assert active(host, "rst") == active(host, "prg") == "active"
    assert active(host, "pst") == "inactive"
    assert host.ssh("test -x /var/lib/machines/pst/lib/systemd/systemd && test -f /etc/systemd/nspawn/pst.nspawn",
                    check=False).returncode == 0


def test_restart_never_leaves_the_machine_running_and_reports_it(host):
    pid = leader(host, "rst")
    machines = with_env(MACHINES, "rst", "1", restart="never")
    results = rhythm(host, "fleet", fleet_args(machines))
    assert [r["pending_restart"] for r in results] == [["rst"]] * 4, [r["pending_restart"] for r in results]
    assert results[1]["machines"]["rst"]["changes"] == ["settings: update /etc/systemd/nspawn/rst.nspawn"], results[1]
    assert "Environment=PRM=1" in host.ssh("cat /etc/systemd/nspawn/rst.nspawn").stdout
    assert leader(host, "rst") == pid, "restart: never restarted the machine"
    assert init_env(host, "rst") == "", "the running init has the new environment without a restart?"


def test_restart_always_restarts_every_running_machine_on_every_run(host):
    machines = with_env(MACHINES, "rst", "1")
    pids = {name: leader(host, name) for name in ("rst", "prg")}
    check = check_run(host, "fleet", fleet_args(machines, restart="always"))
    assert check["changed"] and {n: leader(host, n) for n in pids} == pids, "check mode restarted a machine"
    seen = [pids]
    for _run in range(2):
        result = ok(host.module("fleet", fleet_args(machines, restart="always")))
        assert result["changed"], result
        assert result["machines"]["rst"]["changes"] == result["machines"]["prg"]["changes"] == ["restart"], result
        assert result["machines"]["pst"]["changed"] is False, result["machines"]["pst"]
        now = {name: leader(host, name) for name in pids}
        assert all(now[n] and now[n] != seen[-1][n] for n in pids), f"not restarted: {seen[-1]} -> {now}"
        seen.append(now)
    assert init_env(host, "rst") == "PRM=1"
    assert active(host, "pst") == "inactive", "restart: always started a machine that was not running"
    settled = ok(host.module("fleet", fleet_args(machines)))
    assert not settled["changed"] and settled["pending_restart"] == [], settled


def test_state_present_leaves_the_runtime_state_alone(host):
    machines = with_env(MACHINES, "rst", "1")
    host.ssh("machinectl start pst")
    wait_until(lambda: inside(host, "pst", "systemctl is-system-running").stdout.strip() in ("running", "degraded"),
               90, "pst to boot (started by hand)")
    pid = leader(host, "pst")
    result = ok(host.module("fleet", fleet_args(machines)))
    assert not result["changed"] and result["machines"]["pst"]["state"] == "running", result
    assert leader(host, "pst") == pid
    host.ssh("machinectl poweroff pst")
    wait_until(lambda: active(host, "pst") == "inactive", 60, "pst to power off")
    result = ok(host.module("fleet", fleet_args(machines)))
    assert not result["changed"] and result["machines"]["pst"]["state"] == "stopped", result
    assert active(host, "pst") == "inactive"


def test_prune_with_purge_removes_the_undeclared_root_only(host):
    kept = [m for m in with_env(MACHINES, "rst", "1") if m["name"] != "prg"]
    pids = {"rst": leader(host, "rst")}
    args = fleet_args(kept, prune=True, purge=True)
    results = rhythm(host, "fleet", args)
    assert [r["pruned"] for r in results] == [["prg"], ["prg"], [], []], [r["pruned"] for r in results]
    assert host.ssh("test -e /var/lib/machines/prg", check=False).returncode != 0, "purge left prg's root"
    assert host.ssh("ls /etc/systemd/nspawn/prg.nspawn /etc/systemd/system/systemd-nspawn@prg.service.d",
                    check=False).stdout == ""
    assert active(host, "prg") == "inactive"
    remaining = [n for n in host.ssh("ls -A /var/lib/machines").stdout.split() if not n.startswith(".")]
    assert sorted(remaining) == ["prmtmpl", "pst", "rst"], remaining  # (.corral and nspawn's .#NAME.lck aside)
    assert leader(host, "rst") == pids["rst"], "pruning another machine restarted rst"
