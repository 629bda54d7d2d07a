# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The host-wide lock option of every module (mirrors lock.LOCK_SPEC)."""

    DOCUMENTATION = r"""
options:
  lock_timeout:
    description:
      - Every corral.nspawn module that changes host state holds one host-wide lock (C(flock) on
        C(/run/corral-nspawn.lock)) from its first read of host state to its last change, so two runs against
        one host never interleave. M(corral.nspawn.machine_info) holds it shared, so it waits for a run that changes
        the host, never for another reader.
      - Seconds to wait for another run that holds it; then the module fails with
        C(another corral.nspawn run (pid N, since T\) holds the lock). V(0) does not wait.
      - A run that dies (even with C(kill -9)) releases the lock at once.
    type: int
    default: 600
"""
