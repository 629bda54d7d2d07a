# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 9 section 4: corral deletes only what it built.

- purge removes a root only when the build record beside the roots matches it (inode and build id);
- prune with an empty machine list is refused unless prune_all;
- taking over a hand-written .nspawn file is reported;
- a build discards only staging/backup dirs carrying its build marker: a live machine whose name looks
  like an old staging name is never touched.
"""

import os
import shutil
import subprocess

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import fleet, fleet_io, images
from ansible_collections.corral.nspawn.plugins.module_utils import images_backends_io as backends_io
from ansible_collections.corral.nspawn.plugins.module_utils import images_io, images_tree_io as tree

from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.fleet_fakes import (
    FakeHost, FakeModule as FleetModule, _snapshot)
from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.images_fakes import (
    FakeModule as ImageModule, params)


class HostModule(FleetModule):
    """The fleet's fake module plus what the image logic asks (no systemctl/machined on the test machine)."""

    def get_bin_path(self, name, *args, **kwargs):
        return None if name in ("systemctl", "machinectl", "importctl") else shutil.which(name)


def build(machines, name):
    result = images_io.ensure_image(ImageModule(), params(machines, name=name, source="clone", clone_from="tmpl"))
    assert result["created"]
    return os.path.join(machines, name)


def hand_made(machines, name):
    """A root made without corral (cp -a by hand, or machinectl import)."""
    root = os.path.join(machines, name)
    subprocess.run(["cp", "-a", os.path.join(machines, "tmpl"), root], check=True)
    return root


# ---------------------------------------------------------------- the build record decides (image logic)

def test_only_the_root_corral_built_is_purged(machines):
    built, hand = build(machines, "built"), hand_made(machines, "hand")
    for name, root in (("hand", hand), ("built", built)):
        assert images_io.purge_built(ImageModule(check_mode=True), machines, name)["removed"] is (name == "built")
        assert os.path.isdir(root), "check mode removed a root"
    kept = images_io.purge_built(ImageModule(), machines, "hand")
    assert not kept["removed"] and "no corral.nspawn build record" in kept["kept"] and os.path.isdir(hand)
    assert images_io.purge_built(ImageModule(), machines, "built")["removed"] and not os.path.exists(built)
    assert not os.path.exists(images.Paths(machines, "built").record), "the record outlived its root"


def test_a_forged_in_root_record_does_not_make_a_root_ours(machines):
    """Regression: the record lived inside the root, where a container (or a copy of a root) can put it."""
    built = build(machines, "built")
    hand = hand_made(machines, "hand")
    shutil.copy(os.path.join(built, images.RECORD), os.path.join(hand, images.RECORD))  # forged / copied
    shutil.copy(images.Paths(machines, "built").record, images.Paths(machines, "hand").record)
    kept = images_io.purge_built(ImageModule(), machines, "hand")
    assert not kept["removed"] and "not the root corral.nspawn built" in kept["kept"] and os.path.isdir(hand)


def test_a_root_replaced_by_hand_is_kept_even_on_a_reused_inode(machines):
    built = build(machines, "web")
    record = images_io.read_host_record(images.Paths(machines, "web"))
    shutil.rmtree(built)
    hand_made(machines, "web")
    # the file system may hand out the same inode again (forced here): the build id inside the root differs
    st = os.lstat(built)
    record.update(dev=st.st_dev, ino=st.st_ino)
    ok, why = images_io.verify_built(images.Paths(machines, "web"), "directory", record)
    assert not ok and "build id" in why


def test_a_container_removing_its_build_id_only_keeps_its_root(machines):
    built = build(machines, "web")
    os.remove(os.path.join(built, images.RECORD))
    assert images_io.purge_built(ImageModule(), machines, "web")["kept"] and os.path.isdir(built)


def test_state_absent_removes_the_named_root_even_unrecorded(machines):
    """Documented: image state=absent is an explicit request for exactly that root; its record goes too."""
    hand = hand_made(machines, "hand")
    assert images_io.ensure_image(ImageModule(), params(machines, name="hand", state="absent"))["removed"]
    assert not os.path.exists(hand)
    built = build(machines, "built")
    images_io.ensure_image(ImageModule(), params(machines, name="built", state="absent"))
    assert not os.path.exists(built) and not os.path.exists(images.Paths(machines, "built").record)


