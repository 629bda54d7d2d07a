# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""corral.nspawn.machine_info main(): the shared settings_dir and units_dir options (issue 13).

machined and systemctl are faked at the systemd seams; the .nspawn file and the drop-in are real files.
"""

import pytest
from ansible_collections.corral.nspawn.tests.unit.module_main import run_main, stop_at_exit

from ansible_collections.corral.nspawn.plugins.module_utils import systemd
from ansible_collections.corral.nspawn.plugins.modules import machine_info as module


@pytest.fixture
def host(monkeypatch):
    stop_at_exit(monkeypatch)
    monkeypatch.setattr(systemd, "machined_error", lambda m: None)
    monkeypatch.setattr(systemd, "list_machines", lambda m: [])
    monkeypatch.setattr(systemd, "list_images", lambda m: [{"name": "web1", "type": "directory"}])
    monkeypatch.setattr(systemd, "image_info", lambda m, name: None)
    monkeypatch.setattr(systemd, "show", lambda m, units, props: {u: {"ActiveState": "inactive"} for u in units})


def run(args):
    return run_main(module, args)


def test_settings_and_limits_are_read_from_settings_dir_and_units_dir(tmp_path, host):
    (tmp_path / "nspawn").mkdir()
    (tmp_path / "nspawn" / "web1.nspawn").write_text("[Exec]\nHostname=web1box\n")
    dropin = tmp_path / "system" / "systemd-nspawn@web1.service.d" / "50-corral-resources.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Service]\nMemoryMax=256M\n")
    result = run({"settings_dir": str(tmp_path / "nspawn"), "units_dir": str(tmp_path / "system")})
    [web1] = result["machines"]
    assert web1["settings_path"] == str(tmp_path / "nspawn" / "web1.nspawn")
    assert web1["settings"] == {"Exec": {"Hostname": "web1box"}}
    assert web1["resources_path"] == str(dropin) and web1["resources"] == {"MemoryMax": "256M"}


@pytest.mark.parametrize("args, msg", [
    ({"units_dir": "system"}, "units_dir: 'system' is not allowed; give an absolute directory path "
                              "(default /etc/systemd/system)"),
    ({"settings_dir": "nspawn"}, "settings_dir: 'nspawn' is not allowed; give an absolute directory path "
                                 "(default /etc/systemd/nspawn)"),
])
def test_relative_directories_are_refused(host, args, msg):
    result = run(args)
    assert result["failed"] and result["msg"] == msg
