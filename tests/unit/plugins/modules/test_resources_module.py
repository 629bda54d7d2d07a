# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""corral.nspawn.resources main(): the shared units_dir option (issue 13).

The drop-in is a real file under tmp_path; systemd (show, daemon-reload) is faked at the resources_io/systemd seams.
"""

import os

import pytest
from ansible_collections.corral.nspawn.tests.unit.module_main import run_main, stop_at_exit

from ansible_collections.corral.nspawn.plugins.module_utils import resources_io, systemd
from ansible_collections.corral.nspawn.plugins.modules import resources as module

DROPIN = "systemd-nspawn@web1.service.d/50-corral-resources.conf"


@pytest.fixture
def host(monkeypatch):
    """A stopped web1; ``shown`` is what systemctl show answers, ``reloads`` counts daemon-reloads."""
    state = {"shown": {"ActiveState": "inactive", "NeedDaemonReload": "no", "DropInPaths": ""}, "reloads": 0}

    def reload(m):
        state["reloads"] += 1

    stop_at_exit(monkeypatch)
    monkeypatch.setattr(resources_io, "read_live", lambda m, names: {n: dict(state["shown"]) for n in names})
    monkeypatch.setattr(systemd, "daemon_reload", reload)
    return state


def run(args, check=False):
    return run_main(module, args, check=check, diff=True)


def test_units_dir_rhythm_writes_the_dropin_there(tmp_path, host):
    args = {"name": "web1", "units_dir": str(tmp_path), "memory_max": "256M"}
    results = [run(args, check=True), run(args), run(args, check=True), run(args)]
    assert [r["changed"] for r in results] == [True, True, False, False]
    assert {r["path"] for r in results} == {str(tmp_path / DROPIN)}
    assert "MemoryMax=256M" in (tmp_path / DROPIN).read_text() and host["reloads"] == 1


def test_the_stale_load_rule_looks_for_the_dropin_in_units_dir(tmp_path, host):
    """A drop-in on disk that systemd has not loaded (a run killed before its reload) is reloaded once."""
    args = {"name": "web1", "units_dir": str(tmp_path), "tasks_max": 100}
    run(args)
    host["shown"].update(NeedDaemonReload="yes", DropInPaths="/etc/systemd/system/" + DROPIN)
    stale = run(args)
    assert stale["changed"] and host["reloads"] == 2 and any("has not loaded" in c for c in stale["changes"])
    host["shown"]["DropInPaths"] = str(tmp_path / DROPIN)
    assert not run(args)["changed"] and host["reloads"] == 2


def test_default_units_dir_is_etc_systemd_system(host):
    predicted = run({"name": "u13-nothere", "tasks_max": 100}, check=True)
    assert predicted["path"] == "/etc/systemd/system/systemd-nspawn@u13-nothere.service.d/50-corral-resources.conf"
    assert predicted["changed"] and not os.path.exists(predicted["path"]) and host["reloads"] == 0


@pytest.mark.parametrize("value", ["system", "etc/systemd/system"])
def test_relative_units_dir_is_refused_before_any_change(tmp_path, host, value, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run({"name": "web1", "units_dir": value, "tasks_max": 100})
    assert result["failed"] and result["msg"] == (f"units_dir: {value!r} is not allowed; give an absolute directory "
                                                  "path (default /etc/systemd/system)")
    assert os.listdir(tmp_path) == [] and host["reloads"] == 0
