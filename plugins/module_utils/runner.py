# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""The one seam for external commands: argv lists only, never a shell."""

from __future__ import annotations

from typing import Optional, Sequence

from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError


OUTPUT_TAIL = 4000  # characters of a failed command's stdout/stderr in the module result


class CommandError(CorralError):
    """A command failed; carries what is needed for a clear error message (details: rc, stdout, stderr)."""

    def __init__(self, argv: Sequence[str], rc: int, out: str, err: str):
        self.argv = list(argv)
        self.rc = rc
        self.out = out
        self.err = err
        # the module result carries the tails only: a debootstrap or import log can be megabytes
        super().__init__(f"{' '.join(self.argv)} failed (rc={rc}): {(err or out).strip()[-2000:]}",
                         rc=rc, stdout=out[-OUTPUT_TAIL:], stderr=err[-OUTPUT_TAIL:])


def run(module, argv: Sequence[str], check: bool = True, data: Optional[str] = None,
        environ_update: Optional[dict] = None) -> tuple:
    """Run ``argv`` (a list) and return (rc, stdout, stderr).

    User data is never expanded (``expand_user_and_vars=False``). With ``check``
    a non-zero exit raises CommandError so callers decide how to report it.
    """
    rc, out, err = module.run_command(
        list(argv), data=data, expand_user_and_vars=False, binary_data=False,
        environ_update=environ_update or {"LC_ALL": "C"},
    )
    if check and rc != 0:
        raise CommandError(argv, rc, out, err)
    return rc, out, err
