# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reconcile a bridge or zone: read host, plan networkd files (networkd.py), write, reload, verify.

The side-effect half of corral.nspawn.bridge and corral.nspawn.zone. Each step is a small
function; ``changed`` is decided before acting, identically in check mode.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.corral.nspawn.plugins.module_utils import lock, netlink, networkd, systemd
from ansible_collections.corral.nspawn.plugins.module_utils.files import ensure_file, is_managed, read_text
from ansible_collections.corral.nspawn.plugins.module_utils.names import zone_ifname
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError, run


def read_dir(directory: Optional[str] = None) -> Dict[str, str]:
    """``{path: text}`` of our (prefixed) files in the networkd directory."""
    directory = directory or networkd.NETWORK_DIR
    if not os.path.isdir(directory):
        return {}
    return {os.path.join(directory, n): read_text(os.path.join(directory, n)) or ""
            for n in sorted(os.listdir(directory)) if n.startswith(networkd.FILE_PREFIX)}


def _existing(ours: Dict[str, str], ifname: str) -> List[str]:
    return networkd.owned_paths(ifname, [os.path.basename(p) for p in ours])


def _taken(net, ours: Dict[str, str], ifname: str) -> list:
    """Subnets in use elsewhere: host addresses/routes (not on ``ifname``) and other managed links."""
    return netlink.host_subnets(net, exclude_links={ifname}) + networkd.managed_subnets(
        networkd.managed_networks(ours), exclude=ifname)


def _write(module, plan: Dict[str, Optional[str]]) -> list:
    return [ensure_file(module, path, text, 0o644) for path, text in sorted(plan.items())]


def _result(results: list, net, ifname: str, addresses: List[str], changes: List[str]) -> dict:
    link = net.link(ifname) if net else None
    out = dict(changed=bool(changes), ifname=ifname, address=addresses, changes=changes,
               files=[{"path": r.path, "action": r.action} for r in results if r.changed],
               link=link.as_dict() if link else None)
    diffs = [r.diff for r in results if r.changed and r.diff]
    if diffs:
        out["diff"] = diffs
    return out


def _verify(module, ifname: str, addresses: List[str]):
    """Wait until networkd has the link up with its addresses; fail with what was observed."""
    def check(net):
        return networkd.verify_error(ifname, net.link(ifname), addresses)
    error, net = netlink.wait_for(check, module.params["timeout"])
    if error:
        module.fail_json(msg=f"systemd-networkd did not bring {ifname} into the expected state within "
                             f"{module.params['timeout']} s: {error}. See: networkctl status {ifname}",
                         changed=True, link=net.link(ifname).as_dict() if net.link(ifname) else None)
    return net


def present(module, ifname: str, desired: Dict[str, str], addresses: List[str], must_exist: bool) -> dict:
    """Files in place, networkd reloaded when they changed (or live state is off), link verified."""
    ours = read_dir()
    net = netlink.read()
    parsed = [networkd.parse_address(a) for a in addresses]
    problems = networkd.overlap_errors(parsed, _taken(net, ours, ifname))
    if problems:
        module.fail_json(msg="; ".join(problems))
    results = _write(module, networkd.plan_files(desired, _existing(ours, ifname)))
    changes = [f"{r.action} {r.path}" for r in results if r.changed]
    exists = net.link(ifname) is not None
    live_error = networkd.verify_error(ifname, net.link(ifname), addresses) if (exists or must_exist) else None
    if live_error and not changes:
        changes.append(f"repair live state ({live_error})")
    netdev = networkd.netdev_path(ifname)
    if exists and any(r.changed and r.path == netdev and r.action == "update" for r in results):
        module.warn(f"{netdev} changed: networkd applies .netdev changes to an existing {ifname} only when it is "
                    f"recreated (networkctl delete {ifname}; networkctl reload) or at the next boot")
    if changes and not module.check_mode:
        _reload(module, results)
        if exists and live_error:
            run(module, ["networkctl", "reconfigure", ifname])
        if must_exist or exists:
            net = _verify(module, ifname, addresses)
    return _result(results, net, ifname, addresses, changes)


