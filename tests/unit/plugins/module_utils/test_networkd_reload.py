# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""networkctl reload is retried on a D-Bus timeout (seen on a fresh host whose networkd had just started)."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import systemd
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError


def scripted(errors):
    calls = []

    def runner(_module, argv):
        calls.append(argv)
        if errors:
            raise CommandError(argv, 1, "", errors.pop(0))
        return 0, "", ""
    return runner, calls


def test_timeouts_are_retried(monkeypatch):
    monkeypatch.setattr(systemd.time, "sleep", lambda _s: None)
    runner, calls = scripted(["Failed to reload network settings: Connection timed out"] * 2)
    systemd.networkd_reload(None, runner)
    assert calls == [["networkctl", "reload"]] * 3


def test_other_errors_and_endless_timeouts_fail(monkeypatch):
    monkeypatch.setattr(systemd.time, "sleep", lambda _s: None)
    runner, calls = scripted(["Failed to reload network settings: Access denied"])
    with pytest.raises(CommandError, match="Access denied"):
        systemd.networkd_reload(None, runner)
    assert len(calls) == 1
    runner, calls = scripted(["Connection timed out"] * 10)
    with pytest.raises(CommandError, match="timed out"):
        systemd.networkd_reload(None, runner)
    assert len(calls) == 4
