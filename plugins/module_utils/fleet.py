# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet: every machine of one host planned and reconciled in one invocation.

Shape: ``desired_machines`` (merge defaults, validate) -> ``read_state`` (files,
one batched ``systemctl show``) -> ``plan_machine`` (pure) -> apply in phases
(images, files, one daemon-reload, enable/disable in one call, live resources,
stop/restart/start as batched jobs, concurrent waits) -> per-machine result.

Rendering and the image/runtime primitives belong to the single-purpose modules'
module_utils; the thin adapters at the bottom of this file are the only place
that knows their names.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils.files import (
    MANAGED_MARKER, FileResult, ensure_file, file_diff, plan_file, read_text,
)
from ansible_collections.corral.nspawn.plugins.module_utils.names import (
    ifname_error, machine_name_error, zone_ifname as names_zone_ifname, zone_name_error,
)
from ansible_collections.corral.nspawn.plugins.module_utils import cgroup
from ansible_collections.corral.nspawn.plugins.module_utils import images
from ansible_collections.corral.nspawn.plugins.module_utils import machine as machine_utils
from ansible_collections.corral.nspawn.plugins.module_utils import netmodel, networkd
from ansible_collections.corral.nspawn.plugins.module_utils import nspawn_settings
from ansible_collections.corral.nspawn.plugins.module_utils import resources as resources_utils
from ansible_collections.corral.nspawn.plugins.module_utils import systemd
from ansible_collections.corral.nspawn.plugins.module_utils import shared
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError
from ansible_collections.corral.nspawn.plugins.module_utils.values import line_error

FLEET_MARKER = f"{MANAGED_MARKER} fleet"
FLEET_HEADER = f"# {FLEET_MARKER}. Do not edit: changes are overwritten on the next run.\n"
RESTART_POLICIES = ("on_change", "never", "always")
STATES = ("running", "stopped", "present")
MACHINE_KEYS = ("name", "template", "image", "settings", "resources", "zone", "bridge", "address",
                "gateway", "root_password", "root_password_hash", "enabled", "state", "restart", "wait", "timeout",
                "network", "address6", "gateway6")
# Secrets are machine-level options. image and templates items have real sub-specs (derived from the
# image module's spec), so a secret written there is masked too (no_log) and then refused: one place per
# machine, never in a template (templates are never booted; clones would share it).
SECRET_KEYS = ("root_password", "root_password_hash")
# Options of the image module that the fleet sets itself for every image (never given in image/templates).
IMAGE_FIXED_KEYS = ("name", "state", "machines_dir")
MACHINE_DEFAULTS = {"enabled": True, "state": "running", "restart": None}
DHCP_WAIT = 20.0   # seconds a started DHCP machine is given to show its lease in the result


class FleetError(Exception):
    """Bad input or a failed step; ``details`` go into the failure result."""

    def __init__(self, msg: str, **details):
        super().__init__(msg)
        self.details = details


def argument_spec() -> dict:
    """The fleet module's whole argument spec (every secret, wherever it can be written, is no_log)."""
    return dict(
        machines=dict(type="list", elements="dict", required=True, options=machine_spec()),
        defaults=dict(type="dict", default={}, options=defaults_spec()),
        host_defaults=dict(type="dict", default={}, options=defaults_spec()),
        network_zones=dict(type="list", elements="dict", default=[]),
        network_bridges=dict(type="list", elements="dict", default=[]),
        port_forwards=dict(type="list", elements="dict", default=[]),
        templates=dict(type="list", elements="dict", default=[], options=template_spec()),
        prune=dict(type="bool", default=False),
        prune_all=dict(type="bool", default=False),
        purge=dict(type="bool", default=False),
        restart=dict(type="str", default="on_change", choices=list(RESTART_POLICIES)),
        **shared.spec("wait", "timeout", "machines_dir", "settings_dir", "units_dir"),
    )


def image_suboptions() -> dict:
    """Sub-spec of ``machines[].image`` / ``defaults.image``: the image module's options, derived.

    Derived from ``images.IMAGE_OPTION_SPEC`` (never a second copy), so every ``no_log`` there
    (``root_password``, ``root_password_hash``) applies here too, before anything is logged. Without
    defaults or required flags: an unset option inherits from ``defaults`` and the image logic fills
    in its own defaults after the merge.
    """
    return {key: {k: v for k, v in spec.items() if k not in ("default", "required")}
            for key, spec in images.IMAGE_OPTION_SPEC.items() if key not in IMAGE_FIXED_KEYS}


def template_spec() -> dict:
    """Sub-spec of one ``templates`` item: a name plus the image options (secrets masked, then refused)."""
    return dict(name=dict(type="str", required=True), **image_suboptions())


def defaults_spec() -> dict:
    """Argument spec of ``defaults``: every machine option but ``name`` (so secrets are no_log there too)."""
    return {k: v for k, v in machine_spec().items() if k != "name"}


def machine_spec() -> dict:
    """Argument spec of one ``machines`` item (no defaults: unset keys inherit ``defaults``)."""
    return dict(
        name=dict(type="str", required=True),
        template=dict(type="str"),
        image=dict(type="dict", options=image_suboptions()),
        settings=dict(type="dict"),
        resources=dict(type="dict"),
        zone=dict(type="str"),
        bridge=dict(type="str"),
        network=dict(type="str", choices=list(netmodel.NETWORK_MODES)),
        address=dict(type="str"),
        gateway=dict(type="str"),
        address6=dict(type="str"),
        gateway6=dict(type="str"),
        root_password=dict(type="str", no_log=True),
        root_password_hash=dict(type="str", no_log=True),
        enabled=dict(type="bool"),
        state=dict(type="str", choices=list(STATES)),
        restart=dict(type="str", choices=list(RESTART_POLICIES)),
        wait=dict(type="bool"),
        timeout=dict(type="int"),
    )


