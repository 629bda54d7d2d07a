# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for fleet_plan: the pure per-machine plan (runtime, restart, enablement, reload, prune, diff)."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import fleet, fleet_io, fleet_plan, resources
from ansible_collections.corral.nspawn.plugins.module_utils.files import plan_file
from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.fleet_fakes import FakeHost, FakeModule


def _files(settings_changed=False, dropin_changed=False):
    settings = plan_file("/s", "old" if settings_changed else "same", "same")
    dropin = plan_file("/d", "old" if dropin_changed else "same", "same")
    return settings, dropin


RUNNING = fleet_plan.Current(root_exists=True, active="active", enabled=True)


STOPPED = fleet_plan.Current(root_exists=True, active="inactive", enabled=True)


@pytest.mark.parametrize("state, current, settings_changed, policy, runtime, pending", [
    ("running", RUNNING, False, "on_change", "none", False),       # converged: nothing
    ("running", RUNNING, True, "on_change", "restart", False),     # settings change restarts
    ("running", RUNNING, True, "never", "none", True),             # ... or waits for a restart
    ("running", RUNNING, False, "always", "restart", False),       # always restarts
    ("running", STOPPED, True, "on_change", "start", False),       # a start picks the change up
    ("running", STOPPED, False, "never", "start", False),
    ("stopped", RUNNING, False, "on_change", "stop", False),
    ("stopped", STOPPED, True, "on_change", "none", False),        # stopped: config only
    ("present", RUNNING, True, "never", "none", True),
    ("present", STOPPED, False, "always", "none", False),          # present never starts
])
def test_runtime_plan(state, current, settings_changed, policy, runtime, pending):
    machine = fleet.Machine("m", state=state, enabled=True)
    plan = fleet_plan.plan_machine(machine, current, *_files(settings_changed), None, policy)
    assert (plan.runtime, plan.pending_restart) == (runtime, pending)
    assert plan.changed is bool(settings_changed or runtime != "none")


def test_resource_change_is_applied_live_without_restart():
    machine = fleet.Machine("m")
    live = resources.plan_live({"MemoryMax": "1G"}, {"MemoryMax": "512M"}, {"MemoryMax": str(512 * 1024 ** 2)})
    plan = fleet_plan.plan_machine(machine, RUNNING, *_files(dropin_changed=True), None, "on_change", live=live)
    assert plan.live.assignments == ["MemoryMax=1G"] and plan.runtime == "none" and not plan.pending_restart
    assert plan.changes == ["resources: update /d"]


def test_live_drift_without_file_change_is_repaired_and_reported():
    live = resources.plan_live({"MemoryMax": "1G"}, {"MemoryMax": "1G"}, {"MemoryMax": "infinity"})
    plan = fleet_plan.plan_machine(fleet.Machine("m"), RUNNING, *_files(), None, "on_change", live=live)
    assert plan.live.assignments == ["MemoryMax=1G"]
    assert plan.changes == ["resources live: MemoryMax: infinity -> 1G"]


def test_limit_that_only_applies_at_start_needs_a_restart():
    live = resources.plan_live({"DeviceAllow": ["/dev/fuse rwm"]}, {}, {})
    plan = fleet_plan.plan_machine(fleet.Machine("m"), RUNNING, *_files(dropin_changed=True), None, "never", live=live)
    assert plan.pending_restart and plan.live is None


def test_settings_change_that_needs_no_restart_does_not_restart():
    plan = fleet_plan.plan_machine(fleet.Machine("m"), RUNNING, *_files(settings_changed=True), None, "on_change",
                                   settings_restart=False)
    assert plan.runtime == "none" and not plan.pending_restart and plan.changed


@pytest.mark.parametrize("enabled, current_enabled, expected", [
    (True, False, True), (False, True, False), (True, True, None),
])
def test_enablement(enabled, current_enabled, expected):
    current = fleet_plan.Current(root_exists=True, active="active", enabled=current_enabled)
    plan = fleet_plan.plan_machine(fleet.Machine("m", enabled=enabled), current, *_files(), None, "on_change")
    assert plan.enable is expected


