# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for images_io: read -> plan -> apply of images with real files: staging and rename, check mode,
failed and interrupted builds, tar imports, forced rebuilds, removal, the method reported."""

import os
import shutil
import subprocess

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import images
from ansible_collections.corral.nspawn.plugins.module_utils import images_backends_io as backends_io
from ansible_collections.corral.nspawn.plugins.module_utils import images_io, images_tree_io as tree
from ansible_collections.corral.nspawn.plugins.module_utils.layout import Layout
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError
from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.images_fakes import FakeModule, params


def test_read_plan_apply_for_n_images_plan_never_builds(machines):
    """Issue 16: the fleet planned by building; read and plan change nothing (a real run too), apply builds."""
    module, layout = FakeModule(), Layout(machines_dir=machines)
    items = [params(machines, name=name, source="clone", clone_from="tmpl", hostname=name) for name in ("c1", "c2")]
    todo = images.plan(items, images_io.read(module, layout, items))
    assert sorted(os.listdir(machines)) == ["tmpl"] and module.calls == []
    assert [item.action for item in todo.items.values()] == ["create", "create"] and todo.changed
    assert any("hostname" in words for words in todo.items["c1"].setup_words)
    outcomes = images_io.apply(module, layout, todo)
    assert set(outcomes) == {"c1", "c2"} and all(os.path.isdir(os.path.join(machines, n)) for n in ("c1", "c2"))
    assert images.result(todo.items["c2"], outcomes["c2"])["changes"] == images.result(todo.items["c2"])["changes"]
    again = images.plan(items, images_io.read(module, layout, items))
    assert not again.changed and [item.action for item in again.items.values()] == ["none", "none"]


def test_a_clone_of_a_template_planned_in_the_same_run_is_built_after_it(machines):
    """The fleet reads and plans every image before it builds any: a planned template need not exist at read."""
    module, layout = FakeModule(), Layout(machines_dir=machines)
    template = params(machines, name="t2", source="clone", clone_from="tmpl")
    clone = params(machines, name="c1", source="clone", clone_from="t2", _source_planned=True)
    todo = images.plan([template, clone], images_io.read(module, layout, [template, clone]))
    assert [item.action for item in todo.items.values()] == ["create", "create"]
    alone = images.plan([clone], images_io.read(module, layout, [clone]))
    with pytest.raises(images.ImageError, match="clone_from: .*t2 is not an existing directory"):
        images_io.apply(module, layout, alone)   # built without its template: refused before any copy
    images_io.apply(module, layout, todo)
    assert os.path.isfile(os.path.join(machines, "c1", "etc/shadow"))


def test_clone_builds_in_staging_then_renames_and_prepares(machines):
    module = FakeModule()
    result = images_io.ensure_image(module, params(machines, source="clone", clone_from="tmpl", hostname="web1"))
    root = os.path.join(machines, "web1")
    assert result["created"] and result["changed"] and not result["restart_required"]
    assert sorted(os.listdir(machines)) == [".corral", "tmpl", "web1"]
    assert open(os.path.join(root, "etc/hostname")).read() == "web1\n"
    assert open(os.path.join(root, "etc/machine-id")).read() == ""
    assert not os.path.exists(os.path.join(root, "var/lib/dbus/machine-id"))
    # cp -a: symlinks (not followed) and modes kept; hostname was rewritten atomically (a new inode)
    assert open(os.path.join(root, "etc/hostname.hardlink")).read() == "template\n"
    tmpl = os.path.join(machines, "tmpl")
    assert os.readlink(os.path.join(root, "etc/abs-link")) == "/etc/hostname"
    assert os.stat(os.path.join(root, "etc/shadow")).st_mode & 0o777 == 0o640
    assert open(os.path.join(tmpl, "etc/machine-id")).read().startswith("0123")  # template untouched
    key = open(os.path.join(root, "etc/ssh/ssh_host_ed25519_key.pub")).read()
    assert key != open(os.path.join(tmpl, "etc/ssh/ssh_host_ed25519_key.pub")).read()
    assert any("cp" in c and "--reflink=auto" in c for c in module.calls)
    record = images_io.read_host_record(images.Paths(machines, "web1"))
    assert record["source"] == {"source": "clone", "clone_from": "tmpl"}
    assert images_io.read_record(root) == {"build_id": record["build_id"]}  # only the id is inside the root
    again = images_io.ensure_image(FakeModule(), params(machines, source="clone", clone_from="tmpl", hostname="web1"))
    assert again["changed"] is False and again["changes"] == []


def test_hardlinks_survive_the_copy(machines):
    images_io.ensure_image(FakeModule(), params(machines, source="clone", clone_from="tmpl", reset_machine_id=False))
    root = os.path.join(machines, "web1")
    os.link(os.path.join(machines, "tmpl/etc/securetty"), os.path.join(machines, "tmpl/etc/securetty.hl"))
    images_io.ensure_image(FakeModule(), params(machines, name="web2", source="clone", clone_from="tmpl"))
    web2 = os.path.join(machines, "web2")
    assert os.stat(os.path.join(web2, "etc/securetty")).st_ino == os.stat(os.path.join(web2, "etc/securetty.hl")).st_ino
    assert os.path.isdir(root)


def test_check_mode_changes_nothing_and_predicts(machines):
    before = sorted(os.listdir(machines))
    module = FakeModule(check_mode=True)
    result = images_io.ensure_image(module, params(machines, source="clone", clone_from="tmpl", hostname="web1",
                                                   address="10.0.0.5/24"))
    assert result["changed"] and result["created"]
    assert sorted(os.listdir(machines)) == before and module.calls == []
    text = result["diff"][0]["after"]
    assert "create" in text and "hostname" in text and "10-corral-host0.network" in text
    assert result["diff"][0]["before"].endswith("absent\n")


def test_check_mode_clone_of_a_template_not_yet_created_warns(machines):
    module = FakeModule(check_mode=True)
    result = images_io.ensure_image(module, params(machines, source="clone", clone_from="later"))
    assert result["changed"] and "not an existing directory (yet)" in module.warnings[0]
    with pytest.raises(images.ImageError, match="clone_from: .* is not an existing directory"):
        images_io.ensure_image(FakeModule(), params(machines, source="clone", clone_from="later"))
    assert sorted(set(os.listdir(machines)) - {".corral"}) == ["tmpl"]


def test_failed_build_leaves_no_root_and_no_staging(machines):
    module = FakeModule(answers={"cp": (1, "", "cp: disk full")})
    with pytest.raises(CommandError, match="disk full"):
        images_io.ensure_image(module, params(machines, source="clone", clone_from="tmpl"))
    assert sorted(set(os.listdir(machines)) - {".corral"}) == ["tmpl"]


def test_interrupted_build_leftovers_are_removed_then_rebuilt(machines):
    """Regression for kill -9 mid-build: a staging dir (and an old-root leftover) are cleaned, never used."""
    paths = images.Paths(machines, "web1")
    tree.make_marked_dir(paths, paths.staging)
    tree.make_marked_dir(paths, paths.old)
    staging = os.path.join(paths.staging, "root", "etc")
    os.makedirs(staging)
    check = images_io.ensure_image(FakeModule(check_mode=True), params(machines, source="clone", clone_from="tmpl"))
    assert sum("leftovers" in c for c in check["changes"]) == 2 and os.path.isdir(staging)
    result = images_io.ensure_image(FakeModule(), params(machines, source="clone", clone_from="tmpl"))
    assert result["created"] and sorted(os.listdir(machines)) == [".corral", "tmpl", "web1"]
    assert sorted(os.listdir(paths.state_dir)) == ["old", "records", "staging"] and not os.listdir(
        os.path.dirname(paths.staging)) and not os.listdir(os.path.dirname(paths.old))


def test_missing_tool_fails_before_any_change(machines):
    for source, extra, tool in (("debootstrap", {"suite": "bookworm"}, "debootstrap"),
                                ("pacstrap", {}, "pacstrap"), ("mkosi", {"mkosi_directory": "/x"}, "mkosi"),
                                ("dnf", {"releasever": "40", "packages": ["x"]}, "dnf"),
                                ("zypper", {"packages": ["x"]}, "zypper")):
        module = FakeModule(missing={tool})
        with pytest.raises(images.ImageError, match=f"source={source} needs the '{tool}' command"):
            images_io.ensure_image(module, params(machines, source=source, **extra))
        assert module.calls == [] and sorted(set(os.listdir(machines)) - {".corral"}) == ["tmpl"]


def test_bootstrap_runs_the_built_command_in_staging(machines):
    module = FakeModule(answers={"debootstrap": (0, "", "")})  # scripted: never runs the real tool
    module.get_bin_path = lambda name, *a, **k: f"/usr/sbin/{name}" if name == "debootstrap" else shutil.which(name)
    result = images_io.ensure_image(module, params(machines, source="debootstrap", suite="bookworm", hostname="x"))
    argv = next(c for c in module.calls if "/usr/sbin/debootstrap" in c)
    if shutil.which("setpriv"):  # the builder dies with the module (kill -9 of the module stops it)
        assert argv[:4] == [shutil.which("setpriv"), "--pdeathsig", "KILL", "--"]
    assert argv[-2:] == ["bookworm", os.path.join(machines, ".corral", "staging", "web1", "root")]
    assert result["created"] and sorted(os.listdir(machines)) == [".corral", "tmpl", "web1"]
    assert images_io.read_host_record(images.Paths(machines, "web1"))["source"]["suite"] == "bookworm"


def test_tar_import_with_checksum(machines, tmp_path):
    archive = str(tmp_path / "root.tar.gz")
    subprocess.run(["tar", "-C", os.path.join(machines, "tmpl"), "-czf", archive, "."], check=True)
    import hashlib
    digest = hashlib.sha256(open(archive, "rb").read()).hexdigest()
    with pytest.raises(images.ImageError, match="checksum: .* expected sha256:00"):
        images_io.ensure_image(FakeModule(), params(machines, source="tar", path=archive, checksum="sha256:" + "0" * 64))
    assert sorted(set(os.listdir(machines)) - {".corral"}) == ["tmpl"]
    result = images_io.ensure_image(FakeModule(), params(machines, source="tar", path=archive,
                                                         checksum=f"sha256:{digest}", hostname="web1"))
    assert result["created"] and open(os.path.join(machines, "web1/etc/hostname")).read() == "web1\n"


def test_tar_import_from_file_url(machines, tmp_path):
    archive = str(tmp_path / "root.tar")
    subprocess.run(["tar", "-C", os.path.join(machines, "tmpl"), "-cf", archive, "."], check=True)
    result = images_io.ensure_image(FakeModule(), params(machines, source="tar", url=f"file://{archive}"))
    assert result["created"] and os.path.isfile(os.path.join(machines, "web1", "etc/shadow"))


def test_force_rebuild_swaps_in_a_new_root(machines):
    images_io.ensure_image(FakeModule(), params(machines, source="directory", path=os.path.join(machines, "tmpl")))
    marker = os.path.join(machines, "web1", "etc", "local-change")
    open(marker, "w").close()
    warned = FakeModule()
    same = images_io.ensure_image(warned, params(machines, source="clone", clone_from="tmpl"))
    assert same["changed"] is False and "force=true rebuilds it" in warned.warnings[0]
    result = images_io.ensure_image(FakeModule(), params(machines, source="clone", clone_from="tmpl", force=True))
    assert result["rebuilt"] and not os.path.exists(marker)
    assert sorted(os.listdir(machines)) == [".corral", "tmpl", "web1"]


def test_absent_removes_root_and_nothing_else(machines):
    images_io.ensure_image(FakeModule(), params(machines, source="clone", clone_from="tmpl"))
    check = images_io.ensure_image(FakeModule(check_mode=True), params(machines, state="absent"))
    assert check["changed"] and os.path.isdir(os.path.join(machines, "web1"))
    result = images_io.ensure_image(FakeModule(), params(machines, state="absent"))
    assert result["removed"] and sorted(set(os.listdir(machines)) - {".corral"}) == ["tmpl"]
    assert images_io.ensure_image(FakeModule(), params(machines, state="absent"))["changed"] is False


def test_absent_symlink_removes_only_the_link(machines, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    os.symlink(str(outside), os.path.join(machines, "web1"))
    result = images_io.ensure_image(FakeModule(), params(machines, state="absent"))
    assert result["removed"] and (outside / "precious").read_text() == "keep"
    assert not os.path.lexists(os.path.join(machines, "web1"))


def test_absent_never_follows_symlinks_inside_the_root(machines, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    images_io.ensure_image(FakeModule(), params(machines, source="clone", clone_from="tmpl"))
    os.symlink(str(outside), os.path.join(machines, "web1", "escape"))
    images_io.ensure_image(FakeModule(), params(machines, state="absent"))
    assert (outside / "precious").read_text() == "keep"


def test_method_is_reported(machines, tmp_path):
    result = images_io.ensure_image(FakeModule(check_mode=True), params(machines, source="clone", clone_from="tmpl"))
    assert result["method"] == "cp --reflink=auto"
    archive = str(tmp_path / "r.tar")
    subprocess.run(["tar", "-C", os.path.join(machines, "tmpl"), "-cf", archive, "."], check=True)
    assert images_io.ensure_image(FakeModule(), params(machines, source="tar", path=archive))["method"] == "tar extract"
    assert images_io.ensure_image(FakeModule(), params(machines, source="tar", path=archive))["method"] == ""


def test_failed_snapshot_falls_back_to_copy(machines, monkeypatch):
    """Regression: a template on another btrfs file system cannot be snapshotted; copy it instead."""
    monkeypatch.setattr(backends_io, "copy_method", lambda src, mdir: "snapshot")
    module = FakeModule(answers={"snapshot": (1, "", "ERROR: Invalid cross-device link")})
    result = images_io.ensure_image(module, params(machines, source="clone", clone_from="tmpl"))
    assert result["created"] and os.path.isfile(os.path.join(machines, "web1", "etc/shadow"))
    assert [c for c in module.calls if "snapshot" in c] and [c for c in module.calls if "--reflink=auto" in c]


def test_clone_from_a_running_machine_is_refused_before_any_change(machines):
    """cp -a reads the source by path name: a running source could swap in links to host files mid-copy."""
    module = FakeModule(answers={"is-active": (0, "active\n", "")})
    module.missing.discard("systemctl")
    with pytest.raises(images.ImageError, match="clone_from: tmpl is running"):
        images_io.ensure_image(module, params(machines, source="clone", clone_from="tmpl"))
    assert sorted(os.listdir(machines)) == ["tmpl"]
