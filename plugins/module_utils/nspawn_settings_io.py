# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""The I/O of the settings resource (nspawn_settings plans; see its docstring for the contract).

- ``read(module, items) -> nspawn_settings.SettingsState``: every item's file (text, mode), the host's
  systemd version (one ``systemctl --version``), which untrusted files and bind sources exist.
- ``apply(module, plan)``: does the plan's file changes (atomic write, chmod, remove); never in check mode.
- ``read_dir(directory)``: every .nspawn file of a directory, by machine name (the fleet's managed machines).
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional

from ansible_collections.corral.nspawn.plugins.module_utils import nspawn_settings as ns
from ansible_collections.corral.nspawn.plugins.module_utils.files import read_file, read_text, write_result
from ansible_collections.corral.nspawn.plugins.module_utils.runner import run


def systemd_version(module) -> Optional[int]:
    """The host's systemd version, None when systemctl is missing or fails."""
    binary = module.get_bin_path("systemctl")
    if not binary:
        return None
    rc, out, _err = run(module, [binary, "--version"], check=False)
    return ns.parse_version(out) if rc == 0 else None


def read(module, items: List[ns.SettingsItem], version: bool = True) -> ns.SettingsState:
    """Batched read for the plan; ``version=False`` skips the systemd version (no version warnings)."""
    probes = {path for item in items for path in item.probes()}
    return ns.SettingsState(files={item.path: read_file(item.path) for item in items},
                            version=systemd_version(module) if version else None,
                            exists={path: os.path.exists(path) for path in probes})


def read_dir(directory: str) -> Dict[str, str]:
    """``{machine name: text}`` of every .nspawn file in ``directory`` ({} when there is no such directory)."""
    try:
        entries = sorted(os.listdir(directory))
    except FileNotFoundError:
        return {}
    return {e[:-len(".nspawn")]: read_text(os.path.join(directory, e)) or ""
            for e in entries if e.endswith(".nspawn") and os.path.isfile(os.path.join(directory, e))}


def apply(module, plan: ns.SettingsPlan) -> None:
    """Write, chmod or remove each file as planned."""
    for result in plan.actions:
        write_result(module, result)
