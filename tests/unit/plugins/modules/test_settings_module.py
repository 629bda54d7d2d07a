# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""corral.nspawn.settings main(): check mode, idempotence, removal, warnings (files in tmp_path)."""

import os

import pytest
from ansible.module_utils import basic
from ansible_collections.corral.nspawn.tests.unit.module_main import run_main, stop_at_exit

from ansible_collections.corral.nspawn.plugins.modules import settings as module


@pytest.fixture(autouse=True)
def fake_host(monkeypatch, tmp_path):
    warned = []
    stop_at_exit(monkeypatch)
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, msg: warned.append(msg))
    monkeypatch.setattr(module.ns_io, "systemd_version", lambda _m: 252)
    monkeypatch.setattr(module.ns, "untrusted_path", lambda name, directory=None: str(tmp_path / "machines" / f"{name}.nspawn"))
    return warned


def run(args, check=False, diff=True):
    return run_main(module, args, check=check, diff=diff)


def test_check_apply_check_apply(tmp_path):
    path = str(tmp_path / "etc" / "web1.nspawn")
    os.makedirs(tmp_path / "a")
    bind = f"{tmp_path}/a:/a:idmap"
    args = {"name": "web1", "path": path, "hostname": "web1", "bind": [bind]}
    first = run(args, check=True)
    assert first["changed"] and first["restart_required"] and not os.path.exists(path)
    assert "Hostname=web1" in first["diff"]["after"]
    second = run(args)
    assert second["changed"] and os.path.exists(path)
    mtime = os.stat(path).st_mtime_ns
    third, fourth = run(args, check=True), run(args)
    assert [third["changed"], fourth["changed"]] == [False, False]
    assert [third["restart_required"], fourth["restart_required"]] == [False, False]
    assert os.stat(path).st_mtime_ns == mtime
    assert fourth["settings"] == {"Exec": {"Hostname": ["web1"]}, "Files": {"Bind": [bind]}}
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def test_absent_removes_and_check_mode_keeps(tmp_path):
    path = str(tmp_path / "web1.nspawn")
    run({"name": "web1", "path": path, "boot": True})
    assert run({"name": "web1", "path": path, "state": "absent"}, check=True)["changed"]
    assert os.path.exists(path)
    result = run({"name": "web1", "path": path, "state": "absent"})
    assert result["changed"] and result["content"] is None and not os.path.exists(path)
    assert run({"name": "web1", "path": path, "state": "absent"})["changed"] is False


def test_bad_input_fails_before_writing(tmp_path):
    path = str(tmp_path / "web1.nspawn")
    result = run({"name": "web1", "path": path, "bind": ["relative"], "port": ["x"]})
    assert result["failed"] and result["msg"].startswith("bind: item 'relative'") and "port:" in result["msg"]
    assert not os.path.exists(path)


def test_bad_name(tmp_path):
    result = run({"name": "a/b", "path": str(tmp_path / "x.nspawn")})
    assert result["failed"] and result["msg"].startswith("name:")


def test_warnings_untrusted_unmanaged_and_path(tmp_path, fake_host):
    (tmp_path / "machines").mkdir()
    (tmp_path / "machines" / "web1.nspawn").write_text("[Network]\nPort=22\n")
    path = tmp_path / "web1.nspawn"
    path.write_text("[Exec]\nBoot=yes\n")  # hand-written, not ours
    result = run({"name": "web1", "path": str(path), "bind": ["/srv"], "extra": {"Exec": {"NewKey": 1}}})
    assert result["changed"]
    text = " | ".join(fake_host)
    assert "exists next to the image" in text
    assert "was not written by corral.nspawn" in text
    assert "ignores the privileged keys Files.Bind" in text
    assert "extra.Exec.NewKey: not in the catalogue" in text
    assert result["diff"]["before"] == "[Exec]\nBoot=yes\n"


