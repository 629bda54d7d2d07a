# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""The fleet's plan: what must happen to every machine, from what fleet_io read (pure: no I/O).

``plan_machine`` combines the resources' own decisions (settings and drop-in files, live limits,
the image step's outcome) and hands the runtime to the machine logic (``machine.plan``: enable,
start/stop/restart under the restart policy), so the fleet and the machine module decide alike.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils.files import FileResult, is_managed
from ansible_collections.corral.nspawn.plugins.module_utils.fleet import FLEET_MARKER, Machine, machine_attachment
from ansible_collections.corral.nspawn.plugins.module_utils.names import zone_ifname
from ansible_collections.corral.nspawn.plugins.module_utils import machine as machine_utils
from ansible_collections.corral.nspawn.plugins.module_utils import netmodel, nspawn_settings
from ansible_collections.corral.nspawn.plugins.module_utils import resources as resources_utils


@dataclass
class Current(machine_utils.Current):
    """What is on the host for one machine now: its unit as the machine logic reads it (with machines.target),
    its root, every property of the batched show, and whether a restart is pending."""

    root_exists: bool = False
    unit: dict = field(default_factory=dict)  # every property read by the batched systemctl show
    stale: bool = False  # running since before its current settings file was written (a pending restart)


@dataclass
class Desired:
    """One machine's validated target, for all machines before the first change: its .nspawn file planned by the
    settings resource (``settings``, set with every machine's in one read), its limits for the resources one."""

    machine: Machine
    limits: resources_utils.ResourcesItem
    image_options: Optional[dict]
    warnings: List[str] = field(default_factory=list)
    settings: Optional[nspawn_settings.ItemPlan] = None


@dataclass
class MachinePlan(machine_utils.Plan):
    """What must happen to one machine; decided identically in check mode and for real.

    A machine logic's plan (name, enable, runtime, pending_restart: machine_io.apply carries it out) whose
    ``changes`` also list the files, the image and the live limits."""

    image: Optional[dict] = None          # the image step's outcome: changed, created, changes, diff
    files: List[FileResult] = field(default_factory=list)
    reload_needed: bool = False           # daemon-reload: a drop-in written now, or one systemd never loaded
    live: Optional[object] = None  # the resources logic's LivePlan for the running unit (no restart)
    refused: str = ""   # why the machine is left untouched this run: its root refused a path (fleet_io.confined_call)


def is_fleet_managed(text: Optional[str]) -> bool:
    return is_managed(text, FLEET_MARKER)


def plan_machine(machine: Machine, current: Current, settings: FileResult, dropin: FileResult,
                 image: Optional[dict], policy: str, settings_restart: bool = True, live=None,
                 load_stale: Optional[bool] = None, adopted: Optional[str] = None) -> MachinePlan:
    """Decide every action for one machine from its desired and current state.

    ``settings_restart`` says whether the settings change needs a restart (the
    settings logic knows). ``live`` is the resources logic's plan for the running
    unit (assignments to push now, keys that only apply at the next start).
    ``adopted``: the settings plan's words for taking over a file the fleet did not write.
    """
    plan = MachinePlan(name=machine.name, image=image, files=[settings, dropin])
    restart = False   # a change needs a restart of a running machine
    if image and image.get("changed"):
        plan.changes.extend(image.get("changes") or ["image: prepared"])
        restart = bool(image.get("restart_required", not image.get("created")))
    if image and image.get("deferred"):
        restart = True  # first-boot changes wait for the machine to stop (setup_running=defer)
    if settings.changed:
        plan.changes.append(f"settings: {adopted}" if adopted else f"settings: {settings.action} {settings.path}")
        restart = restart or settings_restart
    elif current.stale:
        restart = True  # an earlier run changed the settings and did not restart
    if dropin.changed:
        plan.reload_needed = True
        plan.changes.append(f"resources: {dropin.action} {dropin.path}")
    elif load_stale if load_stale is not None else current.unit.get("NeedDaemonReload") == "yes":
        # e.g. a run killed between writing the drop-in and daemon-reload: a start would use the old limits
        plan.reload_needed = True
        plan.changes.append("daemon-reload: the unit's files changed on disk since systemd loaded them")
    if live is not None and current.running and machine.state != "stopped":
        plan.live = live if live.assignments else None
        plan.changes.extend(f"resources live: {change}" for change in live.changes if not dropin.changed)
        restart = restart or bool(live.pending and dropin.changed)
    runtime = machine_utils.plan(machine.name, machine.state, machine.enabled, current, restart, policy, terse=True)
    plan.enable, plan.runtime, plan.pending_restart = runtime.enable, runtime.runtime, runtime.pending_restart
    plan.changes.extend(runtime.changes)
    return plan


