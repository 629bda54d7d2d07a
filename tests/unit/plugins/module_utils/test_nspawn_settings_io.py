# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for nspawn_settings_io: the batched read (files, modes, probed paths, systemd version) and apply."""

import os

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import nspawn_settings as ns, nspawn_settings_io as ns_io
from ansible_collections.corral.nspawn.tests.unit.fakes import FakeModule

VERSION = ("/usr/bin/systemctl", "--version")


@pytest.mark.parametrize("answer, version", [
    ((0, "systemd 252 (252.38-1~deb12u1)\n+PAM +AUDIT\n", ""), 252),
    ((1, "", "systemctl: not running"), None),
    ((0, "something else\n", ""), None),
])
def test_systemd_version_asks_systemctl_once(answer, version):
    module = FakeModule(answers={VERSION: answer})
    assert ns_io.systemd_version(module) == version
    assert module.calls == [list(VERSION)]


def test_without_systemctl_there_is_no_version_and_no_command():
    module = FakeModule(bins=())
    assert ns_io.systemd_version(module) is None and module.calls == []


def test_read_takes_text_mode_and_the_paths_the_plan_probes(tmp_path):
    machines, settings = tmp_path / "machines", tmp_path / "nspawn"
    machines.mkdir()
    settings.mkdir()
    (settings / "web.nspawn").write_text("[Exec]\nBoot=yes\n")
    os.chmod(settings / "web.nspawn", 0o600)
    (machines / "web.nspawn").write_text("[Exec]\n")
    (tmp_path / "data").mkdir()
    items = [ns.SettingsItem("web", str(settings / "web.nspawn"), {"bind": [f"{tmp_path}/data:/srv"]},
                             machines_dir=str(machines)),
             ns.SettingsItem("db", str(settings / "db.nspawn"), {"bind_read_only": ["/nowhere/x:/y", "rel:/z"]},
                             machines_dir=str(machines))]
    module = FakeModule(answers={VERSION: (0, "systemd 257 (257.9-1)\n", "")})
    state = ns_io.read(module, items)
    assert state.files == {str(settings / "web.nspawn"): ("[Exec]\nBoot=yes\n", 0o600),
                           str(settings / "db.nspawn"): (None, None)}
    assert state.version == 257
    assert state.exists == {str(machines / "web.nspawn"): True, str(machines / "db.nspawn"): False,
                            f"{tmp_path}/data": True, "/nowhere/x": False}
    quiet = FakeModule()
    assert ns_io.read(quiet, items, version=False).version is None and quiet.calls == []


def test_apply_writes_chmods_and_removes_as_planned_then_nothing_is_left_to_do(tmp_path):
    new, drifted, gone = (str(tmp_path / f"{name}.nspawn") for name in ("new", "drifted", "gone"))
    items = [ns.SettingsItem("new", new, {"boot": True}), ns.SettingsItem("drifted", drifted, {"boot": True}),
             ns.SettingsItem("gone", gone, None)]
    module = FakeModule()
    text = ns.plan(items[:1], ns_io.read(module, items[:1], version=False)).items[0].content
    with open(drifted, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(drifted, 0o600)
    with open(gone, "w", encoding="utf-8") as handle:
        handle.write("[Exec]\n")
    todo = ns.plan(items, ns_io.read(module, items, version=False))
    assert [a.action for a in todo.actions] == ["create", "chmod", "remove"]
    ns_io.apply(module, todo)
    assert open(new, encoding="utf-8").read() == text and os.stat(new).st_mode & 0o7777 == 0o644
    assert os.stat(drifted).st_mode & 0o7777 == 0o644 and not os.path.exists(gone)
    assert module.moves == [new] and module.calls == []
    again = ns.plan(items, ns_io.read(module, items, version=False))
    assert not again.changed and again.actions == []


def test_read_dir_lists_the_nspawn_files_by_machine_name(tmp_path):
    (tmp_path / "web.nspawn").write_text("[Exec]\nBoot=yes\n")
    (tmp_path / "db.nspawn").write_text("")
    (tmp_path / "notes.txt").write_text("[Exec]\n")
    (tmp_path / "odd.nspawn").mkdir()   # not a file: not listed
    assert ns_io.read_dir(str(tmp_path)) == {"db": "", "web": "[Exec]\nBoot=yes\n"}
    assert ns_io.read_dir(str(tmp_path / "missing")) == {}
