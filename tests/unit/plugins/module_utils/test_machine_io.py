# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for machine_io: waiting for containers, start_many, apply, the image lookup and the trusted .nspawn reads."""

import os

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import machine, machine_io
from ansible_collections.corral.nspawn.tests.unit.fakes import FakeModule


def test_settings_mtimes_reads_trusted_dirs_only(tmp_path):
    etc, run = tmp_path / "etc", tmp_path / "run"
    etc.mkdir()
    (etc / "web1.nspawn").write_text("[Exec]\n")
    os.utime(etc / "web1.nspawn", (1234, 1234))
    assert machine_io.settings_mtimes("web1", [str(etc), str(run)]) == [1234.0]


IS_RUNNING = ("systemctl", "--machine", "web1", "is-system-running")


SHOW = ("systemctl", "show")


def test_wait_polls_until_running():
    module = FakeModule(answers={IS_RUNNING: [(1, "", "Failed to connect to bus"), (1, "starting\n", ""),
                                              (0, "running\n", "")],
                                 SHOW: (0, "Id=systemd-nspawn@web1.service\nActiveState=active\n", "")})
    result = machine_io.wait_running(module, "web1", timeout=30, poll=0)
    assert (result.ok, result.state, result.warning) == (True, "running", None)
    assert sum(1 for c in module.calls if tuple(c[:4]) == IS_RUNNING) == 3


def test_degraded_is_ok_with_a_warning_naming_failed_units():
    module = FakeModule(answers={IS_RUNNING: (1, "degraded\n", ""),
                                 ("systemctl", "--machine", "web1", "list-units"): (0, "foo.service loaded failed failed x\n", "")})
    result = machine_io.wait_running(module, "web1", timeout=30, poll=0)
    assert result.ok and result.state == "degraded"
    assert result.warning == "machine web1: its systemd reports degraded (failed units: foo.service)"


def test_timeout_error_carries_the_journal_tail():
    module = FakeModule(answers={IS_RUNNING: (1, "starting\n", ""),
                                 SHOW: (0, "Id=systemd-nspawn@web1.service\nActiveState=active\n", ""),
                                 ("journalctl",): (0, "web1 systemd[1]: Starting slow.service...\n", "")})
    result = machine_io.wait_running(module, "web1", timeout=0, poll=0)
    assert not result.ok
    assert "did not report running within 0 s (last state 'starting')" in result.msg
    assert "Starting slow.service" in result.msg


def test_container_dying_while_booting_fails_early_with_status():
    module = FakeModule(answers={IS_RUNNING: (1, "", "No machine 'web1' known"),
                                 SHOW: (0, "Id=systemd-nspawn@web1.service\nActiveState=failed\n", ""),
                                 ("systemctl", "status"): (3, "Active: failed (Result: exit-code)\n", "")})
    result = machine_io.wait_running(module, "web1", timeout=300, poll=0)
    assert not result.ok and "stopped while booting (unit failed)" in result.msg
    assert "Result: exit-code" in result.msg


def _show_active(names, failed=()):
    return "\n\n".join(f"Id=systemd-nspawn@{n}.service\nActiveState={'failed' if n in failed else 'active'}"
                       for n in names) + "\n"


def test_start_many_starts_in_one_call_and_waits_for_all():
    module = FakeModule(answers={("systemctl", "--machine"): (0, "running\n", "")})
    results = machine_io.start_many(module, ["a", "b", "c"], timeout=10, poll=0)
    assert [c for c in module.calls if c[1] == "start"] == [
        ["systemctl", "start", "systemd-nspawn@a.service", "systemd-nspawn@b.service", "systemd-nspawn@c.service"]]
    assert list(results) == ["a", "b", "c"] and all(r.ok for r in results.values())
    assert module.verbs()[0] == "reset-failed"


def test_start_many_reports_which_container_failed_and_still_waits_for_the_others():
    module = FakeModule(answers={("systemctl", "start"): (1, "", "Job for systemd-nspawn@b.service failed"),
                                 SHOW: (0, _show_active(["a", "b"], failed=["b"]), ""),
                                 ("systemctl", "--machine"): (0, "running\n", ""),
                                 ("journalctl",): (0, "Directory doesn't look like an OS root\n", "")})
    results = machine_io.start_many(module, ["a", "b"], timeout=10, poll=0)
    assert results["a"].ok
    assert not results["b"].ok and "machine b: start failed: Job for" in results["b"].msg
    assert "OS root" in results["b"].msg
    assert results["b"].as_dict()["ok"] is False