def refused_plan(name: str, why: str) -> MachinePlan:
    """A machine whose root refused a path: nothing is done to it this run (no file, no limit, no start or
    restart: its root may be changing under us), and its result says why."""
    return MachinePlan(name=name, refused=why)


def plan_prune(managed: List[str], declared: List[str], purge: bool) -> List[dict]:
    """Fleet-managed machines no longer declared -> what removing each means."""
    return [{"name": name, "purge": purge} for name in sorted(set(managed) - set(declared))]


def wait_mode(machine: Machine) -> Optional[str]:
    """A machine that runs a command instead of booting is waited for as an active unit, not a systemd."""
    if machine.wait is False:
        return "none"
    if not nspawn_settings.boots(machine.settings if isinstance(machine.settings, dict) else {}):
        return "unit"
    return "system" if machine.wait else None


def wait_specs(desired: List[Desired], wait: bool, timeout: int) -> Dict[str, Tuple[str, float]]:
    """Per machine: how to wait after a start and for how long (machine values over the fleet's)."""
    return {d.machine.name: (wait_mode(d.machine) or ("system" if wait else "none"), d.machine.timeout or timeout)
            for d in desired}


def machine_result(plan: MachinePlan, machine: Machine, current: Current) -> dict:
    started = plan.runtime in ("start", "restart") or (current.running and plan.runtime == "none")
    result = {
        "changed": plan.changed,
        "changes": plan.changes,
        "pending_restart": plan.pending_restart,
        "state": "running" if started else "stopped",
        "enabled": current.enabled if plan.refused else machine.enabled,
    }
    if plan.refused:
        result.update(failed=True, refused=plan.refused)
    return result


def machine_diff(plan: MachinePlan, current: Current) -> List[dict]:
    """Whole-file diffs of the machine's files plus a before/after of its root and runtime state."""
    diffs = [r.diff for r in plan.files if r.changed and r.diff]
    image = plan.image or {}
    diffs.extend(image.get("diff") or [])
    if not (image.get("changed") or plan.enable is not None or plan.runtime != "none"):
        return diffs
    header = f"machine {plan.name}"
    running = "running" if current.running else "stopped"
    before = [f"root: {'present' if current.root_exists else 'absent'}", f"enabled: {current.enabled}",
              f"state: {running}"]
    after_state = {"start": "running", "restart": "running (restarted)", "stop": "stopped"}.get(plan.runtime, running)
    enabled = current.enabled if plan.enable is None else plan.enable
    root_after = ("created" if image.get("created") else "present") + \
        (f" ({'; '.join(image['changes'])})" if image.get("changed") else "")
    after = [f"root: {root_after if image else before[0][6:]}",
             f"enabled: {enabled}", f"state: {after_state}"]
    diffs.append({"before_header": header, "after_header": header,
                  "before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n"})
    return diffs


