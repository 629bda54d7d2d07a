# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""One host-wide lock for every module that changes host state.

Two runs against one host (two operators, a retried playbook, AWX and a
terminal) must not interleave their read -> plan -> apply: a second image build
of the same name would discard the first one's staging tree, two zone runs could
pick the same subnet, the nat table would be last-writer-wins. So each module
holds an exclusive ``flock`` on ``/run/corral-nspawn.lock`` from its first read of
host state to its last change. A second run waits up to ``lock_timeout`` seconds,
then fails naming the holder. The kernel drops the lock when the holder dies
(kill -9 included), so a crashed run never blocks the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from typing import Iterator, Optional

from ansible_collections.corral.nspawn.plugins.module_utils import errors

LOCK_PATH = "/run/corral-nspawn.lock"
DEFAULT_TIMEOUT = 600
LOCK_SPEC = {"lock_timeout": {"type": "int", "default": DEFAULT_TIMEOUT}}


class LockError(errors.CorralError):
    """Another run holds the lock for longer than we may wait; the message names it."""


def holder(fd: int) -> str:
    """'pid N, since T' from the lock file (written by the holder), or a plain 'unknown holder'."""
    try:
        text = os.pread(fd, 200, 0).decode("ascii", errors="replace").split()
        pid, since = int(text[0]), float(text[1])
    except (OSError, ValueError, IndexError):
        return "unknown holder"
    return f"pid {pid}, since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}"


@contextlib.contextmanager
def host_lock(timeout: Optional[int] = None, path: Optional[str] = None, poll: float = 0.2,
              shared: bool = False) -> Iterator[float]:
    """Hold the host-wide lock for the ``with`` block; yields the seconds waited for it.

    ``shared``: a read-only module's hold; readers never wait for each other, only for a run that
    changes the host (and it for them), so what they report is never a half-done change."""
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    path = path or LOCK_PATH
    if timeout < 0:
        raise LockError(f"lock_timeout: {timeout} is negative; give the seconds to wait for another run (0: do not wait)")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    started = time.monotonic()
    try:
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - started >= timeout:
                    raise LockError(f"another corral.nspawn run ({holder(fd)}) holds the lock {path}; waited "
                                    f"{timeout} s (lock_timeout). Let it finish, or end it if it is stuck, and "
                                    "run again") from None
                time.sleep(poll)
        if not shared:   # the holder named in the next run's message is the one that changes the host
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {time.time():.3f}\n".encode("ascii"), 0)
        yield time.monotonic() - started
    finally:
        os.close(fd)   # closing the last fd releases the flock


@contextlib.contextmanager
def module_lock(module, shared: bool = False) -> Iterator[None]:
    """The host lock for a module's ``with`` block (a LockError names the holder when waiting too long).

    The block is also the module's last line of defence: an exception that is not one of corral.nspawn's
    own becomes a clean failure naming the module and the error, never a traceback
    (``errors.unexpected_fails``, the guard run_module uses too).
    """
    with host_lock(module.params.get("lock_timeout"), shared=shared), errors.unexpected_fails(module):
        yield


def run_locked(module, work, shared: bool = False):
    """``work()`` under the host lock (see module_lock)."""
    with module_lock(module, shared):
        return work()
