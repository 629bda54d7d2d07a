# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for machine.py: runtime planning, pending restarts, timestamps and the info description (machine_io: test_machine_io.py)."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import machine


def current(active="inactive", enabled=False, target=True, since=None):
    return machine.Current("web1", active=active, enabled=enabled, target_enabled=target, since=since)


# ---------------------------------------------------------------- plan

@pytest.mark.parametrize("state, enabled, now, runtime, enable", [
    ("running", None, current(), "start", None),
    ("running", None, current("active"), "none", None),
    ("running", None, current("activating"), "none", None),
    ("running", None, current("failed"), "start", None),
    ("running", None, current("deactivating"), "start", None),
    ("stopped", None, current("active"), "stop", None),
    ("stopped", None, current("failed"), "none", None),
    ("stopped", None, current(), "none", None),
    ("restarted", None, current("active"), "restart", None),
    ("restarted", None, current(), "start", None),
    (None, True, current(), "none", True),
    (None, True, current(enabled=True), "none", None),
    (None, True, current(enabled=True, target=False), "none", True),
    (None, False, current(enabled=True), "none", False),
    (None, False, current(), "none", None),
    ("running", True, current("active", enabled=True), "none", None),
])
def test_plan_table(state, enabled, now, runtime, enable):
    todo = machine.plan("web1", state, enabled, now)
    assert (todo.runtime, todo.enable) == (runtime, enable)
    assert todo.changed == (runtime != "none" or enable is not None)


def test_plan_describes_changes_in_words():
    todo = machine.plan("web1", "running", True, current())
    assert todo.changes == ["enable systemd-nspawn@web1.service (machines.target)",
                            "start systemd-nspawn@web1.service"]


def test_current_from_show():
    now = machine.current_from_show("web1", {"ActiveState": "active", "UnitFileState": "enabled", "MainPID": "42",
                                             "ActiveEnterTimestamp": "@1700000000"},
                                    {"UnitFileState": "disabled"})
    assert (now.running, now.enabled, now.target_enabled, now.main_pid, now.since) == \
        (True, True, False, 42, 1700000000)
    empty = machine.current_from_show("web1", {"ActiveEnterTimestamp": "n/a"}, {})
    assert (empty.running, empty.enabled, empty.target_enabled, empty.since) == (False, False, True, None)


@pytest.mark.parametrize("active, since, mtimes, pending", [
    ("active", 1000, [1001.5], True),
    ("active", 1000, [1000.9], True),    # regression: written 0.9 s after the start (whole seconds said no)
    ("active", 1000.5, [1000.2], False),  # written in the same second, before the start
    ("active", 1000, [999.0], False),
    ("active", 1000, [], False),
    ("inactive", 1000, [2000.0], False),
    ("active", None, [2000.0], False),
])
def test_pending_restart(active, since, mtimes, pending):
    assert machine.pending_restart(current(active, since=since), mtimes) is pending


# ---------------------------------------------------------------- info

def test_describe_merges_machined_unit_and_files():
    entry = machine.describe(
        "web1", {"name": "web1", "type": "directory", "ro": False, "usage": None, "path": "/var/lib/machines/web1"},
        {"machine": "web1", "os": "debian", "version": "12", "addresses": "10.0.0.2\nfe80::1"},
        {"ActiveState": "active", "UnitFileState": "enabled", "MainPID": "42"},
        "/etc/systemd/nspawn/web1.nspawn", "[Exec]\nBoot=yes\n[Files]\nBind=/a\nBind=/b\n",
        "/x/50-corral-resources.conf", {"MemoryMax": "256M"}, None)
    assert entry["state"] == "running" and entry["enabled"] and entry["main_pid"] == 42
    assert entry["addresses"] == ["10.0.0.2", "fe80::1"] and entry["os"] == "debian 12"
    assert entry["settings"] == {"Exec": {"Boot": "yes"}, "Files": {"Bind": ["/a", "/b"]}}
    assert entry["resources"] == {"MemoryMax": "256M"} and entry["size"] is None


def test_describe_stopped_image_without_files():
    entry = machine.describe("db", {"name": "db", "usage": 2 ** 64 - 1}, None, {"ActiveState": "inactive"},
                             "/etc/systemd/nspawn/db.nspawn", None, "/x", {}, "Debian GNU/Linux 12 (bookworm)")
    assert (entry["state"], entry["settings_path"], entry["resources_path"], entry["size"]) == \
        ("stopped", None, None, None)
    assert entry["os"] == "Debian GNU/Linux 12 (bookworm)" and entry["addresses"] == []


@pytest.mark.parametrize("shown, since", [
    ("Sun 2026-11-29 10:47:56.658517 UTC", 1795949276.658517),
    ("@1700000000", 1700000000.0),
    ("n/a", None), ("", None), ("Sun 2026-11-29 10:47:56 UTC", None),
])
def test_parse_timestamp_keeps_microseconds(shown, since):
    parsed = machine.parse_timestamp(shown)
    assert parsed == since if since is None else abs(parsed - since) < 1e-6


@pytest.mark.parametrize("settings_dir, dirs", [
    ("/etc/systemd/nspawn", ("/etc/systemd/nspawn", "/run/systemd/nspawn")),
    ("/srv/nspawn", ("/srv/nspawn", "/run/systemd/nspawn")),           # in place of /etc, as the fleet reads it
    ("/run/systemd/nspawn/", ("/etc/systemd/nspawn", "/run/systemd/nspawn")),  # systemd reads /etc first
])
def test_settings_dirs_put_settings_dir_in_place_of_etc(settings_dir, dirs):
    assert machine.settings_dirs(settings_dir) == dirs
    assert machine.settings_dirs() == machine.SETTINGS_DIRS
