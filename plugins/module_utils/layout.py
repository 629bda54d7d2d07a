# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Where a machine's things live on the host: built once per module run from its params."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ansible_collections.corral.nspawn.plugins.module_utils import shared, systemd


@dataclass(frozen=True)
class Layout:
    machines_dir: str = shared.MACHINES_DIR
    settings_dir: str = shared.SETTINGS_DIR
    units_dir: str = shared.UNITS_DIR
    network_dir: str = shared.NETWORK_DIR

    @classmethod
    def from_params(cls, params: dict) -> "Layout":
        """The module's directories; an option the module lacks (or left unset) keeps the default."""
        return cls(**{key: params[key] for key in ("machines_dir", "settings_dir", "units_dir", "network_dir")
                      if params.get(key) is not None})

    def root(self, name: str) -> str:
        return os.path.join(self.machines_dir, name)

    def settings_path(self, name: str) -> str:
        """The one trusted .nspawn file of machine ``name``."""
        return os.path.join(self.settings_dir, f"{name}.nspawn")

    def unit(self, name: str) -> str:
        return systemd.unit_name(name)

    def dropin_dir(self, name: str) -> str:
        return os.path.join(self.units_dir, f"{self.unit(name)}.d")
