# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""The I/O of host preparation (hostprep decides what the host needs; see its docstring).

``run_prepare(module) -> dict``: the module's whole job: read os-release and the package database, then the
sysctl file and live sysctls, systemd-networkd, machined and machines.target; acts only outside check mode.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils import files, hostprep, systemd
from ansible_collections.corral.nspawn.plugins.module_utils.hostprep import FAMILIES, NETWORKD, NETWORKD_BUS, PrepareError
from ansible_collections.corral.nspawn.plugins.module_utils.runner import run


def read_family() -> Tuple[str, Dict[str, str]]:
    """The host's OS family and its os-release; PrepareError when there is none or it is no family we support."""
    for path in hostprep.OS_RELEASE:
        text = files.read_text(path)
        if text is not None:
            break
    else:
        raise PrepareError(f"cannot tell the OS family: neither of {', '.join(hostprep.OS_RELEASE)} exists")
    release = hostprep.parse_os_release(text)
    family = hostprep.os_family(release)
    if family is None:
        raise PrepareError(
            f"corral.nspawn.host_prepare supports the OS families {', '.join(FAMILIES)}; this host "
            f"({release.get('PRETTY_NAME') or release.get('ID') or 'unknown'}: ID={release.get('ID', '')!r}, "
            f"ID_LIKE={release.get('ID_LIKE', '')!r} in {path}) is none of them. Prepare it by hand and leave "
            "the host role out of the play.")
    return family, release


def _sysctls(module, params: dict, result: dict) -> None:
    sysctls = {k: str(v) for k, v in params["sysctls"].items()}
    if not sysctls:
        return
    written = files.ensure_file(module, params["sysctl_file"], hostprep.sysctl_text(sysctls))
    if written.changed:
        result["changes"].append(f"sysctl file: {written.action} {params['sysctl_file']}")
        if written.diff:
            result["diff"].append(written.diff)
    for key, value in sysctls.items():
        try:
            live = (files.read_text(hostprep.proc_path(key)) or "").strip()
        except OSError as exc:
            raise PrepareError(f"sysctls[{key}]: cannot read {hostprep.proc_path(key)}: {exc}") from exc
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
    errors = hostprep.sysctl_errors(params["sysctls"])
    if errors:
        raise PrepareError("; ".join(errors))
    family, release = read_family()
    shown = ("ID", "ID_LIKE", "VERSION_ID", "PRETTY_NAME")
    result = {"changed": False, "os_family": family, "os_release": {k: release.get(k, "") for k in shown},
              "wanted_packages": [], "missing_packages": [], "pending": [], "changes": [], "diff": []}
    if params["check_packages"]:
        wanted = hostprep.wanted_packages(family, params["packages"], params["bootstrap_packages"], params["extra_packages"])
        result["wanted_packages"] = wanted
        if wanted:
            query = FAMILIES[family]["query"]
            if not module.get_bin_path(query[0]):
                raise PrepareError(f"{query[0]} was not found: the {family} family's package query needs it")
            _rc, out, _err = run(module, query + wanted, check=False)
            present = hostprep.installed_packages(family, out)
            result["missing_packages"] = [p for p in wanted if p not in present]
    _sysctls(module, params, result)
    if result["missing_packages"]:
        # the units the packages ship cannot be asked about yet: the host role installs, then calls again
        result["pending"] = hostprep.pending_words(params)
    else:
        _units(module, params, result)
    result["changed"] = bool(result["changes"])
    if not module._diff:
        del result["diff"]
    return result