# ---------------------------------------------------------------- desired state (pure)

@dataclass
class Machine:
    """One declared machine after merging defaults."""

    name: str
    template: Optional[str] = None
    image: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    zone: Optional[str] = None
    bridge: Optional[str] = None
    network: Optional[str] = None     # veth | host | none (zone/bridge have their own keys)
    address: Optional[str] = None
    gateway: Optional[str] = None
    address6: Optional[str] = None
    gateway6: Optional[str] = None
    root_password: Optional[str] = None
    root_password_hash: Optional[str] = None
    enabled: bool = True
    state: str = "running"
    restart: Optional[str] = None
    wait: Optional[bool] = None       # None: the fleet's wait
    timeout: Optional[int] = None     # None: the fleet's timeout


def deep_merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``: dicts merge recursively, None in ``over`` inherits, lists replace."""
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def merge_machine(defaults: dict, item: dict, host_defaults: Optional[dict] = None) -> Machine:
    """Merge one ``machines`` item over ``host_defaults`` over ``defaults``; unknown keys are errors.

    The attachment (zone, bridge, network) is not merged key by key: the most specific layer that
    sets any of them wins as a whole (netmodel.merge_attachment).
    """
    host_defaults = host_defaults or {}
    for where, data in (("defaults", defaults), ("host_defaults", host_defaults),
                        (f"machines[{item.get('name')}]", item)):
        unknown = sorted(set(data) - set(MACHINE_KEYS))
        if unknown:
            raise FleetError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(MACHINE_KEYS)}")
    if "name" in defaults:
        raise FleetError("defaults: 'name' cannot have a default; every machine names itself")
    merged = deep_merge(deep_merge(deep_merge(MACHINE_DEFAULTS, defaults), host_defaults), item)
    merged = {k: v for k, v in merged.items() if v is not None and k not in netmodel.ATTACHMENT_KEYS}
    merged.update(netmodel.merge_attachment([defaults, host_defaults, item]))
    return Machine(**merged)


def _check_machine(machine: Machine, template_names) -> List[str]:
    """All problems of one merged machine, each naming the option, value and allowed form."""
    errors = []
    label = f"machines[{machine.name}]"
    name_error = machine_name_error(machine.name)
    if name_error:
        errors.append(f"machines[].name: {name_error}")
    if machine.state not in STATES:
        errors.append(f"{label}.state: {machine.state!r} is not one of {', '.join(STATES)}")
    if machine.restart is not None and machine.restart not in RESTART_POLICIES:
        errors.append(f"{label}.restart: {machine.restart!r} is not one of {', '.join(RESTART_POLICIES)}")
    if not isinstance(machine.enabled, bool):
        errors.append(f"{label}.enabled: {machine.enabled!r} is not a boolean")
    for key in ("image", "settings", "resources"):
        if not isinstance(getattr(machine, key), dict):
            errors.append(f"{label}.{key}: must be a dictionary of {key} options, got {getattr(machine, key)!r}")
    for key in SECRET_KEYS:
        if isinstance(machine.image, dict) and machine.image.get(key) is not None:
            errors.append(f"{label}.image.{key}: give it as machines[].{key} (or defaults.{key}), "
                          "where it is kept out of logs (no_log)")
    if machine.template is not None and machine.template not in template_names:
        errors.append(f"{label}.template: {machine.template!r} is not in templates "
                      f"(declared: {', '.join(sorted(template_names)) or 'none'})")
    if machine.template is not None and isinstance(machine.image, dict) and machine.image.get("source"):
        errors.append(f"{label}: give either template or image.source, not both")
    errors += netmodel.attachment_errors(label, machine.zone, machine.bridge, machine.network)
    if machine.zone is not None and zone_name_error(machine.zone):
        errors.append(f"{label}.zone: {zone_name_error(machine.zone)}")
    if machine.bridge is not None and ifname_error(machine.bridge):
        errors.append(f"{label}.bridge: {ifname_error(machine.bridge)}")
    if machine.timeout is not None and (isinstance(machine.timeout, bool) or not isinstance(machine.timeout, int)
                                        or machine.timeout < 1):
        errors.append(f"{label}.timeout: {machine.timeout!r} must be a whole number of seconds, at least 1")
    if machine.wait is not None and not isinstance(machine.wait, bool):
        errors.append(f"{label}.wait: {machine.wait!r} is not a boolean")
    if machine.gateway is not None and machine.address is None:
        errors.append(f"{label}.gateway: needs address (a gateway without a static address is unused)")
    return errors + _address_form_errors(machine, label)


def _address_form_errors(machine: Machine, label: str) -> List[str]:
    """address is IPv4 and address6 IPv6, each with its prefix length; gateways of the same version."""
    errors = []
    for key, gateway_key, version in (("address", "gateway", 4), ("address6", "gateway6", 6)):
        value, gateway = getattr(machine, key), getattr(machine, gateway_key)
        if value is not None:
            try:
                iface = ipaddress.ip_interface(value) if isinstance(value, str) and "/" in value and \
                    not line_error(value) else None
            except ValueError:
                iface = None
            if iface is None or iface.version != version or iface.network.prefixlen == iface.max_prefixlen:
                example = "10.88.0.10/24" if version == 4 else "fd00:88::10/64"
                errors.append(f"{label}.{key}: {value!r} must be an IPv{version} address with prefix length, "
                              f"e.g. {example}")
        if gateway is not None and value is None and version == 6:
            errors.append(f"{label}.{gateway_key}: needs {key} (a gateway without a static address is unused)")
    return errors


def desired_machines(items: List[dict], defaults: dict, templates: List[dict],
                     host_defaults: Optional[dict] = None) -> List[Machine]:
    """Merged, validated machines; raises one FleetError listing every problem."""
    template_names = [t.get("name") for t in templates]
    errors = [f"templates[{i}].name: {machine_name_error(n)}" for i, n in enumerate(template_names)
              if machine_name_error(n)]
    machines, seen = [], set()
    for item in items:
        try:
            machine = merge_machine(defaults or {}, item, host_defaults)
        except (FleetError, TypeError) as exc:
            errors.append(str(exc))
            continue
        if machine.name in seen:
            errors.append(f"machines[].name: {machine.name!r} is declared twice")
        if machine.name in template_names:
            errors.append(f"machines[].name: {machine.name!r} is also a template name")
        seen.add(machine.name)
        errors.extend(_check_machine(machine, set(template_names)))
        machines.append(machine)
    errors += template_errors(templates) + port_collisions(machines)
    if errors:
        raise FleetError("invalid fleet: " + "; ".join(errors), errors=errors)
    return machines


def template_errors(templates: List[dict]) -> List[str]:
    """Duplicate template names and clone_from cycles among templates (fleet-wide, before any change)."""
    names = [t.get("name") for t in templates]
    errors = [f"templates[].name: {n!r} is declared twice" for n in sorted({n for n in names if names.count(n) > 1})]
    parent = {t.get("name"): t.get("clone_from") for t in templates
              if t.get("source") == "clone" and t.get("clone_from") in names}
    reported = set()
    for start in parent:
        chain, node = [start], parent.get(start)
        while node is not None and node not in chain:
            chain.append(node)
            node = parent.get(node)
        if node is not None and node not in reported:
            cycle = chain[chain.index(node):] + [node]
            reported.update(cycle)
            errors.append(f"templates[{node}].clone_from: cycle {' -> '.join(cycle)}; a template must be built from "
                          "a source that is not itself built from it")
    return errors


def _host_ports(value) -> List[Tuple[str, int]]:
    """(protocol, host port) of each Port= item ('tcp:8080:80', 'udp:53', '8080'); unparseable items are skipped."""
    out = []
    for item in value if isinstance(value, list) else [value]:
        parts = str(item).split(":")
        proto = parts.pop(0) if parts and parts[0] in ("tcp", "udp") else "tcp"
        if parts and parts[0].isdigit():
            out.append((proto, int(parts[0])))
    return out


def port_collisions(machines: List[Machine]) -> List[str]:
    """Two machines forwarding the same host port: the second would fail to start, or steal the first's traffic."""
    owners: Dict[Tuple[str, int], List[str]] = {}
    for machine in machines:   # stopped ones too: enabled at boot, both would start
        settings = machine.settings if isinstance(machine.settings, dict) else {}   # a non-dict is reported already
        for key in set(_host_ports(settings.get("port") or [])):
            owners.setdefault(key, []).append(machine.name)
    return [f"machines[{', '.join(names)}].settings.port: host port {proto}/{port} is forwarded by {len(names)} machines; "
            "each host port can go to one machine only" for (proto, port), names in sorted(owners.items()) if len(names) > 1]


