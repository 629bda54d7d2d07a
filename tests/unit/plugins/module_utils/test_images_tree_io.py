# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for images_tree_io: mounts under a path, fs types, stopping processes left in staging."""

import subprocess

from ansible_collections.corral.nspawn.plugins.module_utils import images, images_tree_io as tree
from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.images_fakes import FakeModule


MOUNTINFO = """22 1 8:1 / / rw - ext4 /dev/vda rw
40 22 0:40 / /var/lib/machines rw - btrfs /dev/vdb rw
41 40 0:41 / /var/lib/machines/.corral-staging-web1/root/proc rw - proc proc rw
42 40 0:42 / /var/lib/machines/.corral-staging-web1/root/proc/sys/fs/binfmt_misc rw - binfmt_misc x rw
43 22 0:43 / /srv/with\\040space rw - tmpfs tmpfs rw
"""


def test_mounts_under_deepest_first_and_fs_type():
    mounts = images.parse_mountinfo(MOUNTINFO)
    assert ("/srv/with space", "tmpfs") in mounts
    assert tree.mounts_under("/var/lib/machines/.corral-staging-web1", mounts) == [
        "/var/lib/machines/.corral-staging-web1/root/proc/sys/fs/binfmt_misc",
        "/var/lib/machines/.corral-staging-web1/root/proc"]
    assert tree.mounts_under("/var/lib/machines/web1", mounts) == []
    assert tree.fs_type("/var/lib/machines/web1", mounts) == "btrfs"
    assert tree.fs_type("/var/lib/machinesX", mounts) == "ext4"


def test_discard_stops_processes_left_working_in_staging(tmp_path):
    """Regression for kill -9 of the module: orphaned builder processes in staging are stopped first."""
    paths = images.Paths(str(tmp_path), "web1")
    tree.make_marked_dir(paths, paths.staging)
    staging = tmp_path / ".corral" / "staging" / "web1"
    (staging / "root").mkdir(parents=True)
    orphan = subprocess.Popen(["sleep", "300"], cwd=str(staging / "root"))
    try:
        assert orphan.pid in tree.processes_using(str(staging))
        tree.discard(FakeModule(), str(staging))
        assert orphan.wait(timeout=10) == -9 and not staging.exists()
    finally:
        if orphan.poll() is None:
            orphan.kill()
