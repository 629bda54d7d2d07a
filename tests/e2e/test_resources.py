# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""corral.nspawn.resources on a real test host: drop-in, daemon-reload, live limits without restart."""

import pytest

NAME = "r1"
UNIT = f"systemd-nspawn@{NAME}.service"
DROPIN = f"/etc/systemd/system/{UNIT}.d/50-corral-resources.conf"
MIB = 1024 ** 2


def show(host, *props):
    out = host.ssh(f"systemctl show --timestamp=unix -p {','.join(props)} {UNIT}").stdout
    return dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)


def file_state(host):
    """(mtime in ns, mode, sha256) of the drop-in, or None when absent."""
    return host.stat(DROPIN)


def reload_count(host):
    # every daemon-reload logs "Reloading." in the host's journal
    return int(host.ssh("journalctl -b -o cat _PID=1 | grep -c '^Reloading' || true").stdout.strip() or 0)


@pytest.fixture(scope="module")
def host(make_host):
    host = make_host("res-a")
    host.ssh(f"rm -rf /var/lib/machines/{NAME} && cp -a --reflink=auto /srv/corral/images/debian12 "
             f"/var/lib/machines/{NAME}")
    started = host.run("machine", {"name": NAME, "state": "running", "timeout": 120})
    assert started["changed"], started
    yield host
    # wait (bounded) until the machine is gone before removing its root
    host.ssh(f"machinectl terminate {NAME}; for i in $(seq 1 100); do machinectl show {NAME} >/dev/null 2>&1 || break; "
             f"sleep 0.2; done; rm -rf /var/lib/machines/{NAME} /etc/systemd/system/{UNIT}.d "
             f"/run/systemd/system.control/{UNIT}.d; systemctl daemon-reload", check=False)


def test_rhythm_on_a_running_container_applies_live_without_restart(host):
    args = {"name": NAME, "memory_max": "256M", "cpu_quota": "50%", "tasks_max": 500}
    before = show(host, "MainPID", "ActiveEnterTimestamp", "MemoryMax")
    reloads = reload_count(host)
    seen = {}

    def after(index, result):
        seen[index] = (file_state(host), reload_count(host))
        if index == 0:
            assert result["live"] == ["MemoryMax=256M", "CPUQuota=50%", "TasksMax=500"], result
            assert "MemoryMax=256M" in result["diff"]["after"]
            assert seen[0] == (None, reloads) and show(host, "MemoryMax")["MemoryMax"] == "infinity", "check mode wrote"
        if index == 1:
            assert result["running"] and not result["pending_restart"], result
            assert seen[1][1] == reloads + 1
        if index > 1:
            assert seen[index] == seen[1], "idempotent run touched the host"
    host.rhythm("resources", args, after=after)
    after = show(host, "MainPID", "ActiveEnterTimestamp", "MemoryMax", "CPUQuotaPerSecUSec", "TasksMax")
    assert after == dict(before, MemoryMax=str(256 * MIB), CPUQuotaPerSecUSec="500ms", TasksMax="500")


def test_equivalent_units_are_no_change(host):
    result = host.run("resources", {"name": NAME, "memory_max": str(256 * MIB), "cpu_quota": "50.00%",
                                    "tasks_max": "500"})
    assert not result["changed"], result


def test_changing_memory_max_on_a_running_container_needs_no_restart(host):
    before = show(host, "MainPID", "ActiveEnterTimestamp")
    result = host.run("resources", {"name": NAME, "memory_max": "384M", "cpu_quota": "50%", "tasks_max": 500})
    assert result["changed"] and result["live"] == ["MemoryMax=384M"], result
    assert show(host, "MemoryMax")["MemoryMax"] == str(384 * MIB)
    assert show(host, "MainPID", "ActiveEnterTimestamp") == before
    assert "MemoryMax=384M" in host.ssh(f"cat {DROPIN}").stdout


def test_removed_limit_returns_to_the_units_own_value(host):
    result = host.run("resources", {"name": NAME, "memory_max": "384M", "cpu_quota": "50%"})
    assert result["changed"] and "TasksMax=" in result["live"], result
    assert show(host, "TasksMax")["TasksMax"] == "16384"  # systemd-nspawn@.service's own TasksMax