def restart_policy(machine: Machine, default: str) -> str:
    return machine.restart or default


# ---------------------------------------------------------------- current state

@dataclass
class Current:
    """What is on the host for one machine now."""

    root_exists: bool = False
    settings_text: Optional[str] = None
    dropin_text: Optional[str] = None
    active: str = "inactive"  # systemd ActiveState of systemd-nspawn@NAME.service
    enabled: bool = False
    target_enabled: bool = True  # machines.target (read in the same show): disabled, no machine starts at boot
    unit: dict = field(default_factory=dict)  # every property read by the batched systemctl show
    stale: bool = False  # running since before its current settings file was written (a pending restart)

    @property
    def running(self) -> bool:
        return self.active in ("active", "activating", "reloading")


unit_name = systemd.unit_name


# ---------------------------------------------------------------- plan (pure)

@dataclass
class MachinePlan:
    """What must happen to one machine; decided identically in check mode and for real."""

    name: str
    image: Optional[dict] = None          # image step result (adapter): changed, created, changes, diff
    files: List[FileResult] = field(default_factory=list)
    settings_changed: bool = False
    resources_changed: bool = False
    reload_needed: bool = False           # systemd has not loaded the unit's files on disk (a run died before reload)
    restart_needed: bool = False          # a change needs a restart of a running machine
    enable: Optional[bool] = None         # True enable, False disable, None leave
    runtime: str = "none"                 # none | start | stop | restart
    pending_restart: bool = False
    live: Optional[object] = None  # the resources logic's LivePlan for the running unit (no restart)
    runtime_plan: Optional[machine_utils.Plan] = None   # the machine logic's plan (enable, start/stop/restart)
    wait: Optional[str] = None            # how to wait after a start: system | unit | none (None: the fleet's)
    timeout: Optional[int] = None         # seconds (None: the fleet's timeout)
    changes: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def is_fleet_managed(text: Optional[str]) -> bool:
    return text is not None and any(FLEET_MARKER in line for line in text.splitlines()[:3])


