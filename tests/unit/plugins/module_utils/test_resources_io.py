# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for reconciling resource limits: drop-in, one reload, live set-property, verify."""

import os

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import resources, resources_io
from ansible_collections.corral.nspawn.tests.unit.fakes import FakeModule

UNIT = "systemd-nspawn@web1.service"
SHOW = ("systemctl", "show")


class Module(FakeModule):
    """The shared fake module answering ``systemctl show`` with ``shows`` in turn (the last repeating)."""

    def __init__(self, shows, check_mode=False):
        super().__init__(check_mode=check_mode, answers={SHOW: [
            (0, "".join(f"{k}={v}\n" for k, v in dict(Id=UNIT, **props).items()), "") for props in shows]})

    def commands(self, tool=None):
        """The commands other than ``systemctl show``: systemctl's verb and first flag, else the tool."""
        return [c[1:3] if c[0] == "systemctl" else c[:1] for c in super().commands(tool) if tuple(c[:2]) != SHOW]


class limits:  # noqa: N801 - the seam moved (issue 16): read -> plan -> apply, assertions unchanged
    LimitsError = resources_io.LimitsError
    apply_live = staticmethod(resources_io.apply_live)

    @staticmethod
    def reconcile(module, name, desired, units_dir):
        item = resources.ResourcesItem(name, resources.dropin_path(name, units_dir), desired or {})
        plan = resources.plan([item], resources_io.read(module, [item]))
        if not module.check_mode:
            resources_io.apply(module, plan)
        return plan.items[0]


RUNNING = {"ActiveState": "active", "ActiveEnterTimestamp": "@1000", "MemoryMax": "infinity",
           "CPUQuotaPerSecUSec": "infinity", "TasksMax": "16384"}
LIMITED = dict(RUNNING, MemoryMax="268435456", CPUQuotaPerSecUSec="500ms")
DESIRED = resources.normalize({"memory_max": "256M", "cpu_quota": "50%"})


def test_check_mode_predicts_changes_and_writes_nothing(tmp_path):
    module = Module([RUNNING], check_mode=True)
    result = limits.reconcile(module, "web1", DESIRED, str(tmp_path))
    assert result.changed and result.file.action == "create"
    assert result.live.assignments == ["MemoryMax=256M", "CPUQuota=50%"]
    assert not os.listdir(tmp_path) and module.commands() == []


def test_apply_writes_reloads_sets_live_and_verifies_then_is_idempotent(tmp_path):
    module = Module([RUNNING, LIMITED])
    result = limits.reconcile(module, "web1", DESIRED, str(tmp_path))
    assert result.changed and not result.pending_restart
    assert module.commands() == [["daemon-reload"], ["set-property", "--runtime"]]
    assert ["systemctl", "set-property", "--runtime", UNIT, "MemoryMax=256M", "CPUQuota=50%"] in module.calls
    path = resources.dropin_path("web1", str(tmp_path))
    mtime = os.stat(path).st_mtime_ns
    again = Module([LIMITED])
    second = limits.reconcile(again, "web1", DESIRED, str(tmp_path))
    assert not second.changed and again.commands() == [] and os.stat(path).st_mtime_ns == mtime


def test_stopped_container_gets_the_file_and_a_reload_only(tmp_path):
    module = Module([dict(RUNNING, ActiveState="inactive")])
    result = limits.reconcile(module, "web1", DESIRED, str(tmp_path))
    assert result.changed and not result.running and module.commands() == [["daemon-reload"]]


def test_systemd_refusing_a_limit_is_an_error(tmp_path):
    module = Module([RUNNING, RUNNING])  # show after set-property still unlimited
    with pytest.raises(limits.LimitsError, match="MemoryMax: expected 256M, systemd reports 'infinity'"):
        limits.reconcile(module, "web1", DESIRED, str(tmp_path))


