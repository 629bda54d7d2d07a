# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Preparing a container host (corral.nspawn.host_prepare, the host role): the pure half.

The OS family from os-release, the package lists per family, the sysctl file; hostprep_io reads the
host and acts. The OS family comes from /etc/os-release (``ID`` then ``ID_LIKE``), so the role needs no
``setup`` (whose hostname lookups stalled for seconds on hosts whose own name does not resolve).
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Sequence

from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError
from ansible_collections.corral.nspawn.plugins.module_utils.unitfile import HEADER

OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")
NETWORKD = "systemd-networkd.service"
NETWORKD_BUS = "org.freedesktop.network1"
SYSCTL_KEY_RE = re.compile(r"^[a-z0-9_]+(\.[A-Za-z0-9_-]+)+$")
SYSCTL_VALUE_RE = re.compile(r"^[A-Za-z0-9_./:-]+( [A-Za-z0-9_./:-]+)*$")

# Package names per OS family; the query command tells which of them are installed without the
# package manager's Python bindings (absent on minimal hosts).
FAMILIES: Dict[str, dict] = {
    "Debian": {"packages": ["systemd-container", "nftables", "python3-nftables", "python3-pyroute2"],
               "bootstrap": ["debootstrap"],
               "query": ["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Package}\n"],
               "installed": r"^ii (\S+)"},
    "RedHat": {"packages": ["systemd-container", "systemd-networkd", "nftables", "python3-nftables",
                            "python3-pyroute2"],
               "bootstrap": [],
               "query": ["rpm", "-q", "--qf", "ii %{NAME}\n"],
               "installed": r"^ii (\S+)"},
    "Archlinux": {"packages": ["nftables", "python-pyroute2"],
                  "bootstrap": ["arch-install-scripts"],
                  "query": ["pacman", "-Q"],
                  "installed": r"^(\S+) \S+$"},
}
# os-release ID (or a word of ID_LIKE) -> family, as Ansible's distribution facts name them.
IDS = {
    "debian": "Debian", "ubuntu": "Debian", "raspbian": "Debian", "linuxmint": "Debian", "pop": "Debian",
    "devuan": "Debian", "kali": "Debian",
    "rhel": "RedHat", "fedora": "RedHat", "centos": "RedHat", "rocky": "RedHat", "almalinux": "RedHat",
    "ol": "RedHat", "amzn": "RedHat",
    "arch": "Archlinux", "archarm": "Archlinux", "manjaro": "Archlinux", "endeavouros": "Archlinux",
}

OPTION_SPEC = dict(
    check_packages=dict(type="bool", default=True),
    packages=dict(type="list", elements="str"),
    bootstrap_packages=dict(type="list", elements="str"),
    extra_packages=dict(type="list", elements="str", default=[]),
    networkd=dict(type="bool", default=True),
    machines_target=dict(type="bool", default=True),
    sysctls=dict(type="dict", default={}),
    sysctl_file=dict(type="path", default="/etc/sysctl.d/60-corral-nspawn.conf"),
)


class PrepareError(CorralError):
    """Bad input or a host we cannot prepare; the message says what and how to fix it."""


def parse_os_release(text: str) -> Dict[str, str]:
    """``KEY=value`` lines of os-release (quotes removed, comments skipped)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def os_family(release: Dict[str, str]) -> Optional[str]:
    """The family of ``ID``, else of the first word of ``ID_LIKE`` we know; None when unknown."""
    for word in [release.get("ID", "")] + release.get("ID_LIKE", "").split():
        family = IDS.get(word.lower())
        if family:
            return family
    return None


def wanted_packages(family: str, packages: Optional[Sequence[str]], bootstrap: Optional[Sequence[str]],
                    extra: Sequence[str]) -> List[str]:
    """Base packages (the family's when none given), bootstrap tool (the family's when None), extras; unique, in order."""
    table = FAMILIES[family]
    wanted = list(packages or table["packages"]) + list(table["bootstrap"] if bootstrap is None else bootstrap) \
        + list(extra or [])
    return list(dict.fromkeys(wanted))


def installed_packages(family: str, out: str) -> set:
    pattern = re.compile(FAMILIES[family]["installed"])
    return {m.group(1) for m in (pattern.match(line) for line in out.splitlines()) if m}


def sysctl_errors(sysctls: dict) -> List[str]:
    errors = []
    for key, value in sysctls.items():
        if not isinstance(key, str) or not SYSCTL_KEY_RE.match(key):
            errors.append(f"sysctls: key {key!r} is not a sysctl name (dotted words, like net.ipv4.ip_forward)")
        if isinstance(value, bool) or not SYSCTL_VALUE_RE.match(str(value)):
            errors.append(f"sysctls[{key}]: value {value!r} is not a sysctl value (a number or words of "
                          "letters, digits and ._/:- separated by single spaces)")
    return errors


def sysctl_text(sysctls: dict) -> str:
    """The sysctl.d file: our header, then ``key = value`` per entry in the order given."""
    return HEADER + "".join(f"{key} = {value}\n" for key, value in sysctls.items())


def proc_path(key: str) -> str:
    return os.path.join("/proc/sys", *key.split("."))


def pending_words(params: dict) -> List[str]:
    """What the unit steps would do once packages are installed (their units cannot be asked yet)."""
    return ((["enable and start systemd-networkd"] if params["networkd"] else []) + ["check systemd-machined"]
            + (["enable machines.target"] if params["machines_target"] else []))