def adoption(path: str, text: Optional[str]) -> Optional[str]:
    """Words for taking over a .nspawn file the fleet did not write (None when it is ours or absent)."""
    if text is None or is_fleet_managed(text):
        return None
    owner = "written by corral.nspawn.settings" if any(MANAGED_MARKER in line for line in text.splitlines()[:3]) \
        else "hand-written (no corral.nspawn marker)"
    return f"adopt {path}, {owner}: its content is replaced and the machine becomes fleet-managed (prune may remove it)"


def plan_machine(machine: Machine, current: Current, settings: FileResult, dropin: FileResult,
                 image: Optional[dict], policy: str, settings_restart: bool = True, live=None,
                 load_stale: Optional[bool] = None) -> MachinePlan:
    """Decide every action for one machine from its desired and current state.

    ``settings_restart`` says whether the settings change needs a restart (the
    settings logic knows). ``live`` is the resources logic's plan for the running
    unit (assignments to push now, keys that only apply at the next start).
    """
    plan = MachinePlan(machine.name, image=image, files=[settings, dropin])
    if image and image.get("changed"):
        plan.changes.extend(image.get("changes") or ["image: prepared"])
        plan.restart_needed = bool(image.get("restart_required", not image.get("created")))
    if image and image.get("deferred"):
        plan.restart_needed = True  # first-boot changes wait for the machine to stop (setup_running=defer)
    adopted = adoption(settings.path, current.settings_text)
    if settings.changed:
        plan.settings_changed = True
        plan.changes.append(f"settings: {adopted}" if adopted else f"settings: {settings.action} {settings.path}")
        if adopted:
            plan.warnings.append(f"machines[{machine.name}]: settings: {adopted}")
        plan.restart_needed = plan.restart_needed or settings_restart
    elif current.stale:
        plan.restart_needed = True  # an earlier run changed the settings and did not restart
    if dropin.changed:
        plan.resources_changed = True
        plan.changes.append(f"resources: {dropin.action} {dropin.path}")
    elif load_stale if load_stale is not None else current.unit.get("NeedDaemonReload") == "yes":
        # e.g. a run killed between writing the drop-in and daemon-reload: a start would use the old limits
        plan.reload_needed = True
        plan.changes.append("daemon-reload: the unit's files changed on disk since systemd loaded them")
    if live is not None and current.running and machine.state != "stopped":
        plan.live = live if live.assignments else None
        plan.changes.extend(f"resources live: {change}" for change in live.changes if not dropin.changed)
        plan.restart_needed = plan.restart_needed or bool(live.pending and dropin.changed)
    runtime = machine_utils.plan(machine.name, machine.state, machine.enabled, machine_utils.Current(
        machine.name, current.active, enabled=current.enabled, target_enabled=current.target_enabled),
        plan.restart_needed, policy, terse=True)
    plan.enable, plan.runtime, plan.pending_restart = runtime.enable, runtime.runtime, runtime.pending_restart
    plan.runtime_plan = runtime
    plan.changes.extend(runtime.changes)
    return plan


def plan_prune(managed: List[str], declared: List[str], purge: bool) -> List[dict]:
    """Fleet-managed machines no longer declared -> what removing each means."""
    return [{"name": name, "purge": purge} for name in sorted(set(managed) - set(declared))]


# ---------------------------------------------------------------- read (batched)

def read_units(module, names: List[str]) -> machine_utils.RuntimeState:
    """State, enablement and live limits of every machine's unit and machines.target in ONE systemctl call."""
    return machine_utils.read(module, names, ["NeedDaemonReload", "DropInPaths"] + resources_utils.show_properties())


def managed_machines(settings_dir: str) -> List[str]:
    """Names of machines whose .nspawn file carries the fleet header."""
    try:
        entries = sorted(os.listdir(settings_dir))
    except FileNotFoundError:
        return []
    names = []
    for entry in entries:
        if entry.endswith(".nspawn") and is_fleet_managed(read_head(os.path.join(settings_dir, entry))):
            names.append(entry[:-len(".nspawn")])
    return names


def read_head(path: str, size: int = 512) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(size)
    except (FileNotFoundError, IsADirectoryError):
        return None


# ---------------------------------------------------------------- orchestration

@dataclass
class Context:
    module: object
    machines_dir: str
    settings_dir: str
    units_dir: str
    check_mode: bool
    policy: str
    predict_from: Dict[str, str] = field(default_factory=dict)   # template -> the directory it is copied from

    def root(self, name: str) -> str:
        return os.path.join(self.machines_dir, name)

    def settings_path(self, name: str) -> str:
        return os.path.join(self.settings_dir, f"{name}.nspawn")


@dataclass
class Desired:
    """Rendered target of one machine: computed for all machines before the first change."""

    machine: Machine
    settings_text: str
    dropin_path: str
    dropin_text: Optional[str]
    image_options: Optional[dict]
    resources: dict = field(default_factory=dict)  # normalised limits {Key: value}
    warnings: List[str] = field(default_factory=list)


def render_all(ctx: Context, machines: List[Machine], templates: List[dict]) -> List[Desired]:
    """Validate and render every machine (adapters validate their options); no I/O but reads."""
    desired, errors = [], []
    for machine in machines:
        try:
            desired.append(render_machine(ctx, machine, templates))
        except FleetError as exc:
            errors.append(str(exc))
    if errors:
        raise FleetError("invalid fleet: " + "; ".join(errors), errors=errors)
    return desired


