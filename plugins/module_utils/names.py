# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Machine-name and interface-name rules, and the names systemd-nspawn derives."""

from __future__ import annotations

import re
from typing import Optional

IFNAMSIZ = 15  # usable characters of a Linux interface name
MACHINE_NAME_MAX = 64
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_-]{0,62}[A-Za-z0-9])?")
# systemd's ifname_valid_char(): printable ASCII except space, ':', '/' and '%'; and no backslash,
# which escapes (or, at the end, continues) a line in the files the name is written to
_IFNAME_BAD = re.compile(r"[^\x21-\x7e]|[/:%\\]")


def machine_name_error(name: str) -> Optional[str]:
    """None when ``name`` is a valid machine name, else why not (hostname rules)."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if name in (".host", "."):
        return f"{name!r} is reserved"
    if len(name) > MACHINE_NAME_MAX:
        return f"{name!r} is longer than {MACHINE_NAME_MAX} characters"
    for label in name.split("."):
        if not _LABEL.fullmatch(label):  # fullmatch: '$' would accept a trailing newline
            return (f"{name!r} is not a valid machine name: use letters, digits, '-' and '_', "
                    "dot-separated labels that start and end with a letter or digit")
    return None


def ifname_error(name: str) -> Optional[str]:
    """None when ``name`` is a valid Linux interface name, else why not."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if len(name) > IFNAMSIZ:
        return f"{name!r} is {len(name)} characters; interface names have at most {IFNAMSIZ}"
    if name in (".", "..") or _IFNAME_BAD.search(name):
        return (f"{name!r} contains characters not allowed in an interface name (only printable ASCII, "
                "without space, '/', ':', '%' or backslash)")
    return None


def zone_ifname(zone: str) -> str:
    """The bridge systemd-nspawn creates for ``Zone=zone``."""
    return f"vz-{zone}"


def zone_name_error(zone: str) -> Optional[str]:
    """Zone names must leave room for the ``vz-`` prefix within IFNAMSIZ."""
    if not isinstance(zone, str) or not zone:
        return "must be a non-empty string"
    if len(zone) > IFNAMSIZ - 3:
        return f"{zone!r} is {len(zone)} characters; with the 'vz-' prefix a zone name has at most {IFNAMSIZ - 3}"
    return ifname_error(zone_ifname(zone))


def veth_ifname(machine: str, bridged: bool = False) -> str:
    """Host-side veth name nspawn derives (``ve-``/``vb-``), shortened like systemd 25x."""
    prefix = "vb-" if bridged else "ve-"
    return (prefix + machine)[:IFNAMSIZ]