def fleet_result(plans, desired, currents, templates: Dict[str, dict], pruned: List[str]) -> dict:
    changed_templates = {n: t for n, t in templates.items() if t.get("changed")}
    return {
        "changed": any(p.changed for p in plans) or bool(pruned) or bool(changed_templates),
        "machines": {p.name: machine_result(p, d.machine, c) for p, d, c in zip(plans, desired, currents)},
        "templates": {n: {"changed": t.get("changed", False), "changes": t.get("changes", [])}
                      for n, t in templates.items()},
        "pruned": pruned,
        "refused": [p.name for p in plans if p.refused],
        "pending_restart": [p.name for p in plans if p.pending_restart],
        "summary": [f"template {n}: {'; '.join(t.get('changes', []))}" for n, t in changed_templates.items()]
        + [f"{p.name}: {'; '.join(p.changes)}" for p in plans if p.changed]
        + [f"{n}: pruned" for n in pruned],
    }


def fleet_diff(plans, currents, templates: Dict[str, dict], pruned: List[str]) -> List[dict]:
    diffs = [d for t in templates.values() for d in (t.get("diff") or [])]
    diffs += [d for p, c in zip(plans, currents) for d in machine_diff(p, c)]
    return diffs + [{"before_header": f"machine {n}", "after_header": f"machine {n} (pruned)",
                     "before": "declared: false\n", "after": "absent\n"} for n in pruned]


def split_addresses(text) -> Dict[str, List[str]]:
    """machined's address list -> {addresses, ipv4, ipv6} without loopback and link-local ones."""
    values = text.split() if isinstance(text, str) else list(text or [])
    out: Dict[str, List[str]] = {"addresses": [], "ipv4": [], "ipv6": []}
    for value in values:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            continue
        if address.is_link_local or address.is_loopback:
            continue
        out["addresses"].append(str(address))
        out[f"ipv{address.version}"].append(str(address))
    return out


def expected_leases(machine: Machine, nets: Dict[str, netmodel.Net]) -> set:
    """IP versions a machine without static addresses gets on host0 from its network (as far as corral knows).

    IPv4 from a DHCP server. No IPv6: corral's zones and bridges advertise no prefix (an [IPv6Prefix]
    section on a bridge without carrier made networkd 252 spin at full CPU and stop answering on D-Bus),
    so IPv6 addresses of machines are static (address6).
    """
    found = machine_attachment(machine)
    if found["kind"] == "veth":
        return {4}   # the host's networkd serves ve-* links (its stock 80-container-ve.network)
    link = zone_ifname(found["name"]) if found["kind"] == "zone" else found["name"]
    net = nets.get(link) if found["kind"] in ("zone", "bridge") else None
    if net is None:
        return {4} if found["kind"] == "zone" else set()   # an unmanaged zone: systemd's stock vz file
    return {4} if net.dhcp else set()


def dhcp_waits(plans, desired, wait: bool, nets: Dict[str, netmodel.Net]) -> Dict[str, set]:
    """Machines started now that get their addresses from the network: name -> IP versions to wait for."""
    waits = {}
    for plan, item in zip(plans, desired):
        machine = item.machine
        own = getattr(machine, "wait", None)   # a machine's own wait, where the fleet has one
        waited = own if own is not None else wait
        configured = (item.image_options or {}).get("network_links") or []   # by the fleet or the user
        if plan.runtime in ("start", "restart") and waited and not (machine.address or machine.address6) \
                and "host0" in configured:
            versions = expected_leases(machine, nets)
            if versions:
                waits[plan.name] = versions
    return waits


def template_sources(machines_dir: str, templates: List[dict]) -> Dict[str, str]:
    """Template -> the directory its root is a copy of (directory and clone sources; chains followed)."""
    by_name = {t["name"]: t for t in templates}
    out: Dict[str, str] = {}
    for name in by_name:
        item, seen = by_name[name], {name}
        while item.get("source") == "clone" and item.get("clone_from") in by_name and item["clone_from"] not in seen:
            seen.add(item["clone_from"])
            item = by_name[item["clone_from"]]
        if item.get("source") == "directory" and item.get("path"):
            out[name] = item["path"]
        elif item.get("source") == "clone" and item.get("clone_from"):
            out[name] = os.path.join(machines_dir, item["clone_from"])
    return out