def render_machine(ctx: Context, machine: Machine, templates: List[dict]) -> Desired:
    label = f"machines[{machine.name}]"
    settings_text, warnings = adapter_render_settings(ctx, machine, label)
    resources = adapter_resources(machine, label)
    warnings = warnings + resources_utils.device_warnings(resources, label=f"{label}.resources.")
    dropin_path, dropin_text = adapter_render_resources(ctx, machine.name, resources)
    image_options = image_options_for(ctx, machine, templates, label)
    if image_options is not None:
        adapter_validate_image(ctx, machine.name, image_options, f"{label}.image")
    has_source = bool((image_options or {}).get("source"))
    if not has_source and machine.state == "running" and not os.path.isdir(ctx.root(machine.name)):
        raise FleetError(f"{label}: state=running needs a root, but {ctx.root(machine.name)} does not exist "
                         "and neither template nor image.source is given")
    return Desired(machine, settings_text, dropin_path, dropin_text, image_options, resources, warnings)


def image_options_for(ctx: Context, machine: Machine, templates: List[dict], label: str) -> Optional[dict]:
    """Options for the image logic, or None when the fleet does not manage this root."""
    options = {k: v for k, v in machine.image.items() if v is not None}
    options.update({k: getattr(machine, k) for k in SECRET_KEYS if getattr(machine, k) is not None})
    if machine.template:
        options.update(source="clone", clone_from=machine.template)
    if machine.address:
        options.update(address=machine.address, gateway=machine.gateway)
    if machine.address6:
        options.update(address6=machine.address6, gateway6=machine.gateway6)
    if options and not options.get("hostname"):
        options["hostname"] = machine.name  # clones must not all answer to the template's hostname
    links = machine_links(machine)
    # Every link the machine gets is configured inside a root the fleet prepares (DHCP unless static);
    # image.network_links: [] opts out. A root adopted as it is (no template, no image options) is not written.
    if "network_links" not in options and links and options:
        options["network_links"] = links
    return options or None


def machine_attachment(machine: Machine) -> dict:
    """``{kind, name}`` of the machine's one attachment (zone, bridge, veth, host or none)."""
    return netmodel.attachment(machine.zone, machine.bridge, machine.network, machine.settings)


def machine_links(machine: Machine) -> List[str]:
    """Container-side links to configure by default; none for a machine that runs a command (no networkd)."""
    if not netmodel.boots(machine.settings):
        return []
    return netmodel.container_links(machine_attachment(machine)["kind"], machine.settings)


def current_of(ctx: Context, desired: Desired, state: machine_utils.RuntimeState) -> Current:
    name = desired.machine.name
    unit, runtime = state.units.get(name, {}), state.current(name)
    return Current(
        root_exists=os.path.isdir(ctx.root(name)),
        settings_text=read_text(ctx.settings_path(name)),
        dropin_text=read_text(desired.dropin_path),
        active=unit.get("ActiveState", "inactive"),
        enabled=runtime.enabled,
        target_enabled=runtime.target_enabled,
        unit=unit,
        stale=machine_utils.pending_restart(runtime, machine_utils.settings_mtimes(name, (ctx.settings_dir,))),
    )


def reconcile_machine(ctx: Context, desired: Desired, current: Current) -> MachinePlan:
    """Image step (acts through the image logic, honouring check mode), then the pure plan."""
    machine = desired.machine
    image = None
    if desired.image_options is not None:
        # A running root is written only when this run restarts the machine for the change anyway.
        options = dict(desired.image_options)
        options.setdefault("setup_running", "defer" if restart_policy(machine, ctx.policy) == "never" else "apply")
        options["_running"] = current.running   # known from the batched show: no command per machine
        if ctx.check_mode and machine.template and not os.path.isdir(ctx.root(machine.template)):
            # the template is built earlier in this run: check mode predicts from what it will be a copy of
            options.update(_source_planned=True, _predict_from=ctx.predict_from.get(machine.template))
        options["_network_auto"] = "network_links" not in machine.image   # computed: a missing networkd warns
        image = adapter_ensure_image(ctx, machine.name, options)
    settings = with_mode(plan_file(ctx.settings_path(machine.name), current.settings_text, desired.settings_text))
    dropin = with_mode(plan_file(desired.dropin_path, current.dropin_text, desired.dropin_text))
    policy = restart_policy(machine, ctx.policy)
    live = adapter_plan_live(desired.resources, current) if current.running else None
    settings_restart = adapter_settings_restart(current.settings_text, desired.settings_text)
    plan = plan_machine(machine, current, settings, dropin, image, policy, settings_restart, live,
                        load_stale(desired, current))
    plan.wait, plan.timeout = wait_mode(machine), machine.timeout
    return plan


def wait_mode(machine: Machine) -> Optional[str]:
    """A machine that runs a command instead of booting is waited for as an active unit, not a systemd."""
    if machine.wait is False:
        return "none"
    if not nspawn_settings.boots(machine.settings if isinstance(machine.settings, dict) else {}):
        return "unit"
    return "system" if machine.wait else None


def wait_specs(plans: List[MachinePlan], wait: bool, timeout: int) -> Dict[str, Tuple[str, float]]:
    """Per machine: how to wait after a start and for how long (machine values over the fleet's)."""
    return {p.name: (p.wait or ("system" if wait else "none"), p.timeout or timeout) for p in plans}


def load_stale(desired: Desired, current: Current) -> bool:
    """systemd runs the unit with other limits than our drop-in on disk says (resources.load_stale)."""
    return resources_utils.load_stale(desired.resources if desired.dropin_text is not None else {},
                                      desired.dropin_path, current.unit)