# ---------------------------------------------------------------- staging and backups: only our marked dirs

def test_a_live_machine_named_like_the_old_staging_name_survives_a_build(machines, monkeypatch):
    """Regression: building `web1` discarded (SIGKILL, rmtree) a machine named corral-staging-web1."""
    monkeypatch.setattr(images, "IMPORTD_DIR", machines)  # the old code only looked there in /var/lib/machines
    other = hand_made(machines, "corral-staging-web1")
    worker = subprocess.Popen(["sleep", "300"], cwd=other)
    try:
        result = images_io.ensure_image(ImageModule(), params(machines, source="clone", clone_from="tmpl"))
        assert result["created"] and not any("leftovers" in c for c in result["changes"])
        assert worker.poll() is None, "the other machine's process was killed"
        assert os.path.isfile(os.path.join(other, "etc/shadow")), "the other machine's root was removed"
    finally:
        worker.kill()
        worker.wait()


def test_staging_and_backup_names_are_impossible_machine_names(machines):
    from ansible_collections.corral.nspawn.plugins.module_utils.names import machine_name_error
    paths = images.Paths(machines, "web1")
    for path in (paths.staging, paths.old, paths.record):
        first = os.path.relpath(path, machines).split(os.sep)[0]
        assert first == ".corral" and machine_name_error(first) is not None


def test_an_unmarked_dir_at_the_staging_path_is_never_discarded(machines):
    paths = images.Paths(machines, "web1")
    os.makedirs(os.path.join(paths.staging, "root", "etc"))
    with pytest.raises(images.ImageError, match="no build marker"):
        images_io.ensure_image(ImageModule(), params(machines, source="clone", clone_from="tmpl"))
    assert os.path.isdir(os.path.join(paths.staging, "root", "etc"))
    with pytest.raises(images.ImageError, match="no corral.nspawn build marker"):
        tree.discard(ImageModule(), paths.staging)
    assert os.path.isdir(paths.staging)


def test_legacy_staging_dirs_are_reported_not_removed(machines):
    legacy = os.path.join(machines, ".corral-staging-web1")
    os.makedirs(os.path.join(legacy, "root"))
    module = ImageModule()
    result = images_io.ensure_image(module, params(machines, source="clone", clone_from="tmpl"))
    assert result["created"] and os.path.isdir(legacy)
    assert any(".corral-staging-web1" in w and "not removed" in w for w in module.warnings)


def test_import_leftover_of_our_own_build_is_removed(machines, monkeypatch):
    monkeypatch.setattr(images, "IMPORTD_DIR", machines)
    paths = images.Paths(machines, "web1")
    name = backends_io.new_import_name()
    tree.make_marked_dir(paths, paths.staging, name)
    hand_made(machines, name)  # what an interrupted importd import left
    result = images_io.ensure_image(ImageModule(), params(machines, source="clone", clone_from="tmpl"))
    assert result["created"] and not os.path.exists(os.path.join(machines, name))


# ---------------------------------------------------------------- the fleet

def _fleet(tmp_path, machines, items, **extra):
    base = dict(machines=items, defaults={}, templates=[], prune=False, prune_all=False, purge=False,
                restart="on_change", wait=True, timeout=10, machines_dir=machines,
                settings_dir=str(tmp_path / "nspawn"), units_dir=str(tmp_path / "system"))
    base.update(extra)
    return base


def _stopped(name, **kw):
    return dict({"name": name, "state": "stopped", "enabled": False}, **kw)


