# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Write-if-different file helpers shared by every module that owns a file.

Each helper decides first (pure comparison), then acts only outside check mode,
so ``changed`` is predicted identically in check mode and in a real run.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Optional, Tuple

MANAGED_MARKER = "Managed by corral.nspawn"


@dataclass
class FileResult:
    """Outcome of one file reconciliation: whether it changed, a whole-file diff, and what the file holds after."""

    path: str
    changed: bool
    diff: dict = field(default_factory=dict)
    action: str = "none"  # none | create | update | chmod | remove
    content: Optional[str] = None   # the text the file holds after the change (None: absent)


def read_text(path: str) -> Optional[str]:
    """Return the file's text, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def is_managed(text: Optional[str], marker: str = MANAGED_MARKER) -> bool:
    """True when a file's text carries our managed-file header (``marker``: the fleet's, for its files)."""
    return text is not None and any(marker in line for line in text.splitlines()[:3])


def file_diff(path: str, before: Optional[str], after: Optional[str]) -> dict:
    """Ansible diff dict for a whole file (absent shown as empty text)."""
    return {
        "before": before or "",
        "after": after or "",
        "before_header": path if before is not None else f"{path} (absent)",
        "after_header": path if after is not None else f"{path} (absent)",
    }


def plan_file(path: str, before: Optional[str], after: Optional[str]) -> FileResult:
    """Pure decision: what must happen to go from ``before`` to ``after``."""
    if before == after:
        return FileResult(path, False, {}, "none", after)
    if after is None:
        action = "remove"
    elif before is None:
        action = "create"
    else:
        action = "update"
    return FileResult(path, True, file_diff(path, before, after), action, after)


def read_file(path: str) -> Tuple[Optional[str], Optional[int]]:
    """(text, permission bits) of a file; (None, None) when it does not exist."""
    text = read_text(path)
    try:
        return text, (os.stat(path).st_mode & 0o7777 if text is not None else None)
    except FileNotFoundError:
        return None, None


def plan_file_mode(path: str, before: Optional[str], mode: Optional[int], after: Optional[str],
                   want: int = 0o644) -> FileResult:
    """plan_file, and the right text with another mode is drift too: action "chmod", which keeps the
    mtime (the fleet reads it as "settings changed since the machine started")."""
    result = plan_file(path, before, after)
    if result.changed or after is None or mode == want:
        return result
    diff = file_diff(path, before, after)
    diff.update(before_header=f"{path} (mode {mode or 0:04o})", after_header=f"{path} (mode {want:04o})")
    return FileResult(path, True, diff, "chmod", after)


def atomic_write(module, path: str, content: str, mode: int = 0o644) -> None:
    """Temp file beside the target, fsync, atomic rename, then mode."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".corral-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        module.atomic_move(tmp, path, unsafe_writes=False)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    os.chmod(path, mode)


def remove_empty_dir(path: str) -> bool:
    """Remove ``path`` if it is an empty directory; True when it was removed.

    Not empty (someone else's files), already gone or not a directory: left as it is, since
    nothing the user did not ask to remove is removed."""
    try:
        os.rmdir(path)
    except OSError:
        return False
    return True


def write_result(module, result: FileResult, mode: int = 0o644) -> None:
    """Do one planned change (never in check mode): atomic write, chmod only, or remove; "none": nothing."""
    if result.action == "chmod":
        os.chmod(result.path, mode)
    elif result.action == "remove":
        try:
            os.unlink(result.path)
        except FileNotFoundError:
            pass
    elif result.changed:
        atomic_write(module, result.path, result.content, mode)


def ensure_file(module, path: str, content: Optional[str], mode: int = 0o644) -> FileResult:
    """Make ``path`` hold ``content`` with ``mode`` (None removes it): read, plan, and write outside check mode."""
    result = plan_file_mode(path, *read_file(path), content, mode)
    if not module.check_mode:
        write_result(module, result, mode)
    return result
