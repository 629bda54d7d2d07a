# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""networkctl reload when networkd does not answer on D-Bus (seen on a fresh host under two concurrent runs)."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import systemd
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError


def scripted(errors):
    calls = []

    def runner(_module, argv):
        calls.append(argv)
        error = errors.pop(0) if errors else None
        if error:
            raise CommandError(argv, 1, "", error)
        return 0, "", ""
    return runner, calls


@pytest.mark.parametrize("error", ["Failed to reload network settings: Connection timed out",
                                   "Failed to reload network settings: Message recipient disconnected from message bus "
                                   "without replying"])
def test_a_timeout_restarts_networkd_once_and_retries(monkeypatch, error):
    monkeypatch.setattr(systemd.time, "sleep", lambda _s: None)
    runner, calls = scripted([error])
    systemd.networkd_reload(None, runner)
    assert calls == [["networkctl", "reload"], ["systemctl", "restart", "systemd-networkd.service"],
                     ["networkctl", "reload"]]


def test_other_errors_and_endless_timeouts_fail(monkeypatch):
    monkeypatch.setattr(systemd.time, "sleep", lambda _s: None)
    runner, calls = scripted(["Failed to reload network settings: Access denied"])
    with pytest.raises(CommandError, match="Access denied"):
        systemd.networkd_reload(None, runner)
    assert len(calls) == 1
    runner, calls = scripted(["Connection timed out", None, "Connection timed out", None, "Connection timed out"])
    with pytest.raises(CommandError, match="timed out"):
        systemd.networkd_reload(None, runner)
    assert [c[0] for c in calls] == ["networkctl", "systemctl", "networkctl", "systemctl", "networkctl"]
