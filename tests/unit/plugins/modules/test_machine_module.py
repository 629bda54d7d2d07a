# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""corral.nspawn.machine main(): the shared options settings_dir, wait and timeout (issue 13).

systemd is faked at the module_utils seams; the .nspawn files are real files in tmp_path.
"""

import os

import pytest
from ansible.module_utils import basic
from ansible_collections.corral.nspawn.tests.unit.module_main import run_main, stop_at_exit

from ansible_collections.corral.nspawn.plugins.module_utils import machine as utils, machine_io, systemd
from ansible_collections.corral.nspawn.plugins.modules import machine as module


@pytest.fixture
def host(monkeypatch):
    """A running web1 whose unit started at t=1000; records what the module waits for."""
    seen = {"waits": []}

    stop_at_exit(monkeypatch)
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, msg: None)
    monkeypatch.setattr(systemd, "machined_error", lambda m: None)
    monkeypatch.setattr(machine_io, "image_error", lambda m, name: None)
    monkeypatch.setattr(machine_io, "read_current", lambda m, name: utils.Current(name, "active", "running", True,
                                                                                  main_pid=42, since=1000.0))

    def wait_one(m, name, spec, poll=1.0):
        seen["waits"].append(spec)
        return utils.WaitResult(name, True, "running")

    monkeypatch.setattr(machine_io, "wait_one", wait_one)
    return seen


def run(args, check=False):
    return run_main(module, args, check=check)


@pytest.mark.parametrize("text, mode", [("[Exec]\nBoot=no\nParameters=/bin/sleep infinity\n", "unit"),
                                        ("[Exec]\nBoot=yes\n", "system")])
def test_wait_mode_and_pending_restart_come_from_settings_dir(tmp_path, host, text, mode):
    (tmp_path / "web1.nspawn").write_text(text)
    os.utime(tmp_path / "web1.nspawn", (2000, 2000))  # written after the start at t=1000
    result = run({"name": "web1", "state": "running", "settings_dir": str(tmp_path), "timeout": 7})
    assert not result["changed"] and result["pending_restart"] is True
    assert host["waits"] == [(mode, 7)]


def test_default_settings_dir_and_timeout(host, monkeypatch):
    read = []
    monkeypatch.setattr(machine_io, "wait_mode", lambda name, dirs: read.append(dirs) or "system")
    result = run({"name": "web1", "state": "running"})
    assert read == [("/etc/systemd/nspawn", "/run/systemd/nspawn")] and host["waits"] == [("system", 120)]
    assert result["system_state"] == "running"


@pytest.mark.parametrize("args, msg", [
    ({"settings_dir": "nspawn"}, "settings_dir: 'nspawn' is not allowed; give an absolute directory path "
                                 "(default /etc/systemd/nspawn)"),
    ({"timeout": 0}, "timeout: 0 is not allowed; give a whole number of seconds, at least 1"),
    ({"timeout": -5, "settings_dir": "x"}, "settings_dir: 'x' is not allowed; give an absolute directory path "
                                           "(default /etc/systemd/nspawn); timeout: -5 is not allowed; give a whole "
                                           "number of seconds, at least 1"),
])
def test_bad_shared_options_fail_before_anything_is_read(host, args, msg, monkeypatch):
    monkeypatch.setattr(machine_io, "read_current", lambda m, name: pytest.fail("read before validation"))
    result = run(dict({"name": "web1", "state": "running"}, **args))
    assert result["failed"] and result["msg"] == msg and host["waits"] == []
