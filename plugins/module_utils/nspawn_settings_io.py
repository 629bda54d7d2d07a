# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The I/O of the settings resource (nspawn_settings plans; see its docstring for the contract).

- ``read(module, items) -> nspawn_settings.SettingsState``: every item's file (text, mode), the host's
  systemd version (one ``systemctl --version``), which untrusted files and bind sources exist.
- ``apply(module, plan)``: does the plan's file changes (atomic write, chmod, remove); never in check mode.
- ``read_file(path)`` and ``write_result(module, result)``: the (text, mode) read and the FileResult write that
  resources_io, nat_io and network_io use too.
"""

from __future__ import annotations

import os
from typing import List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils import nspawn_settings as ns
from ansible_collections.corral.nspawn.plugins.module_utils.files import FileResult, atomic_write, read_text
from ansible_collections.corral.nspawn.plugins.module_utils.runner import run


def systemd_version(module) -> Optional[int]:
    """The host's systemd version, None when systemctl is missing or fails."""
    binary = module.get_bin_path("systemctl")
    if not binary:
        return None
    rc, out, _err = run(module, [binary, "--version"], check=False)
    return ns.parse_version(out) if rc == 0 else None


def read_file(path: str) -> Tuple[Optional[str], Optional[int]]:
    """(text, mode) of a file, (None, None) when it does not exist."""
    text = read_text(path)
    try:
        mode = os.stat(path).st_mode & 0o7777 if text is not None else None
    except FileNotFoundError:
        return None, None
    return text, mode


def read(module, items: List[ns.SettingsItem], version: bool = True) -> ns.SettingsState:
    """Batched read for the plan; ``version=False`` skips the systemd version (no version warnings)."""
    probes = {path for item in items for path in item.probes()}
    return ns.SettingsState(files={item.path: read_file(item.path) for item in items},
                            version=systemd_version(module) if version else None,
                            exists={path: os.path.exists(path) for path in probes})


def write_result(module, result: FileResult, mode: int = 0o644) -> None:
    """Do one planned file change (files.FileResult): atomic write, chmod only, or remove; none: nothing."""
    if result.action == "chmod":
        os.chmod(result.path, mode)
    elif result.action == "remove":
        try:
            os.unlink(result.path)
        except FileNotFoundError:
            pass
    elif result.changed:
        atomic_write(module, result.path, result.diff["after"], mode)


def apply(module, plan: ns.SettingsPlan) -> None:
    """Write, chmod or remove each file as planned."""
    for result in plan.actions:
        write_result(module, result)
