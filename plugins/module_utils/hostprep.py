# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Preparing a container host in one module call (corral.nspawn.host_prepare, the host role).

Pure parts first (OS family from os-release, package lists, the sysctl file), then
``run_prepare``, which reads the host, decides, and acts outside check mode.
The OS family comes from /etc/os-release (``ID`` then ``ID_LIKE``), so the role needs no
``setup`` (whose hostname lookups stalled for seconds on hosts whose own name does not resolve).
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils import files, systemd
from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError, run

OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")
NETWORKD = "systemd-networkd.service"
MACHINED = "systemd-machined.service"
NETWORKD_BUS = "org.freedesktop.network1"
SYSCTL_HEADER = "# Managed by corral.nspawn. Do not edit: changes are overwritten on the next run.\n"
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


# ---------------------------------------------------------------- pure

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
    return SYSCTL_HEADER + "".join(f"{key} = {value}\n" for key, value in sysctls.items())


def proc_path(key: str) -> str:
    return os.path.join("/proc/sys", *key.split("."))


def pending_words(params: dict) -> List[str]:
    """What the unit steps would do once packages are installed (their units cannot be asked yet)."""
    return ((["enable and start systemd-networkd"] if params["networkd"] else []) + ["check systemd-machined"]
            + (["enable machines.target"] if params["machines_target"] else []))


# ---------------------------------------------------------------- host

def read_release() -> Tuple[str, Dict[str, str]]:
    for path in OS_RELEASE:
        text = files.read_text(path)
        if text is not None:
            return path, parse_os_release(text)
    raise PrepareError(f"cannot tell the OS family: neither of {', '.join(OS_RELEASE)} exists")


def _check_families(family: Optional[str], release: Dict[str, str], path: str) -> str:
    if family is None:
        raise PrepareError(
            f"corral.nspawn.host_prepare supports the OS families {', '.join(FAMILIES)}; this host "
            f"({release.get('PRETTY_NAME') or release.get('ID') or 'unknown'}: ID={release.get('ID', '')!r}, "
            f"ID_LIKE={release.get('ID_LIKE', '')!r} in {path}) is none of them. Prepare it by hand and leave "
            "the host role out of the play.")
    return family


def _sysctls(module, params: dict, result: dict) -> None:
    sysctls = {k: str(v) for k, v in params["sysctls"].items()}
    if not sysctls:
        return
    written = files.ensure_file(module, params["sysctl_file"], sysctl_text(sysctls))
    if written.changed:
        result["changes"].append(f"sysctl file: {written.action} {params['sysctl_file']}")
        if written.diff:
            result["diff"].append(written.diff)
    for key, value in sysctls.items():
        try:
            live = (files.read_text(proc_path(key)) or "").strip()
        except OSError as exc:
            raise PrepareError(f"sysctls[{key}]: cannot read {proc_path(key)}: {exc}") from exc
        if " ".join(live.split()) == value:
            continue
        result["changes"].append(f"sysctl {key}: {live} -> {value}")
        result["diff"].append({"before_header": f"sysctl {key} (live)", "after_header": f"sysctl {key} (live)",
                               "before": f"{live}\n", "after": f"{value}\n"})
        if not module.check_mode:
            run(module, ["sysctl", "-w", f"{key}={value}"])


def _units(module, params: dict, result: dict) -> None:
    units = systemd.show(module, [NETWORKD, systemd.MACHINES_TARGET], ("LoadState", "UnitFileState", "ActiveState"))
    for unit, wanted in ((NETWORKD, params["networkd"]), (systemd.MACHINES_TARGET, params["machines_target"])):
        if wanted and units.get(unit, {}).get("LoadState") == "not-found":
            raise PrepareError(f"{unit} is not installed (systemctl show says LoadState=not-found): install the "
                               "package that ships it (check_packages does) or set the option for it to false")
    result["units"] = {u: {k: units.get(u, {}).get(k, "") for k in ("UnitFileState", "ActiveState")} for u in units}
    verb: List[str] = []
    if params["networkd"]:
        verb = systemd.enable_and_start(module, NETWORKD, units.get(NETWORKD, {}))
        if verb:
            result["changes"].append(f"{' and '.join(verb)} {NETWORKD}")
        # Seen on fresh hosts: a networkd started while systemd reloaded its units comes up without its
        # D-Bus connection, and every later `networkctl reload` times out. Asking the bus is read-only;
        # in check mode a networkd that would only now be started cannot answer yet.
        if not (module.check_mode and "start" in verb):
            rc, _out, _err = run(module, ["busctl", "status", NETWORKD_BUS], check=False)
            if rc != 0:
                result["changes"].append(f"restart {NETWORKD}, which is running without its D-Bus connection")
                if not module.check_mode:
                    systemd.systemctl(module, "restart", [NETWORKD])
    # machined is D-Bus activated (a static unit): asking it something activates it, so a host without
    # running containers is not reported as changed after every reboot.
    problem = systemd.machined_error(module)
    if problem:
        raise PrepareError(problem)
    target = units.get(systemd.MACHINES_TARGET, {})
    if params["machines_target"] and not systemd.is_enabled(target.get("UnitFileState", "")):
        result["changes"].append(f"enable {systemd.MACHINES_TARGET}")
        if not module.check_mode:
            systemd.systemctl(module, "enable", [systemd.MACHINES_TARGET])


def run_prepare(module) -> dict:
    """The module's whole job; returns the result for exit_json (raises PrepareError, CommandError)."""
    params = module.params
    errors = sysctl_errors(params["sysctls"])
    if errors:
        raise PrepareError("; ".join(errors))
    path, release = read_release()
    family = _check_families(os_family(release), release, path)
    shown = ("ID", "ID_LIKE", "VERSION_ID", "PRETTY_NAME")
    result = {"changed": False, "os_family": family, "os_release": {k: release.get(k, "") for k in shown},
              "wanted_packages": [], "missing_packages": [], "pending": [], "changes": [], "diff": []}
    if params["check_packages"]:
        wanted = wanted_packages(family, params["packages"], params["bootstrap_packages"], params["extra_packages"])
        result["wanted_packages"] = wanted
        if wanted:
            query = FAMILIES[family]["query"]
            if not module.get_bin_path(query[0]):
                raise PrepareError(f"{query[0]} was not found: the {family} family's package query needs it")
            _rc, out, _err = run(module, query + wanted, check=False)
            present = installed_packages(family, out)
            result["missing_packages"] = [p for p in wanted if p not in present]
    _sysctls(module, params, result)
    if result["missing_packages"]:
        # the units the packages ship cannot be asked about yet: the host role installs, then calls again
        result["pending"] = pending_words(params)
    else:
        _units(module, params, result)
    result["changed"] = bool(result["changes"])
    if not module._diff:
        del result["diff"]
    return result


__all__ = ["CommandError", "PrepareError", "FAMILIES", "OPTION_SPEC", "parse_os_release", "os_family",
           "wanted_packages", "installed_packages", "sysctl_errors", "sysctl_text", "run_prepare"]
