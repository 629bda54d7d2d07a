# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Container root filesystems, the I/O half: read what is on disk, apply a plan, the one-item run.

    read(module, layout, items) -> List[images.ImageState]     batched, nothing changes, check mode OK
    apply(module, layout, plan) -> {name: outcome}              never called in check mode
    ensure_image(module, params) -> dict                       read -> images.plan -> apply -> images.result
    purge_built(module, machines_dir, name) -> dict            the fleet's prune of a root corral built

An outcome is ``{"timings": {...}, "setup_words": [...], "warnings": [...]}``; images.result turns
a plan and its outcome into the module's result.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from typing import Dict, List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils import (
    images, images_backends as backends, images_backends_io as backends_io, images_setup, images_setup_io,
    images_tree_io as tree, rootfs, systemd)
from ansible_collections.corral.nspawn.plugins.module_utils.images import (
    RECORD, Current, ImageError, ImageState, ItemPlan, Paths)
from ansible_collections.corral.nspawn.plugins.module_utils.layout import Layout
from ansible_collections.corral.nspawn.plugins.module_utils.runner import run


# ---------------------------------------------------------------- build records

def read_record(root: str) -> Optional[dict]:
    """The in-root record (untrusted: the container may have written it), read through the root-confined API."""
    try:
        with rootfs.RootFS(root) as fs:
            return images.json_lines(fs.read_text(RECORD, limit=64 * 1024))
    except (OSError, rootfs.RootError, UnicodeDecodeError):
        return None


def read_host_record(paths: Paths) -> Optional[dict]:
    """The build record beside the roots (host-owned dir no container reaches)."""
    return tree.read_json(paths.record)


def verify_built(paths: Paths, kind: str, record: Optional[dict]) -> Tuple[bool, str]:
    """(True, "") when this very root is the one corral built, else (False, why).

    The record names the root's inode (a root replaced by hand has another one)
    and a random build id that is also inside the root (an inode reused for a
    hand-made root does not carry it).
    """
    if record is None:
        return False, "no corral.nspawn build record"
    path = paths.raw if kind == "raw" else paths.root
    try:
        st = os.lstat(path)
    except OSError:
        return False, "it does not exist"
    if kind not in ("directory", "raw") or record.get("kind") != kind or \
            [st.st_dev, st.st_ino] != [record.get("dev"), record.get("ino")]:
        return False, "it is not the root corral.nspawn built (replaced since)"
    if kind == "directory":
        inside = read_record(path) or {}
        if not record.get("build_id") or inside.get("build_id") != record.get("build_id"):
            return False, "its build id does not match the build record"
    return True, ""


def write_host_record(paths: Paths, kind: str, params: dict, build_id: str) -> None:
    """Record beside the roots that corral built this root (after it is in place: its inode is final)."""
    st = os.lstat(paths.raw if kind == "raw" else paths.root)
    data = {"name": paths.name, "kind": kind, "dev": st.st_dev, "ino": st.st_ino, "build_id": build_id,
            "source": backends.source_record(params), "built": int(time.time())}
    directory = os.path.dirname(paths.record)
    tree.private_dirs(paths, directory)
    tree.write_json(f"{paths.record}.tmp", data)
    os.rename(f"{paths.record}.tmp", paths.record)
    tree.fsync_dir(directory)


def drop_host_record(paths: Paths) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(paths.record)


# ---------------------------------------------------------------- read

def read_current(module, paths: Paths, running: Optional[bool] = None) -> Current:
    current = Current(running=tree.is_running(module, paths.name, running),
                      legacy=[path for path in paths.legacy if os.path.lexists(path)])
    for path in (paths.staging, paths.old):
        if os.path.lexists(path):
            (current.leftovers if tree.read_marker(path) is not None else current.foreign).append(path)
    if os.path.islink(paths.root):
        current.exists, current.kind, current.target = True, "symlink", os.readlink(paths.root)
        current.real, current.real_machines_dir = os.path.realpath(paths.root), os.path.realpath(paths.machines_dir)
    elif os.path.isdir(paths.root):
        current.exists, current.kind = True, "directory"
    elif os.path.isfile(paths.raw):
        current.exists, current.kind = True, "raw"
    if current.exists:
        record = read_host_record(paths)
        current.built, current.built_reason = verify_built(paths, current.kind, record)
        # Drift is compared with what corral recorded; a legacy root has only its in-root record (untrusted,
        # used for the drift warning only, never to decide a deletion).
        legacy = read_record(paths.root) if current.kind == "directory" and record is None else None
        current.record = (record or {}).get("source") if current.built else (
            legacy if legacy and "source" in legacy else None)
    return current


