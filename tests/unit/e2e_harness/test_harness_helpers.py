# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The e2e harness's shared helpers: wait_until (the one poll loop) and in_machine (the one way into a container)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "e2e"))

import harness  # noqa: E402  pylint: disable=wrong-import-position


def counter(succeed_at, value="ready"):
    calls = []

    def probe():
        calls.append(1)
        return value if len(calls) >= succeed_at else ""
    return probe, calls


def test_wait_until_returns_the_first_true_value():
    probe, calls = counter(3)
    assert harness.wait_until(probe, 5, interval=0) == "ready" and len(calls) == 3


def test_wait_until_without_what_returns_the_last_false_value_at_the_deadline():
    probe, calls = counter(10 ** 9)
    assert harness.wait_until(probe, 0, interval=0) == "" and len(calls) >= 1


def test_wait_until_with_what_fails_naming_it():
    probe = counter(10 ** 9)[0]
    with pytest.raises(AssertionError, match="timed out after 0 s waiting for the bridge to come up"):
        harness.wait_until(probe, 0, "the bridge to come up", 0)


class Host:
    def __init__(self):
        self.sent = []

    def ssh(self, cmd, check=True, timeout=120):
        self.sent.append((cmd, check, timeout))
        return "done"


def test_in_machine_runs_through_the_containers_systemd_with_the_argv_as_given():
    host = Host()
    assert harness.in_machine(host, "web", "cat /etc/hostname") == "done"
    assert host.sent == [("systemd-run --machine=web --quiet --wait --pipe --collect -- cat /etc/hostname", False, 60)]


def test_in_machine_shell_line_runs_in_the_containers_sh_quoted_once():
    host = Host()
    harness.in_machine(host, "web", "echo it's > /root/x && cat /root/x", check=True, timeout=5, shell=True)
    assert host.sent == [("systemd-run --machine=web --quiet --wait --pipe --collect -- "
                          "/bin/sh -c 'echo it'\"'\"'s > /root/x && cat /root/x'", True, 5)]


def test_the_test_host_method_is_the_same_helper():
    host = Host()
    harness.TestHost.in_machine(host, "db", "true", check=True)
    assert host.sent == [("systemd-run --machine=db --quiet --wait --pipe --collect -- true", True, 60)]