def _reload(module, results) -> None:
    """``networkctl reload`` once our files changed; when it fails the result still says they did."""
    try:
        systemd.networkd_reload(module, run)
    except CommandError as exc:
        written = [r.path for r in results if r.changed]
        module.fail_json(msg=f"{exc}; the networkd files were already changed ({', '.join(written) or 'none'}), "
                             "so the host has changed: run again once systemd-networkd answers",
                         changed=True, files=written, rc=exc.rc, stdout=exc.out, stderr=exc.err)


def absent(module, ifname: str, delete_link: bool) -> dict:
    """Remove our files; delete the link when we managed it and nothing is attached."""
    ours = read_dir()
    existing = _existing(ours, ifname)
    was_ours = is_managed(ours.get(networkd.netdev_path(ifname))) or is_managed(
        ours.get(networkd.network_path(ifname)))
    results = _write(module, {p: None for p in existing})
    changes = [f"remove {r.path}" for r in results if r.changed]
    net = netlink.read()
    link = net.link(ifname)
    remove_link = bool(link) and was_ours and delete_link and not net.ports_of(ifname)
    if link and was_ours and net.ports_of(ifname):
        module.warn(f"{ifname} still has ports ({', '.join(net.ports_of(ifname))}); the link is left in place")
    if remove_link:
        changes.append(f"delete link {ifname}")
    if changes and not module.check_mode:
        if remove_link:
            netlink.delete_link(ifname)
        _reload(module, results)
    return _result(results, None, ifname, [], changes)


# ---------------------------------------------------------------- the two modules' flows

def bridge(module) -> dict:
    params = dict(module.params)
    name = params["name"]
    if params["state"] == "absent":
        return absent(module, name, delete_link=True)
    net = netlink.read()
    error = networkd.takeover_error(name, net.link(name) is not None, read_text(networkd.netdev_path(name)),
                                    params["force"], read_text(networkd.network_path(name)))
    if error:
        module.fail_json(msg=error, link=net.link(name).as_dict())
    addresses = [str(networkd.parse_address(a)) for a in params.get("address") or []]
    params["address"] = addresses
    return present(module, name, networkd.build_bridge_files(params), addresses, must_exist=True)


def zone_addresses(module, params: dict) -> List[str]:
    """Given addresses, else the ones our file already has, else the deterministic pick from ``pool``."""
    ifname = zone_ifname(params["name"])
    if params.get("address"):
        return [str(networkd.parse_address(a)) for a in params["address"]]
    ours = read_dir()
    for entry in networkd.managed_networks(ours):
        if entry["name"] == ifname:
            return entry["addresses"]
    picked = networkd.zone_address(params["name"], params["pool"], _taken(netlink.read(), ours, ifname))
    if picked is None:
        module.fail_json(msg=f"pool: no free /{networkd.ZONE_PREFIXLEN} left in {params['pool']} for zone "
                             f"{params['name']!r}; give 'address' or a larger pool")
    return [picked]


def zone(module) -> dict:
    params = dict(module.params)
    ifname = zone_ifname(params["name"])
    if params["state"] == "absent":
        return absent(module, ifname, delete_link=True)
    params["address"] = zone_addresses(module, params)
    return present(module, ifname, networkd.build_zone_files(params), params["address"],
                   must_exist=params["netdev"])


def run_module(argument_spec: dict, errors_of: Callable[[dict], List[str]], apply: Callable) -> None:
    """The whole main() of the bridge and zone modules: validate, require pyroute2, apply, exit."""
    module = AnsibleModule(argument_spec=dict(argument_spec, **lock.LOCK_SPEC), supports_check_mode=True)
    errors = errors_of(module.params)
    if errors:
        module.fail_json(msg="; ".join(errors))
    netlink.require(module)
    try:
        module.exit_json(**lock.run_locked(module, lambda: apply(module)))
    except CommandError as exc:
        module.fail_json(msg=str(exc), rc=exc.rc, stdout=exc.out, stderr=exc.err)