def predicted_setup(module, params: dict, paths: Paths) -> Tuple[List[str], List[str]]:
    """(words, warnings) of the preparation a new root will get, as the build will report them.

    A copy (clone, directory) starts as its source, so preparing the source in a dry run gives
    exactly the real run's actions. ``_source_planned``: the source does not exist yet (a template the
    fleet builds earlier in the same run); ``_predict_from`` then names what it will be a copy of, if
    known. Other sources: the generic prediction.
    """
    source = params.get("_predict_from")
    if not params.get("_source_planned") and params["source"] in backends.COPY_SOURCES:
        source = images.copy_source(params, paths)
    # An unreadable source is predicted the generic way (the real run reports what is wrong with it).
    with contextlib.suppress(images_setup.SetupError, OSError):
        if source and os.path.isdir(source):
            # a template built in this run had its own fresh reset (machine-id, host keys) before the copy
            todo = images_setup_io.prepare(module, source, params, fresh=not params.get("_source_planned"), dry=True)
            return todo.changes, todo.warnings
    return images_setup.predict(params), []


def read_one(module, layout: Layout, params: dict) -> ImageState:
    """One image: its options checked, what is on disk, and what building or preparing it needs to know."""
    params = images.normalize(params)
    errors = images.validate(params)
    if errors:
        raise ImageError("; ".join(errors))
    paths = Paths(layout.machines_dir, params["name"])
    state = ImageState(params, paths, read_current(module, paths, params.get("_running")))
    action = images.plan_item(params, paths, state.current).action
    if action in ("create", "rebuild"):
        state.method = backends_io.check_source(module, params, paths, state.warnings)
        state.setup_words, state.setup_warnings = predicted_setup(module, params, paths)
    elif params["state"] == "present" and state.current.kind in ("directory", "symlink") and \
            not params.get("_setup_unread"):   # the fleet: a running machine that waits for a restart anyway
        with images_setup_io.confined(os.path.realpath(paths.root)) as fs:
            state.setup = images_setup_io.read(module, fs, params)
    return state


def read(module, layout: Layout, items: List[dict]) -> List[ImageState]:
    """Every image's state (raises ImageError or SetupError before anything changes)."""
    return [read_one(module, layout, params) for params in items]


# ---------------------------------------------------------------- apply

def build(module, todo: ItemPlan, outcome: dict) -> None:
    """Staging build, post-setup in staging, then rename into place (a rebuilt root's old one goes to the
    backup dir first); staging is removed on any failure. Timings and the preparation's words go to ``outcome``."""
    params, paths, timings = todo.params, todo.paths, outcome["timings"]
    os.makedirs(paths.machines_dir, mode=0o700, exist_ok=True)
    build_id = secrets.token_hex(16)
    paths.import_name = backends_io.new_import_name() if params["source"] in backends.IMPORT_SOURCES else ""
    tree.make_marked_dir(paths, paths.staging, paths.import_name)
    raw = params["source"] == "raw"
    built, final = os.path.join(paths.staging, "root.raw" if raw else "root"), paths.raw if raw else paths.root
    try:
        started = time.monotonic()
        backends_io.make_root(module, params, paths, built)
        timings["build"] = round(time.monotonic() - started, 3)
        started = time.monotonic()
        if not raw:
            prepared = images_setup_io.prepare(module, built, params, fresh=True)
            # What a fresh build reports: the actions done for a copy (check mode read its source), the
            # generic words for an archive or a bootstrap, whose content check mode cannot read.
            copied = params["source"] in backends.COPY_SOURCES
            outcome["setup_words"] = prepared.changes if copied else images_setup.predict(params)
            outcome["warnings"] = prepared.warnings
            # Never open(built/RECORD): an imported tarball may have put a symlink there.
            with rootfs.RootFS(built) as fs:
                fs.write(RECORD, images.build_id_text(build_id), 0o644, owner=(0, 0))
        timings["setup"] = round(time.monotonic() - started, 3)
        if todo.action == "rebuild":
            tree.make_marked_dir(paths, paths.old)
            os.rename(final, os.path.join(paths.old, os.path.basename(built)))
            drop_host_record(paths)
        os.rename(built, final)
        tree.fsync_dir(paths.machines_dir)
        if todo.action == "rebuild":
            tree.discard(module, paths.old)
        write_host_record(paths, "raw" if raw else "directory", params, build_id)
    finally:
        if os.path.lexists(paths.staging):
            tree.discard(module, paths.staging)


