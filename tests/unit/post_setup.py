# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The post-setup tests' one-call seam: images_setup_io.prepare with check mode as the default ``dry``."""

from __future__ import annotations

from typing import List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils import images_setup_io


def ensure_post_setup(module, root: str, params: dict, fresh: bool = False,
                      diffs: Optional[list] = None, dry: Optional[bool] = None) -> Tuple[bool, List[str]]:
    """prepare() in check mode unless ``dry`` says otherwise; warns, adds the diffs; (changed, changes in words)."""
    todo = images_setup_io.prepare(module, root, params, fresh, module.check_mode if dry is None else dry)
    for warning in todo.warnings:
        module.warn(warning)
    if diffs is not None:
        diffs.extend(todo.diffs)
    return todo.changed, todo.changes