def test_start_many_without_wait_does_not_ask_the_containers():
    module = FakeModule()
    results = machine_io.start_many(module, ["a"], timeout=10, wait=False)
    assert results["a"].ok and not any("--machine" in c for c in module.calls)
    assert machine_io.start_many(module, [], timeout=10) == {}


@pytest.mark.parametrize("todo, verbs", [
    (machine.Plan("web1", enable=True, runtime="start"), ["enable", "reset-failed", "start"]),
    (machine.Plan("web1", enable=False, runtime="stop"), ["disable", "stop"]),
    (machine.Plan("web1", runtime="restart"), ["restart"]),
    (machine.Plan("web1"), []),
])
def test_apply_runs_the_planned_commands_only(todo, verbs):
    module = FakeModule()
    machine_io.apply(module, [todo], {"web1": ("none", 10)})
    assert module.verbs() == verbs


def test_restart_failure_returns_a_failed_wait_result_with_journal():
    module = FakeModule(answers={("systemctl", "restart"): (1, "", "Job failed"),
                                 ("journalctl",): (0, "boom\n", "")})
    result = machine_io.apply(module, [machine.Plan("web1", runtime="restart")], {"web1": ("system", 10)})["web1"]
    assert not result.ok and "start failed: Job failed" in result.msg and "boom" in result.msg


def test_image_error_lists_where_it_looked():
    module = FakeModule(answers={("machinectl", "--no-pager", "show-image"): (1, "", "No image")})
    message = machine_io.image_error(module, "nope")
    assert message.startswith("no such image: machine 'nope'") and "/var/lib/machines" in message
    assert machine_io.image_error(FakeModule(answers={("machinectl",): (0, "Path=/var/lib/machines/a\n", "")}), "a") is None


def test_image_os_reads_os_release(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian 12"\n')
    assert machine_io.image_os(str(tmp_path)) == "Debian 12"
    assert machine_io.image_os(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("state, ok, words", [
    ("active", True, "no boot"),
    ("failed", False, "the container's command exited (unit failed)"),
])
def test_a_container_that_does_not_boot_is_waited_for_as_an_active_unit(state, ok, words):
    module = FakeModule(answers={SHOW: (0, _show_active(["job"], failed=["job"] if state == "failed" else []), ""),
                                 ("journalctl",): (0, "Traceback\n", "")})
    result = machine_io.wait_many(module, ["job"], 10, poll=0, how={"job": ("unit", 10)})["job"]
    assert result.ok is ok and words in (result.state if ok else result.msg)
    assert not any("--machine" in c for c in module.calls)


@pytest.mark.parametrize("text, mode", [
    (None, "system"),
    ("[Exec]\nBoot=yes\n", "system"),
    ("[Exec]\nBoot=no\nParameters=/usr/bin/python3 -m http.server 80\n", "unit"),
    ("[Exec]\nProcessTwo=yes\n", "unit"),
    ("[Exec]\nBoot=no\nBoot=yes\n", "system"),   # the last assignment counts, as in systemd
    ("not a unit file", "system"),
])
def test_wait_mode_reads_the_trusted_nspawn_file(tmp_path, text, mode):
    first, second = tmp_path / "etc", tmp_path / "run"
    first.mkdir()
    second.mkdir()
    if text is not None:
        (first / "job.nspawn").write_text(text)
    (second / "job.nspawn").write_text("[Exec]\nBoot=no\n")  # shadowed by the first directory's file
    expected = mode if text is not None else "unit"
    assert machine_io.wait_mode("job", (str(first), str(second))) == expected


@pytest.mark.parametrize("runtime", ["start", "restart"])
def test_the_machine_module_waits_for_the_unit_of_a_container_that_does_not_boot(runtime):
    """Regression (issue 19 item 1, single-purpose module): it asked a systemd that does not exist."""
    module = FakeModule(answers={SHOW: (0, _show_active(["job"]), ""),
                                 ("systemctl", "--machine"): (1, "", "Failed to connect to bus")})
    result = machine_io.apply(module, [machine.Plan("job", runtime=runtime)], {"job": ("unit", 10)})["job"]
    assert result.ok and "no boot" in result.state
    assert not any("--machine" in c for c in module.calls)