def stop_machine(module, name: str, timeout: float = 60) -> None:
    machinectl = module.get_bin_path("machinectl")
    if machinectl and os.path.exists(f"/run/systemd/machines/{name}"):
        run(module, [machinectl, "terminate", name], check=False)
    systemctl = module.get_bin_path("systemctl")
    if systemctl:
        run(module, [systemctl, "stop", systemd.unit_name(name)], check=False)
    deadline = time.monotonic() + timeout
    while tree.is_running(module, name):
        if time.monotonic() > deadline:
            raise ImageError(f"force: {name} is still running {timeout:.0f} s after terminate; not removed")
        time.sleep(0.5)


def remove_image(module, paths: Paths, current: Current) -> None:
    """state=absent: the user named this root, so it goes whether or not corral built it; its record too."""
    drop_host_record(paths)
    if current.kind == "symlink":
        os.unlink(paths.root)
        return
    path = paths.raw if current.kind == "raw" else paths.root
    if current.kind == "directory":
        busy = tree.processes_using(path)
        mounted = tree.mounts_under(path)
        if busy or mounted:
            raise ImageError(f"state=absent: {path} is in use (processes {busy}, mounts {mounted}); "
                             "stop what uses it first")
    tree.remove_tree(module, path)
    tree.fsync_dir(paths.machines_dir)


def apply_one(module, todo: ItemPlan) -> dict:
    """Do one image's plan: cleanup, stop, remove, build (prepared in staging) or prepare the existing root."""
    timings: Dict[str, float] = {}
    outcome = {"timings": timings, "setup_words": [], "warnings": []}
    begin = time.monotonic()
    for leftover in todo.cleanup:
        tree.discard(module, leftover)
    timings["cleanup"] = round(time.monotonic() - begin, 3)
    if todo.stop:
        stop_machine(module, todo.params["name"])
    if todo.action == "remove":
        remove_image(module, todo.paths, todo.current)
    elif todo.action in ("create", "rebuild"):
        backends_io.check_source(module, todo.params, todo.paths, [], building=True)   # a template built first exists now
        build(module, todo, outcome)
    elif todo.setup is not None:
        begin = time.monotonic()
        with images_setup_io.confined(os.path.realpath(todo.paths.root)) as fs:
            images_setup_io.apply(module, fs, todo.setup)
        timings["setup"] = round(time.monotonic() - begin, 3)
    return outcome


def apply(module, layout: Layout, todo: images.ImagesPlan) -> Dict[str, dict]:  # pylint: disable=unused-argument
    """Every image's plan, in item order (templates before their clones)."""
    return {name: apply_one(module, item) for name, item in todo.items.items()}


# ---------------------------------------------------------------- entry points

def ensure_image(module, params: dict) -> dict:
    """Reconcile one image (state present/absent) and its post-setup; honours check and diff mode.

    Returns the images.result dict plus ``elapsed``; warnings go through module.warn.
    Raises ImageError, SetupError or CommandError; nothing is changed before validation passed.
    """
    started = time.monotonic()
    layout = Layout.from_params(params)
    todo = images.plan([params], read(module, layout, [params]))
    item = next(iter(todo.items.values()))
    outcome = None if module.check_mode else apply(module, layout, todo)[item.paths.name]
    result = images.result(item, outcome)
    for warning in result.pop("warnings"):
        module.warn(warning)
    result["elapsed"] = round(time.monotonic() - started, 3)
    return result


def purge_built(module, machines_dir: str, name: str) -> dict:
    """The fleet's purge: remove a root only when corral built this very root; honours check mode.

    Returns ``removed`` (bool), ``path`` and ``kept`` (why a root that exists was kept, else "").
    A root corral did not build (hand-made, imported with machinectl, adopted) is never deleted here.
    """
    paths = Paths(machines_dir, name)
    current = read_current(module, paths)
    path = paths.raw if current.kind == "raw" else paths.root
    if not current.exists or not current.built:
        if not current.exists and not module.check_mode:
            drop_host_record(paths)
        return {"removed": False, "path": path, "kept": current.built_reason if current.exists else ""}
    if not module.check_mode:
        remove_image(module, paths, current)
    return {"removed": True, "path": path, "kept": ""}
