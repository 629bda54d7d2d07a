# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""corral.nspawn.machine on a real test host: boot, limits, bind mount, enablement across a reboot.

One container with a .nspawn file (host-dir bind mount, Environment, Hostname) and limits
(MemoryMax 256M, CPUQuota 50%), enabled and running; then stop/restart, a timeout with the
journal tail in the error, and a bad-input table.
"""

import calendar
import functools
import shlex
import time

import pytest

from harness import in_machine

NAME = "m1"
UNIT = f"systemd-nspawn@{NAME}.service"
SETTINGS = """# Managed by corral.nspawn (test)
[Exec]
Hostname=m1box
Environment=CORRAL_PROBE=hello-m1

[Files]
Bind=/srv/m1-share:/mnt/share
"""


# These tests' commands must succeed in the container.
inside = functools.partial(in_machine, check=True)


def unit_props(host, *props):
    out = host.ssh(f"systemctl show --timestamp=unix -p {','.join(props)} {UNIT}").stdout
    return dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)


def add_image(host, name):
    # The image's /etc/hostname ('localhost') would override Hostname= of the .nspawn file once the
    # container's systemd boots; the image module removes it on first-boot preparation, do the same here.
    host.ssh(f"rm -rf /var/lib/machines/{name} && cp -a --reflink=auto /srv/corral/images/debian12 "
             f"/var/lib/machines/{name} && rm -f /var/lib/machines/{name}/etc/hostname")


def remove_machine(host, name):
    host.ssh(f"systemctl disable --now systemd-nspawn@{name}.service; machinectl terminate {name}; "
             f"rm -rf /var/lib/machines/{name} /etc/systemd/nspawn/{name}.nspawn "
             f"/etc/systemd/system/systemd-nspawn@{name}.service.d; systemctl daemon-reload", check=False)


@pytest.fixture(scope="module")
def host(make_host):
    host = make_host("mach-a")
    add_image(host, NAME)
    host.ssh("mkdir -p /etc/systemd/nspawn /srv/m1-share && echo shared-from-host > /srv/m1-share/probe.txt "
             "&& chmod 755 /srv/m1-share && chmod 644 /srv/m1-share/probe.txt")
    host.run("ansible.builtin.copy", {"dest": f"/etc/systemd/nspawn/{NAME}.nspawn", "content": SETTINGS, "mode": "0644"})
    limits = host.run("resources", {"name": NAME, "memory_max": "256M", "cpu_quota": "50%"})
    assert limits["changed"] and not limits["running"], limits
    yield host
    remove_machine(host, NAME)


def test_running_enabled_rhythm_boots_the_container(host):
    args = {"name": NAME, "state": "running", "enabled": True, "timeout": 120}

    def after(index, result):
        if index == 0:
            assert result["diff"]["after"] == {"state": "running", "enabled": True}
            # check mode started nothing and enabled nothing
            assert host.ssh(f"systemctl is-active {UNIT}", check=False).stdout.strip() == "inactive"
            assert host.ssh(f"systemctl is-enabled {UNIT}", check=False).stdout.strip() == "disabled"
        if index == 1:
            assert result["system_state"] in ("running", "degraded"), result
    _first, second, _third, fourth = host.rhythm("machine", args, after=after)
    assert fourth["main_pid"] == second["main_pid"] > 0
    assert host.ssh(f"systemctl is-enabled {UNIT}").stdout.strip() == "enabled"


def test_limits_bind_mount_env_and_hostname_are_in_effect(host):
    props = unit_props(host, "MemoryMax", "CPUQuotaPerSecUSec")
    assert props == {"MemoryMax": str(256 * 1024 ** 2), "CPUQuotaPerSecUSec": "500ms"}
    assert inside(host, NAME, "cat /mnt/share/probe.txt").stdout.strip() == "shared-from-host"
    assert inside(host, NAME, "hostname").stdout.strip() == "m1box"
    environ = inside(host, NAME, "cat /proc/1/environ").stdout.split("\0")
    assert "CORRAL_PROBE=hello-m1" in environ


def test_machine_info_reports_the_container(host):
    info = host.run("machine_info", {"name": [NAME]})
    (entry,) = info["machines"]
    assert (entry["state"], entry["enabled"], entry["root"]) == ("running", True, f"/var/lib/machines/{NAME}")
    assert entry["settings"]["Files"]["Bind"] == "/srv/m1-share:/mnt/share"
    assert entry["resources"] == {"MemoryMax": "256M", "CPUQuota": "50%"}
    assert entry["limits"]["MemoryMax"] == str(256 * 1024 ** 2)
    assert entry["os"].startswith("Debian")


def test_container_comes_back_after_a_host_reboot(host):
    host.reboot()
    waited = host.run("machine", {"name": NAME, "state": "running", "timeout": 120})
    assert not waited["changed"] and waited["system_state"] in ("running", "degraded"), waited
    assert unit_props(host, "MemoryMax")["MemoryMax"] == str(256 * 1024 ** 2)
    assert inside(host, NAME, "cat /mnt/share/probe.txt").stdout.strip() == "shared-from-host"


def test_settings_written_after_start_report_pending_restart_until_restarted(host):
    host.ssh(f"sleep 1; touch /etc/systemd/nspawn/{NAME}.nspawn")
    before = host.run("machine", {"name": NAME, "state": "running"})
    assert not before["changed"] and before["pending_restart"], before
    restarted = host.run("machine", {"name": NAME, "state": "restarted", "timeout": 120})
    assert restarted["changed"] and not restarted["pending_restart"], restarted
    assert restarted["main_pid"] != before["main_pid"]
    again = host.run("machine", {"name": NAME, "state": "restarted", "timeout": 120})
    assert again["changed"], "restarted always restarts"


def test_settings_written_in_the_second_the_container_started_are_pending(host):
    """Regression: pending_restart compared whole seconds, so a .nspawn written after the start but
    within the same second (fast automation) was taken as read by the running container."""
    host.run("machine", {"name": NAME, "state": "restarted", "timeout": 120})
    shown = host.ssh(f"systemctl show -P ActiveEnterTimestamp --timestamp=us+utc {UNIT}").stdout.split()
    whole, micros = shown[2].split(".")
    seconds = int(calendar.timegm(time.strptime(f"{shown[1]} {whole}", "%Y-%m-%d %H:%M:%S")))
    micros = int(micros)
    assert micros < 999999, f"started at {shown}: no later instant in that second, re-run"
    # the file's mtime: after the start, in the same second
    host.ssh(f"touch -d @{seconds}.999999 /etc/systemd/nspawn/{NAME}.nspawn")
    result = host.run("machine", {"name": NAME, "state": "running"})
    assert result["pending_restart"], (shown, result)


def test_stopped_disabled_rhythm(host):
    args = {"name": NAME, "state": "stopped", "enabled": False}
    host.rhythm("machine", args, diff=False)
    assert host.ssh(f"systemctl is-active {UNIT}", check=False).stdout.strip() in ("inactive", "failed")
    assert host.ssh(f"systemctl is-enabled {UNIT}", check=False).stdout.strip() == "disabled"


SLOW_UNIT = """[Unit]
Description=keeps boot from finishing
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo corral-slow-boot-marker; sleep 600'
[Install]
WantedBy=multi-user.target
"""


def test_timeout_error_carries_the_journal_tail(host):
    add_image(host, "mslow")
    root = "/var/lib/machines/mslow"
    host.ssh(f"printf %s {shlex.quote(SLOW_UNIT)} > {root}/etc/systemd/system/slow.service && "
             f"ln -sf /etc/systemd/system/slow.service {root}/etc/systemd/system/multi-user.target.wants/")
    try:
        result = host.module("machine", {"name": "mslow", "state": "running", "timeout": 8})
        assert result.get("failed"), result
        assert "machine mslow: its systemd did not report running within 8 s" in result["msg"]
        assert "--- journalctl -u systemd-nspawn@mslow.service" in result["msg"]
        assert "systemd-nspawn@mslow.service - Container mslow" in result["msg"]
    finally:
        remove_machine(host, "mslow")


def test_failed_start_reports_unit_status_and_journal(host):
    host.ssh("mkdir -p /var/lib/machines/mbroken")
    try:
        result = host.module("machine", {"name": "mbroken", "state": "running"})
        assert result.get("failed") and "machine mbroken: start failed" in result["msg"], result
        assert "doesn't look like an OS root directory" in result["msg"]
    finally:
        remove_machine(host, "mbroken")


@pytest.mark.parametrize("args, fragments", [
    ({"name": "nope", "state": "running"}, ["no such image: machine 'nope'", "/var/lib/machines"]),
    ({"name": "bad name", "state": "stopped"}, ["name: 'bad name' is not a valid machine name"]),
    ({"name": NAME, "state": "paused"}, ["value of state must be one of: running, stopped, restarted"]),
    ({"name": NAME}, ["one of the following is required: state, enabled"]),
    ({"name": NAME, "state": "running", "timeout": 0}, ["timeout: 0 is not allowed"]),
])
def test_bad_input_fails_before_any_change(host, args, fragments):
    before = host.ssh(f"systemctl show -p ActiveState,UnitFileState {UNIT}").stdout
    result = host.module("machine", args)
    assert result.get("failed"), result
    for fragment in fragments:
        assert fragment in result["msg"], result["msg"]
    assert host.ssh(f"systemctl show -p ActiveState,UnitFileState {UNIT}").stdout == before


def test_machined_unavailable_is_a_clear_error(host):
    host.ssh("systemctl mask --runtime --now systemd-machined.service")
    try:
        result = host.module("machine", {"name": NAME, "state": "running"})
        assert result.get("failed") and "systemd-machined is not available" in result["msg"], result
    finally:
        host.ssh("systemctl unmask --runtime systemd-machined.service")
