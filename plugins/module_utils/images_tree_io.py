# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Image I/O on the host around the roots: our staging/backup dirs (build markers), whether a machine
runs, processes and mounts left in a dir, file system types, and removing a tree without following links.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from typing import List, Optional

from ansible_collections.corral.nspawn.plugins.module_utils import images, images_backends as backends, systemd
from ansible_collections.corral.nspawn.plugins.module_utils.images import (
    BTRFS_MAGIC, BUILD_MARKER, IMPORT_PREFIX, ImageError, Paths, json_lines, parse_mountinfo, path_uses)
from ansible_collections.corral.nspawn.plugins.module_utils.names import machine_name_error
from ansible_collections.corral.nspawn.plugins.module_utils.runner import run


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dirs(paths: Paths, directory: str) -> None:
    """Create machines_dir/.corral/... (0700); refuse a symlink or file where our dir belongs."""
    for path in (paths.state_dir, directory):
        if os.path.lexists(path) and (os.path.islink(path) or not os.path.isdir(path)):
            raise ImageError(f"{path} is not a directory (a symlink or file where corral.nspawn keeps its state); "
                             "refusing to use it")
        os.makedirs(path, mode=0o700, exist_ok=True)


def read_marker(path: str) -> Optional[dict]:
    """The build marker of one of our staging/backup dirs (None: not ours)."""
    marker = os.path.join(path, BUILD_MARKER)
    if os.path.islink(path) or not os.path.isdir(path) or os.path.islink(marker) or not os.path.isfile(marker):
        return None
    data = read_json(marker)
    return data if data and data.get("name") == os.path.basename(path) else None


def make_marked_dir(paths: Paths, path: str, import_name: str = "") -> None:
    """A new staging/backup dir with our build marker written at once (only marked dirs are ever discarded)."""
    private_dirs(paths, os.path.dirname(path))
    os.mkdir(path, 0o700)
    write_json(os.path.join(path, BUILD_MARKER), {"name": paths.name, "import_name": import_name, "pid": os.getpid()},
               os.O_EXCL)


def read_json(path: str) -> Optional[dict]:
    """A host-owned JSON file (a build marker or record) as a dict; None when missing or not a JSON object."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json_lines(handle.read())
    except (OSError, ValueError):
        return None


def write_json(path: str, data: dict, flags: int = os.O_TRUNC) -> None:
    """A host-owned JSON file (0600), never through a link, on disk before we go on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def is_running(module, name: str, known: Optional[bool] = None) -> bool:
    """Registered with machined, or its systemd-nspawn@ unit active (works without machined too).

    ``known``: the caller already read the unit's state (the fleet's one batched ``show``), so
    no command per machine is needed.
    """
    if os.path.exists(f"/run/systemd/machines/{name}"):
        return True
    if known is not None:
        return known
    systemctl = module.get_bin_path("systemctl")
    if not systemctl:
        return False
    out = run(module, [systemctl, "is-active", systemd.unit_name(name)], check=False)[1]
    return out.strip() in systemd.RUNNING_STATES + ("deactivating",)   # still holds its root while it stops


# ---------------------------------------------------------------- processes, mounts, filesystems

def _mountinfo() -> List[tuple]:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return parse_mountinfo(handle.read())


def mounts_under(path: str, mounts: Optional[List[tuple]] = None) -> List[str]:
    """Mount points at or below ``path``, deepest first (the order to unmount them)."""
    real = os.path.realpath(path)
    found = [point for point, _fstype in (mounts if mounts is not None else _mountinfo())
             if point == real or point.startswith(real + os.sep)]
    return sorted(set(found), key=lambda p: (-p.count(os.sep), p))


def fs_type(path: str, mounts: Optional[List[tuple]] = None) -> str:
    """File system type of the mount holding ``path`` (longest mount point prefix)."""
    real = os.path.realpath(path)
    best, kind = "", "unknown"
    for point, fstype in mounts if mounts is not None else _mountinfo():
        if (real == point or real.startswith(point.rstrip(os.sep) + os.sep)) and len(point) >= len(best):
            best, kind = point, fstype
    return kind


def is_subvolume(path: str) -> bool:
    """A btrfs subvolume's top directory always has inode 256."""
    try:
        return not os.path.islink(path) and os.stat(path).st_ino == 256 and fs_type(path) == BTRFS_MAGIC
    except OSError:
        return False


def processes_using(path: str) -> List[int]:
    """PIDs of processes left working in ``path`` (e.g. debootstrap and its chrooted dpkg after a kill -9)."""
    real, pids = os.path.realpath(path), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = [a.decode("utf-8", "replace") for a in handle.read().split(b"\0") if a]
            root, cwd = os.readlink(f"/proc/{entry}/root"), os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if path_uses(real, argv, root, cwd):
            pids.append(int(entry))
    return pids


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _kill_all(pids: List[int], timeout: float = 10) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)


def _unmount_all(module, path: str) -> None:
    for point in mounts_under(path):
        if run(module, ["umount", point], check=False)[0] != 0:
            run(module, ["umount", "--lazy", point], check=False)
    left = mounts_under(path)
    if left:
        raise ImageError(f"cannot remove {path}: still mounted: {', '.join(left)}")


def remove_tree(module, path: str) -> None:
    """Remove a file, a symlink (never its target), a subvolume or a directory tree (no symlinks followed)."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif is_subvolume(path) and module.get_bin_path("btrfs"):
        # Instant for a plain subvolume; one holding nested subvolumes is emptied file by file
        # (root may rmdir empty subvolumes since Linux 4.18).
        if run(module, backends.remove_subvolume(path), check=False)[0] != 0:
            shutil.rmtree(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def discard(module, path: str) -> None:
    """Remove our own staging/backup dir: stop processes still in it, unmount what they mounted, delete it.

    Only a dir carrying our build marker is ever touched (a live machine is never one of them).
    """
    marker = read_marker(path)
    if marker is None:
        raise ImageError(f"{path}: no corral.nspawn build marker in it; not removed")
    imported = marker.get("import_name") or ""
    if imported.startswith(IMPORT_PREFIX) and machine_name_error(imported) is None:
        _discard_import(module, imported)
    _kill_all(processes_using(path))
    _unmount_all(module, path)
    remove_tree(module, path)


def _discard_import(module, name: str) -> None:
    """What an interrupted importd import of this build left in /var/lib/machines (the name is ours, random)."""
    leftovers = [p for p in (os.path.join(images.IMPORTD_DIR, name), os.path.join(images.IMPORTD_DIR, name + ".raw"))
                 if os.path.lexists(p)]
    if leftovers and is_running(module, name):
        module.warn(f"{name}: a machine of that name runs; the import leftover {leftovers[0]} is not removed")
        return
    for path in leftovers:
        if not os.path.islink(path):
            _kill_all(processes_using(path))
            _unmount_all(module, path)
        remove_tree(module, path)