def test_removed_limit_goes_back_to_the_units_own_value(tmp_path):
    control = tmp_path / "control" / f"{UNIT}.d"
    control.mkdir(parents=True)
    (control / "50-TasksMax.conf").write_text("[Service]\nTasksMax=300\n")
    (control / "50-MemoryMax.conf").write_text("[Service]\nMemoryMax=256M\n")
    live = resources.plan_live(resources.normalize({"memory_max": "256M"}),
                               resources.normalize({"memory_max": "256M", "tasks_max": 300}),
                               dict(LIMITED, TasksMax="300"))
    assert live.resets == ["TasksMax"]
    module = Module([dict(LIMITED, TasksMax="16384")])
    limits.apply_live(module, "web1", live, control_dir=str(tmp_path / "control"))
    assert sorted(os.listdir(control)) == ["50-MemoryMax.conf"]
    assert module.commands() == [["daemon-reload"], ["set-property", "--runtime"]]
    assert module.calls[-2][-1] == "TasksMax=16384"


def test_restart_only_keys_report_pending_restart(tmp_path):
    desired = resources.normalize({"device_allow": ["/dev/fuse"]})
    result = limits.reconcile(Module([RUNNING], check_mode=True), "web1", desired, str(tmp_path))
    assert result.pending_restart and result.live.assignments == []


def test_absent_removes_file_and_empty_dir(tmp_path):
    limits.reconcile(Module([dict(RUNNING, ActiveState="inactive")]), "web1", DESIRED, str(tmp_path))
    result = limits.reconcile(Module([dict(RUNNING, ActiveState="inactive")]), "web1", {}, str(tmp_path))
    assert result.file.action == "remove" and os.listdir(tmp_path) == []


# A run killed between writing the drop-in and daemon-reload (issue 10): the file on disk is right,
# systemd still runs the unit with what it loaded before. The next run must reload, and say so.
STOPPED_STALE = dict(RUNNING, ActiveState="inactive", NeedDaemonReload="yes", DropInPaths="")


@pytest.mark.parametrize("check_mode", [True, False])
def test_drop_in_on_disk_but_not_loaded_is_reloaded(tmp_path, check_mode):
    limits.reconcile(Module([dict(RUNNING, ActiveState="inactive")]), "web1", DESIRED, str(tmp_path))
    path = resources.dropin_path("web1", str(tmp_path))
    module = Module([STOPPED_STALE], check_mode=check_mode)
    result = limits.reconcile(module, "web1", DESIRED, str(tmp_path))
    assert result.changed and not result.file.changed
    assert any("daemon-reload" in c for c in result.changes), result.changes
    assert module.commands() == ([] if check_mode else [["daemon-reload"]])
    loaded = dict(STOPPED_STALE, DropInPaths=path, MemoryMax="268435456", CPUQuotaPerSecUSec="500ms")
    again = Module([loaded])
    assert not limits.reconcile(again, "web1", DESIRED, str(tmp_path)).changed and again.commands() == []


def test_drop_in_removed_but_still_loaded_is_reloaded(tmp_path):
    path = resources.dropin_path("web1", str(tmp_path))
    module = Module([dict(RUNNING, ActiveState="inactive", NeedDaemonReload="yes", DropInPaths=path,
                          MemoryMax="268435456")])
    result = limits.reconcile(module, "web1", {}, str(tmp_path))
    assert result.changed and module.commands() == [["daemon-reload"]]


def test_need_daemon_reload_alone_is_no_change(tmp_path):
    """systemd 252 leaves NeedDaemonReload=yes after set-property --runtime: that alone never converges."""
    limits.reconcile(Module([dict(RUNNING, ActiveState="inactive")]), "web1", DESIRED, str(tmp_path))
    path = resources.dropin_path("web1", str(tmp_path))
    module = Module([dict(LIMITED, NeedDaemonReload="yes", DropInPaths=path)])
    assert not limits.reconcile(module, "web1", DESIRED, str(tmp_path)).changed and module.commands() == []
