# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Pure command-line builders for every way the image module makes a root.

Each builder takes the module parameters (a plain dict) and paths, and returns a
list of argv lists; nothing here runs a command or touches the disk.
"""

from __future__ import annotations

import os
from typing import List, Optional

# Each bootstrap source is also the host command it needs (checked with get_bin_path before any change).
BOOTSTRAP_SOURCES = ("debootstrap", "pacstrap", "dnf", "zypper", "mkosi")
IMPORT_SOURCES = ("tar", "raw")
COPY_SOURCES = ("clone", "directory")
SOURCES = BOOTSTRAP_SOURCES + IMPORT_SOURCES + COPY_SOURCES

# The options that describe how a root was made; a change of one of them on an
# existing image is drift (warned about, rebuilt only with force).
SOURCE_KEYS = {
    "debootstrap": ("suite", "variant", "components", "include", "exclude", "mirror", "keyring", "arch",
                    "extra_args"),
    "pacstrap": ("packages", "pacstrap_host_cache", "pacstrap_init_keyring", "extra_args"),
    "dnf": ("releasever", "packages", "repos", "arch", "extra_args"),
    "zypper": ("releasever", "packages", "repos", "extra_args"),
    "mkosi": ("mkosi_directory", "extra_args"),
    "tar": ("path", "url", "checksum"),
    "raw": ("path", "url", "checksum"),
    "clone": ("clone_from",),
    "directory": ("path",),
}


def _flag(flag: str, value) -> List[str]:
    """``[FLAG=VALUE]`` (a list joined by commas), nothing when the option is not given."""
    if not value:
        return []
    return [f"{flag}={','.join(value) if isinstance(value, list) else value}"]


def _extra(params: dict) -> List[str]:
    return list(params.get("extra_args") or [])


def debootstrap(params: dict, target: str) -> List[List[str]]:
    """``debootstrap [options] SUITE TARGET [MIRROR]``; without mirror debootstrap's default applies."""
    argv = ["debootstrap"]
    for key in ("variant", "components", "include", "exclude", "arch", "keyring"):
        argv += _flag(f"--{key}", params.get(key))
    argv += _extra(params)
    argv += [params["suite"], target]
    if params.get("mirror"):
        argv.append(params["mirror"])
    return [argv]


def pacstrap(params: dict, target: str) -> List[List[str]]:
    """``pacstrap [-c] [-K] TARGET PACKAGES`` (ArchWiki: ``pacstrap -K -c DIR base``)."""
    argv = ["pacstrap"]
    if params.get("pacstrap_host_cache", True):
        argv.append("-c")
    if params.get("pacstrap_init_keyring", True):
        argv.append("-K")
    argv += _extra(params)
    argv.append(target)
    argv += list(params.get("packages") or ["base"])
    return [argv]


def dnf(params: dict, target: str) -> List[List[str]]:
    """``dnf --installroot=TARGET --releasever=N ... install PACKAGES``."""
    argv = ["dnf", "-y", f"--installroot={target}", f"--releasever={params['releasever']}",
            "--setopt=install_weak_deps=False"]
    argv += _flag("--forcearch", params.get("arch"))
    argv += [f"--repo={repo}" for repo in params.get("repos") or []]
    argv += _extra(params)
    argv += ["install"] + list(params["packages"])
    return [argv]


def zypper(params: dict, target: str) -> List[List[str]]:
    """One ``zypper --root TARGET addrepo`` per repository, then the install."""
    base = ["zypper", "--root", target, "--non-interactive", "--gpg-auto-import-keys"]
    if params.get("releasever"):
        base += ["--releasever", str(params["releasever"])]
    commands = [base + ["addrepo", "--refresh", url, f"corral-repo{index}"]
                for index, url in enumerate(params.get("repos") or [])]
    commands.append(base + _extra(params) + ["install", "--no-recommends"] + list(params["packages"]))
    return commands


def mkosi(params: dict, target: str) -> List[List[str]]:
    """``mkosi -C CONFIG --format=directory --output-dir=DIR --output=NAME --force build``."""
    return [["mkosi", "-C", params["mkosi_directory"], "--format=directory",
             f"--output-dir={os.path.dirname(target)}", f"--output={os.path.basename(target)}",
             "--force"] + _extra(params) + ["build"]]


BUILDERS = {"debootstrap": debootstrap, "pacstrap": pacstrap, "dnf": dnf, "zypper": zypper, "mkosi": mkosi}


def bootstrap_commands(params: dict, target: str) -> List[List[str]]:
    """The commands that build a root of ``params['source']`` at ``target``."""
    return BUILDERS[params["source"]](params, target)


def tar_extract(archive: str, target: str) -> List[str]:
    """Unpack a (possibly compressed) root tarball keeping owners, modes, xattrs and ACLs."""
    return ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "-xpf", archive, "-C", target]


def importer_commands(importer: str, kind: str, archive: str, machine: str) -> List[List[str]]:
    """systemd-importd import of a local file as image ``machine`` (importctl 256+, machinectl before)."""
    if importer == "importctl":
        return [["importctl", f"import-{kind}", "--class=machine", archive, machine]]
    return [["machinectl", f"import-{kind}", archive, machine]]


def copy_commands(method: str, source: str, target: str) -> List[List[str]]:
    """A btrfs snapshot, or cp keeping every attribute, xattr, ACL and hardlink (reflinks where possible).

    With --no-target-directory an existing empty target (a fresh subvolume) receives the contents.
    """
    if method == "snapshot":
        return [["btrfs", "subvolume", "snapshot", source, target]]
    return [["cp", "-a", "--reflink=auto", "--no-target-directory", source, target]]


def create_subvolume(path: str) -> List[str]:
    return ["btrfs", "subvolume", "create", path]


def remove_subvolume(path: str) -> List[str]:
    return ["btrfs", "subvolume", "delete", path]


def source_record(params: dict) -> dict:
    """The options that define how a root is made (recorded in the root, compared for drift)."""
    source = params["source"]
    return {"source": source, **{key: params.get(key) for key in SOURCE_KEYS[source]}}


def drift(recorded: Optional[dict], desired: dict) -> List[str]:
    """Human readable differences between the recorded and the desired source options."""
    if recorded is None:
        return []
    keys = sorted(set(recorded) | set(desired))
    return [f"{key}: {recorded.get(key)!r} -> {desired.get(key)!r}" for key in keys
            if recorded.get(key) != desired.get(key)]