def with_mode(result: FileResult, mode: int = 0o644) -> FileResult:
    """A file whose content is right but whose mode was changed by hand is drift too (rewritten, same text)."""
    if result.changed or result.action == "remove":
        return result
    try:
        actual = os.stat(result.path).st_mode & 0o7777
    except FileNotFoundError:
        return result
    if actual == mode:
        return result
    text = result.diff.get("after") if result.diff else None
    if text is None:
        text = read_text(result.path)
    diff = file_diff(result.path, text, text)
    diff.update(before_header=f"{result.path} (mode {actual:04o})", after_header=f"{result.path} (mode {mode:04o})")
    return FileResult(result.path, True, diff, "update")


def apply_files(ctx: Context, plans: List[MachinePlan]) -> None:
    """Write changed settings files and drop-ins; one daemon-reload for all drop-ins."""
    if ctx.check_mode:
        return
    for plan in plans:
        for result in plan.files:
            if result.changed:
                write_file(ctx.module, result)
    if any(plan.resources_changed or plan.reload_needed for plan in plans):
        systemd.daemon_reload(ctx.module)


def write_file(module, result: FileResult) -> None:
    content = result.diff.get("after") if result.action != "remove" else None
    ensure_file(module, result.path, content, 0o644)
    if content is None:
        remove_empty_dir(os.path.dirname(result.path))


