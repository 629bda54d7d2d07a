# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How often machine_io asks a booting container (issue 15: a first converge waits for its containers)."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import machine_io
from ansible_collections.corral.nspawn.tests.unit.fakes import FakeModule

IS_RUNNING = ("systemctl", "--machine", "web1", "is-system-running")
SHOW = ("systemctl", "show")
ACTIVE = (0, "Id=systemd-nspawn@web1.service\nActiveState=active\n", "")


@pytest.fixture
def pauses(monkeypatch):
    slept = []
    monkeypatch.setattr(machine_io.time, "sleep", slept.append)
    return slept


def test_the_first_questions_come_soon_then_once_per_poll(pauses):
    module = FakeModule(answers={IS_RUNNING: [(1, "starting\n", "")] * 6 + [(0, "running\n", "")], SHOW: ACTIVE})
    result = machine_io.wait_running(module, "web1", timeout=30, poll=1.0)
    assert result.ok and result.state == "running"
    assert pauses == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


@pytest.mark.parametrize("poll, expected", [(0.05, [0.05, 0.05]), (0, [0, 0])])
def test_a_poll_shorter_than_the_first_pause_is_kept(pauses, poll, expected):
    module = FakeModule(answers={IS_RUNNING: [(1, "starting\n", "")] * 2 + [(0, "running\n", "")], SHOW: ACTIVE})
    assert machine_io.wait_running(module, "web1", timeout=30, poll=poll).ok
    assert pauses == expected


def test_the_timeout_still_ends_the_wait_with_the_same_message(monkeypatch, pauses):
    """The clock moves only by the pauses: timeout 1 s is passed after 0.1 + 0.2 + 0.4 + 0.8 s."""
    monkeypatch.setattr(machine_io.time, "monotonic", lambda: sum(pauses))
    module = FakeModule(answers={IS_RUNNING: (1, "starting\n", ""), SHOW: ACTIVE, ("journalctl",): (0, "", "")})
    result = machine_io.wait_running(module, "web1", timeout=1, poll=1.0)
    assert not result.ok
    assert "its systemd did not report running within 1 s (last state 'starting')" in result.msg
    assert pauses == [0.1, 0.2, 0.4, 0.8]
