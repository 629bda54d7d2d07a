# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""One error type for the collection and the one place that turns errors into ``fail_json``.

Every exception the collection raises on purpose is a CorralError: ``msg`` is the sentence the user
reads, ``details`` the extra result keys (rc, stdout, stderr, machine, step, path...; never a secret).
A module's main() builds its AnsibleModule and hands its body to run_module; nothing else in the
collection calls ``fail_json`` for an exception.
"""

from __future__ import annotations

import contextlib
import traceback
from typing import Callable, Iterator


class CorralError(Exception):
    """A failure with a message for the user and the result keys (``details``) that explain it."""

    def __init__(self, msg: str = "", **details):
        super().__init__(msg)
        self.details = details

    @property
    def msg(self) -> str:
        return str(self)


@contextlib.contextmanager
def unexpected_fails(module) -> Iterator[None]:
    """An exception of the block that is not a CorralError ends the module: fail_json with the module, type and
    text in ``msg``, no traceback there (only in ``exception``, shown with -vvv). A CorralError passes through
    to its handler (run_module)."""
    try:
        yield
    except CorralError:
        raise
    except Exception as exc:  # pylint: disable=broad-exception-caught
        name = getattr(module, "_name", "") or "corral.nspawn"
        module.fail_json(msg=f"{name}: unexpected {type(exc).__name__}: {exc}; nothing after this point was changed. "
                             "This is a defect of corral.nspawn: please report it with the output of -vvv",
                         exception=traceback.format_exc())


def run_module(module, body: Callable[[object], dict]) -> None:
    """``body(module)`` -> result dict -> exit_json; every exception -> one fail_json (no traceback in msg)."""
    try:
        with unexpected_fails(module):
            result = body(module)
    except CorralError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    else:
        module.exit_json(**result)