def test_a_missing_bind_source_is_refused_before_any_change_in_check_mode_too(tmp_path, fake_host):
    """Regression (issue 19, 3): the file was written and the container then failed to start."""
    path = str(tmp_path / "web1.nspawn")
    for check in (True, False):
        result = run({"name": "web1", "path": path, "bind_read_only": [f"{tmp_path}/nowhere:/x"]}, check=check)
        assert result["failed"] and f"the source {tmp_path}/nowhere does not exist on the host" in result["msg"]
        assert result["msg"].startswith("bind_read_only: ") and not os.path.exists(path)


def test_a_writable_bind_into_a_private_users_container_without_idmap_is_warned_about(tmp_path, fake_host):
    os.makedirs(tmp_path / "src")
    path = str(tmp_path / "web1.nspawn")
    run({"name": "web1", "path": path, "bind": [f"{tmp_path}/src:/src"]})
    assert any("cannot write" in w and f"{tmp_path}/src:/src:idmap" in w for w in fake_host), fake_host
    fake_host.clear()
    for quiet in ({"bind": [f"{tmp_path}/src:/src:idmap"]}, {"bind": [f"{tmp_path}/src:/src"], "private_users": False},
                  {"bind_read_only": [f"{tmp_path}/src:/src"]}):
        run(dict({"name": "web1", "path": path}, **quiet))
        assert not [w for w in fake_host if "cannot write" in w], (quiet, fake_host)


# ---------------------------------------------------------------- settings_dir (issue 13), path deprecated

def test_settings_dir_rhythm_writes_name_nspawn_there(tmp_path):
    directory = tmp_path / "nspawn"
    directory.mkdir()
    args = {"name": "web1", "settings_dir": str(directory), "hostname": "web1"}
    results = [run(args, check=True), run(args), run(args, check=True), run(args)]
    assert [r["changed"] for r in results] == [True, True, False, False]
    assert {r["path"] for r in results} == {str(directory / "web1.nspawn")}
    assert (directory / "web1.nspawn").read_text() == results[-1]["content"] and "Hostname=web1" in results[-1]["content"]


def test_default_settings_dir_is_the_trusted_etc_directory():
    predicted = run({"name": "u13-nothere", "boot": True}, check=True)
    assert predicted["path"] == "/etc/systemd/nspawn/u13-nothere.nspawn" and predicted["changed"]
    assert not os.path.exists(predicted["path"])


@pytest.mark.parametrize("value", ["nspawn", "./etc/systemd/nspawn", ""])
def test_relative_settings_dir_is_refused_naming_option_value_and_form(tmp_path, value, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run({"name": "web1", "settings_dir": value, "boot": True})
    assert result["failed"]
    assert result["msg"] == (f"settings_dir: {value!r} is not allowed; give an absolute directory path "
                             "(default /etc/systemd/nspawn)")
    assert os.listdir(tmp_path) == []


def test_path_and_settings_dir_are_mutually_exclusive(tmp_path):
    result = run({"name": "web1", "settings_dir": str(tmp_path), "path": str(tmp_path / "web1.nspawn"), "boot": True})
    assert result["failed"] and "mutually exclusive: path|settings_dir" in result["msg"]
    assert os.listdir(tmp_path) == []


def test_path_is_deprecated_for_removal_in_the_next_major():
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    validated = ArgumentSpecValidator(module.argument_spec()).validate({"name": "web1", "path": "/tmp/web1.nspawn"})
    assert [(d["version"], d["collection_name"]) for d in validated._deprecations] == [("1.0.0", "corral.nspawn")]
    assert "'path'" in validated._deprecations[0]["msg"]
    assert ArgumentSpecValidator(module.argument_spec()).validate({"name": "web1"})._deprecations == []


def test_settings_dir_outside_the_trusted_dirs_warns_about_privileged_keys(tmp_path, fake_host):
    os.makedirs(tmp_path / "src")
    result = run({"name": "web1", "settings_dir": str(tmp_path), "bind": [f"{tmp_path}/src:/srv"]})
    assert result["changed"] and any("ignores the privileged keys Files.Bind" in w for w in fake_host)
    fake_host.clear()
    run({"name": "web2", "settings_dir": str(tmp_path), "hostname": "web2"})
    assert not any("privileged" in w for w in fake_host)
