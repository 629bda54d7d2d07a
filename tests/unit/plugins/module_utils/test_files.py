# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""files.py: the host's write-if-different helpers (plan, atomic write, ensure, remove_empty_dir)."""

import os

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import files
from ansible_collections.corral.nspawn.tests.unit.fakes import FakeModule


def Module(check_mode=False):
    return FakeModule(check_mode=check_mode)


@pytest.mark.parametrize("before, after, action", [(None, "x", "create"), ("x", "y", "update"), ("x", None, "remove"),
                                                   ("x", "x", "none"), (None, None, "none")])
def test_plan_file_decides_the_action_and_diff(before, after, action):
    result = files.plan_file("/etc/f", before, after)
    assert (result.action, result.changed) == (action, action != "none")
    if result.changed:
        assert result.diff["before"] == (before or "") and result.diff["after"] == (after or "")
        assert result.diff["before_header"] == ("/etc/f" if before is not None else "/etc/f (absent)")
    else:
        assert result.diff == {}


def test_a_planned_file_carries_its_content_and_is_written_from_it(tmp_path):
    """The text a file holds after the change is the plan's content, not read back out of the diff."""
    path = str(tmp_path / "f.conf")
    assert [files.plan_file(path, b, a).content for b, a in (("x", "y"), ("x", "x"), ("x", None))] == ["y", "x", None]
    assert files.plan_file_mode(path, "y", 0o600, "y").content == "y"
    result = files.plan_file(path, None, "new\n")
    result.diff = {}   # what is written does not come from the diff
    files.write_result(Module(), result)
    assert open(path, encoding="utf-8").read() == "new\n"


def test_is_managed_looks_at_the_first_three_lines_only():
    assert files.is_managed(f"# {files.MANAGED_MARKER}. Do not edit\n[Exec]\n")
    assert not files.is_managed(f"a\nb\nc\n# {files.MANAGED_MARKER}\n")
    assert not files.is_managed(None)


def test_read_text_of_a_missing_file_is_none(tmp_path):
    assert files.read_text(str(tmp_path / "nope")) is None


def test_atomic_write_creates_dirs_moves_through_the_module_and_sets_the_mode(tmp_path):
    module, path = Module(), str(tmp_path / "new" / "f.conf")
    files.atomic_write(module, path, "text\n", 0o600)
    assert files.read_text(path) == "text\n" and os.stat(path).st_mode & 0o7777 == 0o600
    assert module.moves == [path] and os.listdir(tmp_path / "new") == ["f.conf"]   # no temp file left


def test_atomic_write_leaves_no_temp_file_when_the_move_fails(tmp_path):
    class Refusing(FakeModule):
        def atomic_move(self, src, dest, unsafe_writes=False):
            raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        files.atomic_write(Refusing(), str(tmp_path / "f"), "x")
    assert os.listdir(tmp_path) == []


def test_ensure_file_rhythm_check_apply_check_apply(tmp_path):
    path = str(tmp_path / "f")
    outcomes = [files.ensure_file(Module(check), path, "x\n").changed for check in (True, False, True, False)]
    assert outcomes == [True, True, False, False] and files.read_text(path) == "x\n"


def test_ensure_file_fixes_only_the_mode_and_keeps_the_mtime(tmp_path):
    path = tmp_path / "f"
    path.write_text("x\n")
    os.chmod(path, 0o600)
    os.utime(path, ns=(1, 1))
    result = files.ensure_file(Module(), str(path), "x\n", 0o644)
    assert result.changed and result.action == "chmod"
    assert (result.diff["before_header"], result.diff["after_header"]) == (f"{path} (mode 0600)", f"{path} (mode 0644)")
    assert os.stat(path).st_mode & 0o7777 == 0o644 and os.stat(path).st_mtime_ns == 1


def test_ensure_file_removes_with_none_but_not_in_check_mode(tmp_path):
    path = tmp_path / "f"
    path.write_text("x\n")
    assert files.ensure_file(Module(check_mode=True), str(path), None).action == "remove" and path.exists()
    assert files.ensure_file(Module(), str(path), None).changed and not path.exists()


def test_remove_empty_dir_removes_only_an_empty_directory(tmp_path):
    full, empty = tmp_path / "full", tmp_path / "empty"
    full.mkdir()
    (full / "other.conf").write_text("someone else's\n")
    empty.mkdir()
    assert files.remove_empty_dir(str(empty)) and not empty.exists()
    assert not files.remove_empty_dir(str(full)) and (full / "other.conf").exists()
    assert not files.remove_empty_dir(str(tmp_path / "gone"))
    assert not files.remove_empty_dir(str(full / "other.conf")) and (full / "other.conf").exists()


def test_read_file_gives_text_and_mode(tmp_path):
    path = tmp_path / "f"
    path.write_text("x\n")
    os.chmod(path, 0o640)
    assert files.read_file(str(path)) == ("x\n", 0o640)
    assert files.read_file(str(tmp_path / "nope")) == (None, None)


@pytest.mark.parametrize("before, mode, after, action", [
    ("x", 0o644, "x", "none"), ("x", 0o600, "x", "chmod"), ("x", 0o600, "y", "update"), (None, None, "y", "create"),
    ("x", 0o600, None, "remove")])
def test_plan_file_mode_treats_a_wrong_mode_as_drift(before, mode, after, action):
    assert files.plan_file_mode("/etc/f", before, mode, after).action == action


def test_write_result_does_each_action(tmp_path):
    path = tmp_path / "f"
    files.write_result(Module(), files.plan_file_mode(str(path), None, None, "x\n"), 0o640)
    assert path.read_text() == "x\n" and os.stat(path).st_mode & 0o7777 == 0o640
    os.utime(path, ns=(1, 1))
    files.write_result(Module(), files.plan_file_mode(str(path), "x\n", 0o640, "x\n"), 0o644)
    assert os.stat(path).st_mode & 0o7777 == 0o644 and os.stat(path).st_mtime_ns == 1
    files.write_result(Module(), files.plan_file_mode(str(path), "x\n", 0o644, None))
    files.write_result(Module(), files.plan_file_mode(str(path), "x\n", 0o644, None))   # already gone: fine
    assert not path.exists()
