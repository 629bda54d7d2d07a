# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Options several modules share, named and defaulted the same in every module (issue 13).

One spec per option, one doc sub-fragment per option (plugins/doc_fragments/shared.py), one check.
tests/unit/meta/test_shared_options.py holds every module's argument spec and DOCUMENTATION to
these names and defaults, so no module grows a ``path`` or ``dropin_dir`` of its own again.
"""

from __future__ import annotations

import os
from typing import List

from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError
from ansible_collections.corral.nspawn.plugins.module_utils.names import machine_name_error

MACHINES_DIR = "/var/lib/machines"
SETTINGS_DIR = "/etc/systemd/nspawn"
UNITS_DIR = "/etc/systemd/system"
NETWORK_DIR = "/etc/systemd/network"
TIMEOUT = 120

SPECS = {
    "machines_dir": dict(type="path", default=MACHINES_DIR),
    "settings_dir": dict(type="path", default=SETTINGS_DIR),
    "units_dir": dict(type="path", default=UNITS_DIR),
    "wait": dict(type="bool", default=True),
    "timeout": dict(type="int", default=TIMEOUT),
}
DIRS = ("machines_dir", "settings_dir", "units_dir")


def spec(*names: str) -> dict:
    """Argument spec entries of the named shared options (fresh copies: callers may extend them)."""
    return {name: dict(SPECS[name]) for name in names}


def errors(params: dict) -> List[str]:
    """Every bad value among the shared options present in ``params`` (and ``name``, a machine's), each naming
    option, value and form."""
    out = []
    name_error = machine_name_error(params["name"]) if "name" in params else None
    if name_error:
        out.append(f"name: {name_error}")
    for name in DIRS:
        value = params.get(name)
        if name in params and value is not None and not os.path.isabs(value):
            out.append(f"{name}: {value!r} is not allowed; give an absolute directory path "
                       f"(default {SPECS[name]['default']})")
    timeout = params.get("timeout")
    if "timeout" in params and timeout is not None and timeout < 1:
        out.append(f"timeout: {timeout!r} is not allowed; give a whole number of seconds, at least 1")
    return out


def check(params: dict, names, error=CorralError) -> None:
    """Raise ``error`` (the module's CorralError class) naming every bad value of ``errors`` among ``names``."""
    problems = errors({name: params[name] for name in names})
    if problems:
        raise error("; ".join(problems))