def remove_empty_dir(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass  # not empty (other drop-ins) or already gone: leave it


def apply_runtime(ctx: Context, plans: List[MachinePlan], wait: bool, timeout: int) -> List[str]:
    """Enable/disable, live limits, stop, restart and start, each as one batched call; returns warnings."""
    if ctx.check_mode:
        return []
    for plan in plans:
        if plan.live and plan.runtime not in ("stop", "restart"):
            adapter_apply_live(ctx.module, plan.name, plan.live)
    outcomes = machine_utils.apply(ctx.module, [p.runtime_plan for p in plans if p.runtime_plan],
                                   wait_specs(plans, wait, timeout))
    return check_outcomes(outcomes)


def check_outcomes(outcomes: Dict[str, machine_utils.WaitResult]) -> List[str]:
    """One error listing every machine that did not come up; warnings (degraded) otherwise."""
    failed = {n: o.as_dict() for n, o in outcomes.items() if not o.ok}
    if failed:
        raise FleetError("machines did not come up: " + "; ".join(f"{n}: {o.get('msg')}" for n, o in failed.items()),
                         machines_failed=failed)
    return [o.warning for o in outcomes.values() if o.warning]


def check_prune_all(items: List[dict], prune_flag: bool, prune_all: bool, victims: List[str]) -> None:
    """An empty machine list prunes the whole fleet: only when the operator said so (prune_all)."""
    if prune_all and not prune_flag:
        raise FleetError("prune_all: only used with prune=true (it allows pruning with an empty machines list)")
    if prune_flag and not items and victims and not prune_all:
        raise FleetError(f"prune: machines is empty, so prune=true would remove every fleet machine of this host "
                         f"({', '.join(victims)}); a host that lost its variables looks exactly like this. "
                         "Set prune_all=true (role: corral_fleet_prune_all) to prune them all; nothing was changed")


def prune(ctx: Context, declared: List[str], templates: List[str], purge: bool,
          units: machine_utils.RuntimeState) -> Tuple[List[str], List[str]]:
    """Remove fleet-managed machines that are no longer declared; returns (names, warnings).

    With purge, a root goes only when corral built it (build record); any other root is kept
    and named in a warning. Check mode predicts the same names and warnings.
    """
    victims = plan_prune(managed_machines(ctx.settings_dir), declared + templates, purge)
    names = [v["name"] for v in victims]
    if not names:
        return names, []
    module = ctx.module
    if not ctx.check_mode:
        running = [n for n in names if units.units.get(n, {}).get("ActiveState", "inactive") != "inactive"]
        systemd.stop(module, running)
        systemd.disable(module, names)
        for name in names:
            for path in [ctx.settings_path(name)] + adapter_owned_dropins(ctx, name):
                write_file(module, FileResult(path, True, {}, "remove"))
    warnings = [w for w in (adapter_purge_image(ctx, name) for name in names if purge) if w]
    if not ctx.check_mode:
        systemd.daemon_reload(module)
    return names, warnings


def machine_result(plan: MachinePlan, machine: Machine, current: Current) -> dict:
    started = plan.runtime in ("start", "restart") or (current.running and plan.runtime == "none")
    return {
        "changed": plan.changed,
        "changes": plan.changes,
        "pending_restart": plan.pending_restart,
        "state": "running" if started else "stopped",
        "enabled": machine.enabled,
    }


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


def run_fleet(module) -> dict:
    """The module's whole job; returns the result dict for exit_json."""
    params = module.params
    errors = shared.errors({k: params[k] for k in ("timeout",) + shared.DIRS})
    if errors:
        raise FleetError("invalid fleet: " + "; ".join(errors), errors=errors)
    ctx = Context(module, params["machines_dir"], params["settings_dir"], params["units_dir"],
                  module.check_mode, params["restart"])
    machines = desired_machines(params["machines"], params["defaults"], params["templates"],
                                params.get("host_defaults"))
    address_warnings, nets = check_addresses(params, machines)
    if params["prune"] or params.get("prune_all"):
        victims = set(managed_machines(ctx.settings_dir)) - {t["name"] for t in params["templates"]}
        check_prune_all(params["machines"], params["prune"], bool(params.get("prune_all")), sorted(victims))
    desired = render_all(ctx, machines, params["templates"])
    for item in params["templates"]:
        adapter_validate_template(ctx, item)
    templates = {t["name"]: adapter_ensure_template(ctx, t) for t in params["templates"]}
    ctx.predict_from = template_sources(ctx, params["templates"])
    declared = [m.name for m in machines]
    managed = managed_machines(ctx.settings_dir) if params["prune"] else []
    units = read_units(module, declared + [n for n in managed if n not in declared])
    currents = [current_of(ctx, d, units) for d in desired]
    plans = [in_step(f"machines[{d.machine.name}]: image and plan", reconcile_machine, ctx, d, c)
             for d, c in zip(desired, currents)]
    apply_files(ctx, plans)
    warnings = apply_runtime(ctx, plans, params["wait"], params["timeout"])
    pruned, prune_warnings = prune(ctx, declared, list(templates), params["purge"], units) if params["prune"] \
        else ([], [])
    seen, seen_warnings = adapter_addresses(ctx, plans, desired, currents, params["wait"], nets)
    for warning in address_warnings + [w for d in desired for w in d.warnings] + [w for p in plans for w in p.warnings] \
            + warnings + prune_warnings + seen_warnings:
        module.warn(warning)
    result = fleet_result(plans, desired, currents, templates, pruned)
    for name, entry in result["machines"].items():
        entry.update(seen.get(name, {}))
    if module._diff:
        result["diff"] = fleet_diff(plans, currents, templates, pruned)
    return result


def check_addresses(params: dict, machines: List[Machine], network_dir: str = networkd.NETWORK_DIR) \
        -> Tuple[List[str], Dict[str, netmodel.Net]]:
    """The address plan of the whole host, before any change (check mode too); (warnings, the host's networks).

    The subnets come from the network role's variables (``network_zones``, ``network_bridges``) and
    from the zones and bridges corral manages on the host (their ``50-corral-*.network`` files).
    """
    zones = [z for z in params.get("network_zones") or [] if isinstance(z, dict)]
    nets = netmodel.known_networks(zones, params.get("network_bridges") or [],
                                   netmodel.host_networks(read_network_files(network_dir)))
    wanted = [netmodel.Wanted(m.name, machine_attachment(m)["kind"], machine_attachment(m)["name"],
                              [(k, getattr(m, k)) for k in ("address", "address6") if getattr(m, k)])
              for m in machines]
    plan = netmodel.plan_addresses(wanted, nets, params.get("port_forwards"), [str(z.get("name")) for z in zones])
    if plan.errors:
        raise FleetError("invalid addresses: " + "; ".join(plan.errors), errors=plan.errors)
    return plan.warnings, nets


def read_network_files(directory: str) -> Dict[str, str]:
    """``{path: text}`` of corral's zone/bridge ``.network`` files on the host (read only)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return {}
    files = {}
    for name in names:
        if name.startswith(networkd.FILE_PREFIX) and name.endswith(".network"):
            text = read_text(os.path.join(directory, name))
            if text is not None:
                files[os.path.join(directory, name)] = text
    return files


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
    link = names_zone_ifname(found["name"]) if found["kind"] == "zone" else found["name"]
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


def adapter_addresses(ctx: Context, plans, desired, currents, wait: bool, nets: Dict[str, netmodel.Net],
                      lease_timeout: Optional[float] = None) -> Tuple[Dict[str, dict], List[str]]:
    """Per machine: its attachment and the addresses machined sees after the run; warnings for missing leases."""
    lease_timeout = DHCP_WAIT if lease_timeout is None else lease_timeout
    seen = {d.machine.name: {"attachment": machine_attachment(d.machine), "addresses": [], "ipv4": [], "ipv6": []}
            for d in desired}
    running = [p.name for p, c in zip(plans, currents)
               if p.runtime in ("start", "restart") or (c.running and p.runtime != "stop")]
    if not running:
        return seen, []
    pending = {} if ctx.check_mode else dhcp_waits(plans, desired, wait, nets)
    deadline = time.monotonic() + lease_timeout
    while True:
        try:
            listed = {m.get("machine"): m.get("addresses") for m in systemd.list_machines(ctx.module)}
        except (CommandError, systemd.SystemdError):
            return seen, []   # machined unreachable: the result says nothing rather than something wrong
        for name in running:
            seen[name].update(split_addresses(listed.get(name)))
        missing = {n: [v for v in sorted(versions) if not seen[n][f"ipv{v}"]] for n, versions in pending.items()}
        missing = {n: v for n, v in missing.items() if v}
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    return seen, [f"machines[{n}]: no {' or '.join(f'IPv{v}' for v in v_list)} address {lease_timeout:.0f} s after "
                  f"the start (DHCP / router advertisements of its {seen[n]['attachment']['kind']})"
                  for n, v_list in missing.items()]


def template_sources(ctx: Context, templates: List[dict]) -> Dict[str, str]:
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
            out[name] = ctx.root(item["clone_from"])
    return out


def in_step(what: str, function, *args):
    """``function(*args)``; an unexpected (non-corral) exception becomes a FleetError naming the machine and step."""
    try:
        return function(*args)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        if type(exc).__module__.startswith("ansible_collections.corral.nspawn."):
            raise
        raise FleetError(f"{what}: unexpected {type(exc).__name__}: {exc}") from exc


def fleet_result(plans, desired, currents, templates: Dict[str, dict], pruned: List[str]) -> dict:
    changed_templates = {n: t for n, t in templates.items() if t.get("changed")}
    return {
        "changed": any(p.changed for p in plans) or bool(pruned) or bool(changed_templates),
        "machines": {p.name: machine_result(p, d.machine, c) for p, d, c in zip(plans, desired, currents)},
        "templates": {n: {"changed": t.get("changed", False), "changes": t.get("changes", [])}
                      for n, t in templates.items()},
        "pruned": pruned,
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


# ---------------------------------------------------------------- adapters to the other module_utils
# The only place that knows the names of the single-purpose modules' logic.
def adapter_render_settings(ctx: Context, machine: Machine, label: str):
    """The .nspawn text (fleet header) and warnings from the settings logic; zone/bridge are shorthands."""
    params = dict(machine.settings)
    for key in ("zone", "bridge"):
        value = getattr(machine, key)
        if value is not None:
            if params.get(key) not in (None, value):
                raise FleetError(f"{label}: {key}={value!r} and settings.{key}={params[key]!r} disagree")
            params[key] = value
    for key, value in netmodel.network_settings(machine.network).items():
        if key in params and netmodel.as_bool(params[key]) != value:
            raise FleetError(f"{label}: network={machine.network!r} means {key}={str(value).lower()}, but "
                             f"settings.{key}={params[key]!r}; drop one of them")
        params[key] = value
    try:
        text, warnings = nspawn_settings.build_settings(params, header=FLEET_HEADER)
    except nspawn_settings.SettingsError as exc:
        raise FleetError(f"{label}.settings: {exc}") from None
    missing = nspawn_settings.bind_source_errors(params)
    if missing:
        raise FleetError(f"{label}.settings: " + "; ".join(missing))
    untrusted = nspawn_settings.untrusted_warning(machine.name, ctx.settings_path(machine.name), ctx.machines_dir)
    return text, [f"{label}: {w}" for w in warnings + ([untrusted] if untrusted else [])]


def adapter_settings_restart(before: Optional[str], after: Optional[str]) -> bool:
    return nspawn_settings.restart_required(before, after)


def adapter_resources(machine: Machine, label: str) -> dict:
    """Validated, normalised limits {Key: value} (resources logic)."""
    try:
        return resources_utils.normalize(machine.resources, f"{label}.resources.")
    except resources_utils.ResourceError as exc:
        raise FleetError(str(exc)) from None


def adapter_render_resources(ctx: Context, name: str, desired: dict):
    return resources_utils.dropin_path(name, ctx.units_dir), resources_utils.render_dropin(desired)


def adapter_live_properties() -> List[str]:
    return resources_utils.show_properties()


def adapter_plan_live(desired: dict, current: Current):
    return resources_utils.plan_live(desired, resources_utils.parse_dropin(current.dropin_text), current.unit)


def _image_params(ctx: Context, name: str, options: dict, state: str = "present") -> dict:
    params = {k: v for k, v in options.items() if k not in ("name", "state", "machines_dir")}
    params.update(name=name, state=state, machines_dir=ctx.machines_dir)
    return params


def adapter_validate_image(ctx: Context, name: str, options: dict, label: str) -> None:
    unknown = sorted(set(options) - set(images.IMAGE_OPTION_SPEC))
    errors = [f"unknown option(s) {', '.join(unknown)}"] if unknown else []
    errors += images.validate(images.normalize(_image_params(ctx, name, options)))
    if errors:
        raise FleetError(f"{label}: " + "; ".join(errors))


def adapter_ensure_image(ctx: Context, name: str, options: dict) -> dict:
    """Build/clone the root when missing and run its post-setup (image logic, honours check mode)."""
    try:
        return images.ensure_image(ctx.module, _image_params(ctx, name, options))
    except (images.ImageError, images.SetupError, CommandError) as exc:
        raise FleetError(f"image {name}: {exc}") from None


def adapter_validate_template(ctx: Context, item: dict) -> None:
    options = {k: v for k, v in item.items() if k != "name" and v is not None}
    secrets = [k for k in SECRET_KEYS if options.get(k) is not None]
    if secrets:
        raise FleetError(f"templates[{item.get('name')}].{secrets[0]}: templates are never booted; set it on the "
                         "machines (machines[].root_password_hash or defaults), where it is kept out of logs")
    if not options.get("source"):
        raise FleetError(f"templates[{item.get('name')}].source: required (how to build the template root)")
    adapter_validate_image(ctx, item.get("name"), options, f"templates[{item.get('name')}]")


def adapter_ensure_template(ctx: Context, item: dict) -> dict:
    return adapter_ensure_image(ctx, item["name"], {k: v for k, v in item.items() if k != "name" and v is not None})


def adapter_purge_image(ctx: Context, name: str) -> Optional[str]:
    """Delete the root of a pruned machine only if corral built it; else a "root kept" warning (image logic)."""
    try:
        outcome = images.purge_built(ctx.module, ctx.machines_dir, name)
    except (images.ImageError, CommandError, OSError) as exc:
        raise FleetError(f"purge {name}: {exc}") from None
    if outcome["kept"]:
        return (f"purge {name}: root kept: {outcome['path']} ({outcome['kept']}); its settings and drop-in were "
                "removed. Delete it with corral.nspawn.image state=absent if you mean it")
    return None


def adapter_owned_dropins(ctx: Context, name: str) -> List[str]:
    return [resources_utils.dropin_path(name, ctx.units_dir)]


def adapter_apply_live(module, name: str, live) -> None:
    """set-property --runtime (resets of removed limits included), verified with systemctl show."""
    try:
        cgroup.apply_live(module, name, live)
    except cgroup.LimitsError as exc:
        raise FleetError(str(exc), **exc.details) from None
