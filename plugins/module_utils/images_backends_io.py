# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Image I/O of the sources: which tools and importer the host has, fetching and checking an archive,
and making a root in the staging dir (bootstrap, import, copy) with the commands images_backends renders.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from typing import List
from urllib.parse import urlparse

from ansible_collections.corral.nspawn.plugins.module_utils import images, images_tree_io as tree
from ansible_collections.corral.nspawn.plugins.module_utils import images_backends as backends
from ansible_collections.corral.nspawn.plugins.module_utils.images import (
    BTRFS_MAGIC, IMPORT_PREFIX, ImageError, Paths, copy_source)
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError, run


def new_import_name() -> str:
    """A fresh importd image name for one build (importd only takes valid machine names)."""
    return IMPORT_PREFIX + secrets.token_hex(8)


def choose_importer(module, params: dict, paths: Paths) -> str:
    """importctl (systemd 256+), machinectl (systemd-importd, booted host), or plain tar."""
    wanted, source = params["importer"], params["source"]
    importd_ok = paths.machines_dir.rstrip("/") == images.IMPORTD_DIR
    if wanted in ("importctl", "machinectl"):
        if not importd_ok:
            raise ImageError(f"importer={wanted}: systemd-importd imports only into {images.IMPORTD_DIR}, not into "
                             f"machines_dir={paths.machines_dir}; use importer=tar or importer=auto")
        return wanted
    if wanted == "auto" and importd_ok and os.path.isdir("/run/systemd/system"):
        for tool in ("importctl", "machinectl"):
            if module.get_bin_path(tool):
                return tool
    if source == "raw":
        raise ImageError("source=raw needs systemd-importd (importctl or machinectl import-raw) on a host booted "
                         f"with systemd, and machines_dir={images.IMPORTD_DIR}")
    return "tar"


def copy_method(src: str, machines_dir: str) -> str:
    """btrfs snapshot when both the source and the machines dir are btrfs, else cp --reflink=auto."""
    if tree.is_subvolume(src) and tree.fs_type(machines_dir) == BTRFS_MAGIC:
        return "snapshot"
    return "copy"


def check_source(module, params: dict, paths: Paths, warnings: List[str], building: bool = False) -> str:
    """Fail before any change when the host lacks what the source needs; how the root will be made, in words
    (returned as ``method``).

    A clone's template may be planned in the same run (``_source_planned``: the fleet builds it first),
    so it must exist only when the clone is built (``building``).
    """
    source = params["source"]
    if source in backends.BOOTSTRAP_SOURCES and not module.get_bin_path(source):
        raise ImageError(f"source={source} needs the {source!r} command on the host, which is not "
                         f"installed (not found in PATH); install it or choose another source")
    if source in backends.IMPORT_SOURCES:
        tool = choose_importer(module, params, paths)
        if not module.get_bin_path(tool):
            raise ImageError(f"source={source} with importer={tool}: {tool!r} is not installed on the host")
        if params.get("path") and not os.path.isfile(params["path"]):
            raise ImageError(f"path: {params['path']} does not exist or is not a file")
        return f"{tool} import-{source}" if tool != "tar" else "tar extract"
    if source == "clone" and tree.is_running(module, params["clone_from"]):
        raise ImageError(f"clone_from: {params['clone_from']} is running; a running container owns its root and could "
                         "make the copy read host files through links it swaps in; stop it, or clone from a template "
                         "that is never booted")
    if source not in backends.COPY_SOURCES:
        return source
    src = copy_source(params, paths)
    if os.path.isdir(src):
        return "btrfs snapshot" if copy_method(src, paths.machines_dir) == "snapshot" else "cp --reflink=auto"
    message = f"{'clone_from' if source == 'clone' else 'path'}: {src} is not an existing directory"
    planned = params.get("_source_planned")
    if building or source != "clone" or not (module.check_mode or planned):
        raise ImageError(message)
    if not planned:
        warnings.append(message + " (yet); a real run fails unless an earlier task creates it")
    return "copy"


def _guarded(module, argv: List[str]) -> List[str]:
    """Children die with the module (a killed run must not leave a builder writing into staging)."""
    setpriv = module.get_bin_path("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] + argv if setpriv else argv


def fetch(module, params: dict, staging: str) -> str:
    """Local path of the archive (downloaded into staging for a URL), checksum verified."""
    url = params.get("url")
    if not url:
        local = params["path"]
    elif url.startswith("file://"):
        local = urlparse(url).path
    else:
        from ansible.module_utils.urls import open_url
        local = os.path.join(staging, "download-" + (os.path.basename(urlparse(url).path) or "image"))
        response = open_url(url, validate_certs=params["validate_certs"], timeout=60)
        with open(local, "wb") as handle:
            shutil.copyfileobj(response, handle, 1024 * 1024)
    if params.get("checksum"):
        verify_checksum(local, params["checksum"])
    return local


def verify_checksum(path: str, checksum: str) -> None:
    algorithm, _sep, expected = checksum.partition(":")
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    if digest.hexdigest().lower() != expected.lower():
        raise ImageError(f"checksum: {path} has {algorithm}:{digest.hexdigest()}, expected {checksum}; "
                         "nothing imported")


def new_root_dir(module, machines_dir: str, target: str) -> None:
    """An empty root: a btrfs subvolume where machines_dir is btrfs (so it can be snapshotted later), else a dir."""
    if tree.fs_type(machines_dir) == BTRFS_MAGIC and module.get_bin_path("btrfs"):
        run(module, backends.create_subvolume(target))
        os.chmod(target, 0o755)
    else:
        os.mkdir(target, 0o755)


def make_root(module, params: dict, paths: Paths, target: str) -> None:
    """Build the root of ``params['source']`` at ``target`` (inside the staging dir)."""
    source = params["source"]
    if source in backends.BUILDERS:
        if source != "mkosi":
            new_root_dir(module, paths.machines_dir, target)
        for argv in backends.bootstrap_commands(params, target):
            run(module, _guarded(module, [module.get_bin_path(argv[0])] + argv[1:]))
    elif source in backends.IMPORT_SOURCES:
        archive = fetch(module, params, os.path.dirname(target))
        importer = choose_importer(module, params, paths)
        if importer == "tar":
            new_root_dir(module, paths.machines_dir, target)
            run(module, _guarded(module, backends.tar_extract(archive, target)))
        else:
            for argv in backends.importer_commands(importer, source, archive, paths.import_name):
                run(module, argv)
            imported = os.path.join(images.IMPORTD_DIR, paths.import_name + (".raw" if source == "raw" else ""))
            os.rename(imported, target)
    else:
        src = copy_source(params, paths)
        method = copy_method(src, paths.machines_dir)
        if method == "snapshot":
            try:
                run(module, _guarded(module, backends.copy_commands(method, src, target)[0]))
                return
            except CommandError:
                tree.remove_tree(module, target)  # e.g. another btrfs file system: copy instead
        new_root_dir(module, paths.machines_dir, target)
        run(module, _guarded(module, backends.copy_commands("copy", src, target)[0]))
