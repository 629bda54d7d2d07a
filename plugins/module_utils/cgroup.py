# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moved to resources_io (issue 16 naming rule); kept only until the fleet imports resources_io."""

from __future__ import annotations

from ansible_collections.corral.nspawn.plugins.module_utils.resources_io import LimitsError, apply_live

__all__ = ["LimitsError", "apply_live"]