def test_restart_only_keys_report_pending_restart(host):
    args = {"name": NAME, "memory_max": "384M", "cpu_quota": "50%", "device_allow": ["/dev/fuse rw"]}
    result = host.run("resources", args)
    assert result["changed"] and result["pending_restart"] and result["live"] == [], result
    again = host.run("resources", args)
    assert not again["changed"] and again["pending_restart"], "still waiting for a restart"
    host.run("machine", {"name": NAME, "state": "restarted", "timeout": 120})
    after = host.run("resources", args)
    assert not after["changed"] and not after["pending_restart"], after
    assert "DeviceAllow=/dev/fuse rw\n" in host.ssh(f"systemctl show -p DeviceAllow {UNIT}").stdout


def test_machine_info_shows_dropin_and_live_values(host):
    (entry,) = host.run("machine_info", {"name": [NAME]})["machines"]
    assert entry["resources"] == {"MemoryMax": "384M", "CPUQuota": "50%", "DeviceAllow": ["/dev/fuse rw"]}
    assert entry["limits"]["MemoryMax"] == str(384 * MIB) and entry["state"] == "running"


def test_absent_rhythm_removes_file_and_lifts_limits(host):
    args = {"name": NAME, "state": "absent"}
    host.rhythm("resources", args, diff=False)
    assert file_state(host) is None
    assert show(host, "MemoryMax", "CPUQuotaPerSecUSec") == {"MemoryMax": "infinity", "CPUQuotaPerSecUSec": "infinity"}


def test_units_dir_rhythm_writes_the_dropin_there_only(host):
    """issue 13: the shared units_dir option (a machine that is not running: nothing live, nothing in /etc)."""
    units_dir, name = "/tmp/corral-r9-units", "r9"
    dropin = f"{units_dir}/systemd-nspawn@{name}.service.d/50-corral-resources.conf"
    results = host.rhythm("resources", {"name": name, "units_dir": units_dir, "memory_max": "256M"},
                          fingerprint=lambda: host.fingerprint(extra=[dropin]))
    assert {r["path"] for r in results} == {dropin} and not results[1]["running"], results[1]
    assert "MemoryMax=256M" in host.ssh(f"cat {dropin}").stdout
    assert host.ssh(f"test -e /etc/systemd/system/systemd-nspawn@{name}.service.d", check=False).returncode != 0
    host.ssh(f"rm -rf {units_dir}", check=False)


@pytest.mark.parametrize("args, fragments", [
    ({"memory_max": "2g"}, ["memory_max: invalid value '2g'", "K, M, G, T suffix"]),
    ({"cpu_quota": "50"}, ["cpu_quota: invalid value '50'", "'50%'"]),
    ({"cpu_weight": 0}, ["cpu_weight: invalid value 0", "1..10000"]),
    ({"allowed_cpus": "3-1"}, ["allowed_cpus: invalid value '3-1'"]),
    ({"tasks_max": -5}, ["tasks_max: invalid value -5"]),
    ({"device_allow": ["/dev/fuse rwx"]}, ["device_allow: invalid '/dev/fuse rwx'", "r, w, m"]),
    ({"io_read_bandwidth_max": ["sda 1M"]}, ["io_read_bandwidth_max: invalid 'sda 1M'", "PATH RATE"]),
    ({"extra": {"MemoryMax": "1G"}}, ["extra: MemoryMax has its own option, use memory_max"]),
    ({"extra": {"lower": "1"}}, ["extra: key 'lower' is not a systemd key name"]),
    ({"memory_max": "1G", "name": "bad/name"}, ["name: 'bad/name' is not a valid machine name"]),
])
def test_bad_input_fails_and_leaves_no_file(host, args, fragments):
    result = host.module("resources", dict({"name": NAME}, **args))
    assert result.get("failed"), result
    for fragment in fragments:
        assert fragment in result["msg"], result["msg"]
    assert file_state(host) is None
    assert host.ssh(f"test -e /etc/systemd/system/{UNIT}.d", check=False).returncode != 0