def test_new_image_starts_but_prepared_image_restarts():
    created = {"changed": True, "created": True, "changes": ["image: clone of t"]}
    plan = fleet_plan.plan_machine(fleet.Machine("m"), fleet_plan.Current(), *_files(), created, "on_change")
    assert plan.runtime == "start" and plan.changes == ["image: clone of t", "enable", "start"]
    prepared = {"changed": True, "created": False, "changes": ["image: host0 address"]}
    plan = fleet_plan.plan_machine(fleet.Machine("m"), RUNNING, *_files(), prepared, "on_change")
    assert plan.runtime == "restart"


def test_plan_prune_only_undeclared_sorted():
    expected = [{"name": "a", "purge": True}, {"name": "c", "purge": True}]
    assert fleet_plan.plan_prune(["c", "a", "b"], ["b"], purge=True) == expected


def test_machine_diff_shows_runtime_before_after():
    plan = fleet_plan.plan_machine(fleet.Machine("m"), STOPPED, *_files(settings_changed=True), None, "on_change")
    diffs = fleet_plan.machine_diff(plan, STOPPED)
    assert diffs[0]["before_header"] == "/s"
    assert diffs[-1]["before"] == "root: present\nenabled: True\nstate: stopped\n"
    assert diffs[-1]["after"] == "root: present\nenabled: True\nstate: running\n"


@pytest.mark.parametrize("policy, runtime, pending, changed", [
    ("never", "none", True, False),        # still pending on the next run, nothing to change
    ("on_change", "restart", False, True),  # the next on_change run applies it
])
def test_pending_restart_survives_the_run_that_caused_it(policy, runtime, pending, changed):
    stale = fleet_plan.Current(root_exists=True, active="active", enabled=True, stale=True)
    plan = fleet_plan.plan_machine(fleet.Machine("m"), stale, *_files(), None, policy)
    assert (plan.runtime, plan.pending_restart, plan.changed) == (runtime, pending, changed)


def test_a_unit_systemd_has_not_reloaded_is_reloaded_before_it_starts(tmp_path):
    """Regression (issue 10, found by tests/e2e/test_faults.py): a drop-in written by a run killed before
    daemon-reload already matched, so no reload happened and the machine started with the old limits."""
    waiting = fleet_plan.Current(root_exists=True, active="inactive", enabled=True, unit={"NeedDaemonReload": "yes"})
    plan = fleet_plan.plan_machine(fleet.Machine("m"), waiting, *_files(), None, "on_change")
    assert plan.reload_needed and plan.runtime == "start"
    assert plan.changes == ["daemon-reload: the unit's files changed on disk since systemd loaded them", "start"]
    assert not fleet_plan.plan_machine(fleet.Machine("m"), STOPPED, *_files(), None, "on_change").reload_needed
    host = FakeHost()
    ctx = fleet_io.Context(FakeModule(host, {}), str(tmp_path), str(tmp_path), str(tmp_path), False, "on_change")
    fleet_io.apply_files(ctx, [plan])
    assert [c[1] for c in host.calls] == ["daemon-reload"]


def test_need_daemon_reload_left_by_set_property_does_not_reload_every_run():
    """Regression (full-suite run): systemd 252 leaves NeedDaemonReload=yes after set-property --runtime;
    reloading for it made every run after a live limit change report a change."""
    desired = resources.ResourcesItem("db", "/etc/systemd/system/systemd-nspawn@db.service.d/50-corral-resources.conf",
                                      {"MemoryMax": "768M"})
    loaded = {"NeedDaemonReload": "yes", "DropInPaths": desired.path, "MemoryMax": str(768 * 1024 ** 2)}
    assert _stale(desired, fleet_plan.Current(unit=loaded)) is False
    # a killed run: the drop-in on disk says 768M, systemd still runs with 512M, or never loaded the file
    assert _stale(desired, fleet_plan.Current(unit=dict(loaded, MemoryMax=str(512 * 1024 ** 2)))) is True
    assert _stale(desired, fleet_plan.Current(unit=dict(loaded, DropInPaths=""))) is True
    assert _stale(desired, fleet_plan.Current(unit=dict(loaded, NeedDaemonReload="no", DropInPaths=""))) is False


def _stale(item, current):
    """The fleet's reload decision for one machine whose drop-in on disk is as planned: the resources plan's."""
    state = resources.ResourcesState(files={item.path: (resources.render_dropin(item.desired), 0o644, None)},
                                     shown={item.name: current.unit})
    return resources.plan([item], state).items[0].stale