def test_prune_purge_keeps_a_hand_made_root_and_warns(tmp_path, machines):
    """Regression: prune+purge deleted any root under machines_dir/NAME once NAME was declared."""
    host = FakeHost(str(tmp_path / "system"))
    hand_made(machines, "hand")
    build(machines, "built")
    items = [_stopped("keep", template="tmpl"), _stopped("hand"), _stopped("built")]
    templates = [{"name": "tmpl", "source": "directory", "path": os.path.join(machines, "tmpl")}]
    fleet_io.run_fleet(HostModule(host, _fleet(tmp_path, machines, items, templates=templates)))
    args = _fleet(tmp_path, machines, items[:1], templates=templates, prune=True, purge=True)
    check = HostModule(host, args, check_mode=True)
    assert fleet_io.run_fleet(check)["pruned"] == ["built", "hand"]
    assert os.path.isdir(os.path.join(machines, "built")) and (tmp_path / "nspawn" / "hand.nspawn").exists()
    module = HostModule(host, args)
    result = fleet_io.run_fleet(module)
    assert result["pruned"] == ["built", "hand"] and check.warnings == module.warnings
    assert os.path.isfile(os.path.join(machines, "hand", "etc/shadow")), "a root corral did not build was purged"
    assert not os.path.exists(os.path.join(machines, "built"))
    assert not (tmp_path / "nspawn" / "hand.nspawn").exists()
    assert not (tmp_path / "system" / "systemd-nspawn@hand.service.d").exists()
    assert [w for w in module.warnings if "root kept" in w] == [
        f"purge hand: root kept: {machines}/hand (no corral.nspawn build record); its settings and drop-in were "
        "removed. Delete it with corral.nspawn.image state=absent if you mean it"]


def test_an_empty_machine_list_with_prune_is_refused_unless_prune_all(tmp_path, machines):
    """Regression: a host that lost its group vars pruned its whole fleet."""
    host = FakeHost(str(tmp_path / "system"))
    fleet_io.run_fleet(HostModule(host, _fleet(tmp_path, machines, [_stopped("a"), _stopped("b")])))
    before = _snapshot(tmp_path)
    with pytest.raises(fleet.FleetError, match=r"machines is empty.*\(a, b\).*prune_all=true"):
        fleet_io.run_fleet(HostModule(host, _fleet(tmp_path, machines, [], prune=True)))
    assert _snapshot(tmp_path) == before
    with pytest.raises(fleet.FleetError, match="prune_all: only used with prune=true"):
        fleet_io.run_fleet(HostModule(host, _fleet(tmp_path, machines, [], prune_all=True)))
    result = fleet_io.run_fleet(HostModule(host, _fleet(tmp_path, machines, [], prune=True, prune_all=True)))
    assert result["pruned"] == ["a", "b"] and os.path.isdir(os.path.join(machines, "tmpl"))


def test_an_empty_list_with_nothing_to_prune_is_not_refused(tmp_path, machines):
    result = fleet_io.run_fleet(HostModule(FakeHost(), _fleet(tmp_path, machines, [], prune=True)))
    assert result["pruned"] == [] and not result["changed"]


@pytest.mark.parametrize("text, owner", [
    ("[Exec]\nBoot=yes\n", "hand-written (no corral.nspawn marker)"),
    ("# Managed by corral.nspawn. Do not edit.\n[Exec]\nBoot=yes\n", "written by corral.nspawn.settings"),
])
def test_taking_over_a_nspawn_file_the_fleet_did_not_write_is_reported(tmp_path, machines, text, owner):
    """Regression: a hand-written /etc/systemd/nspawn/NAME.nspawn was silently overwritten and adopted."""
    (tmp_path / "nspawn").mkdir()
    (tmp_path / "nspawn" / "hand.nspawn").write_text(text)
    hand_made(machines, "hand")
    host = FakeHost(str(tmp_path / "system"))
    for check in (True, False):
        module = HostModule(host, _fleet(tmp_path, machines, [_stopped("hand")]), check_mode=check)
        changes = fleet_io.run_fleet(module)["machines"]["hand"]["changes"]
        assert changes[0].startswith(f"settings: adopt {tmp_path}/nspawn/hand.nspawn, {owner}")
        assert any("adopt" in w and owner in w for w in module.warnings)
    again = HostModule(host, _fleet(tmp_path, machines, [_stopped("hand")]))
    assert not fleet_io.run_fleet(again)["changed"] and not again.warnings
