# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""The I/O of zones and bridges (networkd plans; see its docstring).

- ``read() -> networkd.NetworkState``: our files in the networkd directory and ONE netlink dump.
- ``zone(module, state=None)`` / ``bridge(module, state=None) -> dict``: plan one link against ``state``,
  write its files (not in check mode) and queue it; without ``state`` (the zone and bridge modules) the
  call reads and finishes by itself. The networks module passes one state for every zone and bridge and
  calls ``finish`` once: ONE ``networkctl reload`` for all changed links, then reconfigure and verify.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.corral.nspawn.plugins.module_utils import lock, netlink, networkd, systemd
from ansible_collections.corral.nspawn.plugins.module_utils.errors import run_module as run_body
from ansible_collections.corral.nspawn.plugins.module_utils.files import read_text, write_result
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError, run


def read_dir(directory: Optional[str] = None) -> Dict[str, str]:
    """``{path: text}`` of our (prefixed) files in the networkd directory."""
    directory = directory or networkd.NETWORK_DIR
    if not os.path.isdir(directory):
        return {}
    return {os.path.join(directory, n): read_text(os.path.join(directory, n)) or ""
            for n in sorted(os.listdir(directory)) if n.startswith(networkd.FILE_PREFIX)}


def read() -> networkd.NetworkState:
    ours = read_dir()
    return networkd.NetworkState(ours, {path: os.stat(path).st_mode & 0o7777 for path in ours}, netlink.read())


def _link(module, planner, state: Optional[networkd.NetworkState]) -> dict:
    alone = state is None
    state = state or read()
    plan = planner(dict(module.params), state)
    for warning in plan.warnings:
        module.warn(warning)
    if not module.check_mode:
        for result in plan.files:
            write_result(module, result)
    state.record(plan)
    result = plan.result(state.net.link(plan.ifname) if plan.present else None)
    state.pending.append((plan, result, getattr(module, "label", ""), module.params.get("timeout")))
    if alone:
        finish(module, state)
    return result


def bridge(module, state: Optional[networkd.NetworkState] = None) -> dict:
    return _link(module, networkd.plan_bridge, state)


def zone(module, state: Optional[networkd.NetworkState] = None) -> dict:
    return _link(module, networkd.plan_zone, state)


def _reload(module, plans: List[networkd.LinkPlan]) -> None:
    """``networkctl reload`` once for every changed link; when it fails the result still says files changed."""
    try:
        systemd.networkd_reload(module, run)
    except CommandError as exc:
        written = [r.path for p in plans for r in p.files if r.changed]
        raise networkd.NetworkError(
            f"{exc}; the networkd files were already changed ({', '.join(written) or 'none'}), so the host has "
            "changed: run again once systemd-networkd answers",
            changed=True, files=written, rc=exc.rc, stdout=exc.out, stderr=exc.err) from None


def _verify(plan: networkd.LinkPlan, label: str, timeout: float):
    """Wait until networkd has the link up with its addresses; fail with what was observed."""
    ifname = plan.ifname
    error, net = netlink.wait_for(lambda net: networkd.verify_error(ifname, net.link(ifname), plan.addresses), timeout)
    if error:
        link = net.link(ifname)
        raise networkd.NetworkError(
            f"{label + ': ' if label else ''}systemd-networkd did not bring {ifname} into the expected state within "
            f"{timeout} s: {error}. See: networkctl status {ifname}", changed=True, link=link.as_dict() if link else None)
    return net.link(ifname)


def finish(module, state: networkd.NetworkState) -> None:
    """Delete the links planned away, ONE reload, reconfigure links whose live state was off, verify."""
    pending = [entry for entry in state.pending if entry[0].changes]
    if not pending or module.check_mode:
        return
    for plan, _result, _label, _timeout in pending:
        if plan.remove_link:
            netlink.delete_link(plan.ifname)
    _reload(module, [entry[0] for entry in pending])
    for plan, _result, _label, _timeout in pending:
        if plan.present and plan.exists and plan.live_error:
            run(module, ["networkctl", "reconfigure", plan.ifname])
    for plan, result, label, timeout in pending:
        if plan.present and (plan.must_exist or plan.exists):
            link = _verify(plan, label, timeout)
            result["link"] = link.as_dict() if link else None


def run_module(argument_spec: dict, errors_of, apply) -> None:
    """The whole main() of the bridge and zone modules: validate, require pyroute2, apply, exit."""
    module = AnsibleModule(argument_spec=dict(argument_spec, **lock.LOCK_SPEC), supports_check_mode=True)

    def body(module) -> dict:
        errors = errors_of(module.params)
        if errors:
            raise networkd.NetworkError("; ".join(errors))
        netlink.require(module)
        return lock.run_locked(module, lambda: apply(module))
    run_body(module, body)
