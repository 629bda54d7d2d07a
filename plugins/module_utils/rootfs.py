# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Root-confined file access: the only way module code reads or writes inside a container root.

A container root is untrusted: whoever runs in it can replace any directory in it
by a symlink at any moment, also between our check and our write. So no path
string into a root is ever resolved twice. The root is opened once as a directory
fd; every path below it is resolved *relative to that fd and never above it*:

- with ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`` where the kernel has it
  (Linux 5.6+): symlinks, absolute ones included, and ``..`` resolve as they would
  for the container, atomically, and can never leave the root;
- otherwise by a component-by-component walk that opens each directory with
  ``O_NOFOLLOW | O_DIRECTORY`` and resolves symlinks itself, confined the same way.

Writes create a temp file ``O_CREAT | O_EXCL | O_NOFOLLOW`` relative to the parent
directory's fd, write, ``fchown``/``fchmod``/``fsync`` it and rename it with directory
fds, then fsync the directory. Reads accept regular files only (checked with
``fstat`` on the opened file, opened ``O_NONBLOCK`` so a FIFO cannot hang us) and
are capped in size, so a device node or a huge file cannot exhaust the host.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import secrets
import stat
from typing import List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError

READ_LIMIT = 1024 * 1024          # no file we read inside a root is legitimately bigger
MAX_SYMLINKS = 40                 # the kernel's own limit (ELOOP)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
SYS_OPENAT2 = 437                 # same number on every architecture (generic syscall table)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class RootError(CorralError):
    """A path inside a root is refused (not a regular file, too big, a loop...); the message names it."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return name
    return "an unknown file type"


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


@functools.lru_cache(maxsize=None)
def _syscall():
    """libc's syscall(2), looked up once (the cache makes it safe for the fleet's threads)."""
    syscall = ctypes.CDLL(None, use_errno=True).syscall
    syscall.restype = ctypes.c_long
    return syscall


def _openat2(dir_fd: int, path: str, flags: int) -> int:
    """openat2(2) confined to ``dir_fd``; raises OSError like os.open. EAGAIN (a concurrent rename) is retried."""
    how = _OpenHow(flags | _CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    syscall = _syscall()
    for _attempt in range(64):
        fd = syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dir_fd), ctypes.c_char_p(os.fsencode(path)),
                     ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, "the root kept changing during path resolution", path)


@functools.lru_cache(maxsize=None)
def openat2_usable() -> bool:
    """Whether this kernel (and seccomp policy) offers openat2 with RESOLVE_IN_ROOT (probed once)."""
    root_fd = os.open("/", os.O_PATH | os.O_DIRECTORY | _CLOEXEC)
    try:
        os.close(_openat2(root_fd, ".", os.O_PATH))
        return True
    except (OSError, AttributeError):
        return False
    finally:
        os.close(root_fd)


def _split(rel: str) -> List[str]:
    return [part for part in rel.split("/") if part not in ("", ".")]


class RootFS:
    """A container root opened once; every method takes a path relative to (and confined in) it.

    ``use_openat2=False`` forces the portable walk (used by the tests to prove both ways).
    Use as a context manager, or call ``close()``.
    """

    def __init__(self, root: str, use_openat2: Optional[bool] = None):
        self.root = root
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
        self.use_openat2 = openat2_usable() if use_openat2 is None else use_openat2

    def __enter__(self) -> "RootFS":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def label(self, rel: str) -> str:
        return os.path.join(self.root, rel.lstrip("/"))

    # ------------------------------------------------------------ resolution

    def _open(self, rel: str, flags: int) -> int:
        """Open ``rel`` (symlinks followed, confined to the root) with ``flags``.

        Without openat2, the portable resolver (_walk_once): one component at a time, never above the
        root, symlinks resolved by us. A component swapped for a symlink between our readlink and our
        open makes the O_NOFOLLOW open fail (ELOOP/ENOTDIR): the walk starts again, a few times, then fails.
        """
        if self.use_openat2:
            return _openat2(self.fd, rel.lstrip("/") or ".", flags)
        attempts = 8
        while True:
            try:
                return self._walk_once(rel, flags)
            except OSError as exc:
                attempts -= 1
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR) or not attempts:
                    raise

    def _walk_once(self, rel: str, flags: int) -> int:
        stack = [os.dup(self.fd)]           # directory fds from the root down; stack[0] is the root
        todo, links = _split(rel), 0
        try:
            while todo:
                part = todo.pop(0)
                if part == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                last = not todo
                try:
                    target = os.readlink(part, dir_fd=stack[-1])
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOENT):
                        raise
                    target = None
                if target is not None:
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel)
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop())
                    todo = _split(target) + todo
                    continue
                if last:
                    return os.open(part, flags | os.O_NOFOLLOW | _CLOEXEC, dir_fd=stack[-1])
                stack.append(os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC, dir_fd=stack[-1]))
            return os.open(".", flags | _CLOEXEC, dir_fd=stack[-1])
        finally:
            for fd in stack:
                os.close(fd)

    def _parent(self, rel: str, create: bool = False, mode: int = 0o755) -> Tuple[int, str]:
        """(fd of the directory holding ``rel``, last component); the last component is not followed."""
        parts = _split(rel)
        if not parts or parts[-1] == "..":
            raise RootError(f"{self.label(rel)}: not a file path inside the root")
        parent = "/".join(parts[:-1])
        if create:
            self.makedirs(parent, mode)
        return self._open(parent, os.O_RDONLY | os.O_DIRECTORY), parts[-1]

    # ------------------------------------------------------------ reads

    def _entry(self, rel: str, call, absent, errors=(FileNotFoundError,),
               missing=(FileNotFoundError, NotADirectoryError)):
        """``call(name, dir_fd)`` on the entry ``rel`` itself (its last component is not followed);
        ``absent`` when finding its directory raises one of ``missing``, or ``call`` one of ``errors``."""
        try:
            fd, name = self._parent(rel)
        except missing:
            return absent
        try:
            return call(name, fd)
        except errors:
            return absent
        finally:
            os.close(fd)

    def lstat(self, rel: str) -> Optional[os.stat_result]:
        """stat of the entry itself (a symlink is not followed); None when absent."""
        return self._entry(rel, lambda name, fd: os.stat(name, dir_fd=fd, follow_symlinks=False), None,
                           missing=(FileNotFoundError,))

    def _opened(self, rel: str, flags: int, call, absent, missing=(FileNotFoundError, NotADirectoryError)):
        """``call(fd)`` on ``rel`` opened with ``flags`` (symlinks followed inside the root); ``absent`` when
        opening it raises one of ``missing``."""
        try:
            fd = self._open(rel, flags)
        except missing:
            return absent
        try:
            return call(fd)
        finally:
            os.close(fd)

    def stat(self, rel: str) -> Optional[os.stat_result]:
        """stat of what ``rel`` resolves to inside the root; None when absent (or a dangling link)."""
        return self._opened(rel, os.O_PATH, os.fstat, None, missing=(FileNotFoundError,))

    def is_dir(self, rel: str) -> bool:
        info = self.stat(rel)
        return info is not None and stat.S_ISDIR(info.st_mode)

    def read_text(self, rel: str, limit: int = READ_LIMIT) -> Optional[str]:
        """Content of a regular file, at most ``limit`` bytes; None when absent. Anything else is refused."""
        found = self.read_with_stat(rel, limit)
        return None if found is None else found[0]

    def read_with_stat(self, rel: str, limit: int = READ_LIMIT) -> Optional[Tuple[str, os.stat_result]]:
        """(text, fstat of the same open file) so owner and mode belong to the content read; None when absent.

        Only a regular file of at most ``limit`` bytes is read; anything else is refused (RootError).
        """
        # O_PATH first: opening a device or FIFO for reading can have side effects or block.
        fd = self._opened(rel, os.O_PATH, lambda path_fd: self._reopen_regular(rel, path_fd, limit), None)
        if fd is None:
            return None
        try:
            data = os.read(fd, limit + 1)
            chunks = [data]
            while data and sum(map(len, chunks)) <= limit:
                data = os.read(fd, limit + 1)
                chunks.append(data)
            content = b"".join(chunks)
            if len(content) > limit:
                raise RootError(f"refusing to read {self.label(rel)}: more than {limit} bytes")
            return content.decode("utf-8", errors="surrogateescape"), os.fstat(fd)
        finally:
            os.close(fd)

    def _reopen_regular(self, rel: str, path_fd: int, limit: int) -> int:
        """``path_fd``'s file opened for reading if it is a regular file of at most ``limit`` bytes, re-opened
        through our own fd: the very inode we checked, not the name."""
        info = os.fstat(path_fd)
        if not stat.S_ISREG(info.st_mode):
            raise RootError(f"refusing to read {self.label(rel)}: it is {_kind(info.st_mode)}, not a regular file "
                            "(container roots are untrusted)")
        if info.st_size > limit:
            raise RootError(f"refusing to read {self.label(rel)}: {info.st_size} bytes, more than {limit}")
        return os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | _CLOEXEC)

    def listdir(self, rel: str) -> List[str]:
        """Names in a directory of the root ([] when absent)."""
        return self._opened(rel, os.O_RDONLY | os.O_DIRECTORY, lambda fd: sorted(os.listdir(fd)), [])

    def readlink(self, rel: str) -> Optional[str]:
        """Target of a symlink (not followed); None when absent or not a link."""
        return self._entry(rel, lambda name, fd: os.readlink(name, dir_fd=fd), None, errors=(OSError,))

    # ------------------------------------------------------------ writes

    def makedirs(self, rel: str, mode: int = 0o755) -> None:
        """Create missing directories of ``rel`` one at a time, each under the fd of its parent."""
        done: List[str] = []
        for part in _split(rel):
            if part == "..":
                raise RootError(f"{self.label(rel)}: '..' is not allowed in a path to create")
            fd = self._open("/".join(done), os.O_RDONLY | os.O_DIRECTORY)
            try:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, mode, dir_fd=fd)
            finally:
                os.close(fd)
            done.append(part)
        if done and not self.is_dir("/".join(done)):
            raise RootError(f"{self.label(rel)} is not a directory inside the root (a file, or a link that leads "
                            "nowhere in it; container roots are untrusted)")

    def write(self, rel: str, data, mode: int = 0o644, owner: Optional[Tuple[int, int]] = None,
              dir_mode: int = 0o755) -> None:
        """Atomically replace ``rel`` with ``data``: temp file beside it, fsync, rename by directory fd.

        A symlink at ``rel`` is replaced, never followed. ``owner`` defaults to the
        replaced file's owner, or the parent directory's for a new file (so files in
        a root shifted for user namespaces stay owned by the container's users).
        """
        if isinstance(data, str):
            data = data.encode("utf-8", errors="surrogateescape")

        def make(tmp: str, dir_fd: int, name: str) -> None:
            uid, gid = owner or self._owner_for(dir_fd, name)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC, 0o600, dir_fd=dir_fd)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fchown(handle.fileno(), uid, gid)
                os.fchmod(handle.fileno(), mode)
                os.fsync(handle.fileno())
        self._replace(rel, make, dir_mode)

    def _replace(self, rel: str, make, dir_mode: int = 0o755) -> None:
        """``make(tmp, dir_fd, name)`` creates a new entry ``tmp`` in the parent; it is renamed over ``rel``."""
        dir_fd, name = self._parent(rel, create=True, mode=dir_mode)
        try:
            tmp = f".corral-{secrets.token_hex(6)}"
            try:
                make(tmp, dir_fd, name)
                os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dir_fd)
                raise
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @staticmethod
    def _owner_for(dir_fd: int, name: str) -> Tuple[int, int]:
        with contextlib.suppress(FileNotFoundError):
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISREG(info.st_mode):
                return info.st_uid, info.st_gid
        info = os.fstat(dir_fd)
        return info.st_uid, info.st_gid

    def unlink(self, rel: str) -> bool:
        """Remove the entry itself (a symlink is removed, not its target); False when absent."""
        def remove(name: str, dir_fd: int) -> bool:
            os.unlink(name, dir_fd=dir_fd)
            return True
        return self._entry(rel, remove, False)

    def symlink(self, target: str, rel: str) -> None:
        """Create (or replace) the symlink ``rel`` -> ``target``; the target is never resolved here."""
        self._replace(rel, lambda tmp, dir_fd, _name: os.symlink(target, tmp, dir_fd=dir_fd))
