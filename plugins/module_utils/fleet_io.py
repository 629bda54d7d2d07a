# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""The fleet's I/O: read everything batched, apply the plan in phase order (``run_fleet``).

Phases of one run (check mode stops after planning; nothing below ``apply`` runs in it):

1. input: merge and validate every machine and template (``fleet``), the host's address plan, the limits,
   every .nspawn file read and planned by the settings resource (``render_all``): any problem fails the
   run before any change;
2. read: one ``systemctl show`` for every unit and machines.target, the drop-ins; the resources plan;
3. images (``images_step``): every template, then every machine's root, read -> images.plan (pure) ->
   built, cloned and prepared (not in check mode; clones overlap, a few at once: ``apply_images``); a machine
   whose root refuses a path is left alone for the run, the others go on, and the run fails naming it at the end;
4. plan: ``fleet_plan.plan_machine`` per machine (pure), with its root's outcome;
5. apply: files, one daemon-reload, live limits, then ``machine_io.apply`` (enable/disable, stop,
   restart, start: one systemctl call each, concurrent waits); prune; the machines' addresses.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait as wait_for
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils.files import FileResult
from ansible_collections.corral.nspawn.plugins.module_utils.fleet import (
    FLEET_HEADER, FLEET_MARKER, FleetError, Machine, desired_machines, image_options_for, image_params, machine_attachment,
    validate_image, validate_template,
)
from ansible_collections.corral.nspawn.plugins.module_utils.fleet_plan import (
    Current, Desired, MachinePlan, dhcp_waits, fleet_diff, fleet_result, is_fleet_managed, plan_machine, plan_prune,
    refused_plan, split_addresses, template_sources, wait_specs,
)
from ansible_collections.corral.nspawn.plugins.module_utils import images, images_io, images_setup, images_setup_io
from ansible_collections.corral.nspawn.plugins.module_utils import resources_io
from ansible_collections.corral.nspawn.plugins.module_utils import machine as machine_utils, machine_io
from ansible_collections.corral.nspawn.plugins.module_utils import netmodel, network_io, networkd, nspawn_settings
from ansible_collections.corral.nspawn.plugins.module_utils import nspawn_settings_io
from ansible_collections.corral.nspawn.plugins.module_utils import resources as resources_utils
from ansible_collections.corral.nspawn.plugins.module_utils import shared, systemd
from ansible_collections.corral.nspawn.plugins.module_utils.layout import Layout
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError

DHCP_WAIT = 20.0   # seconds a started DHCP machine is given to show its lease in the result
IMAGE_WORKERS = 4  # at most this many roots are cloned at once (image_workers)


@dataclass
class Context:
    """One run: the module, the host's directories, check mode and the fleet's restart policy."""

    module: object
    machines_dir: str
    settings_dir: str
    units_dir: str
    check_mode: bool
    policy: str

    @property
    def layout(self) -> Layout:
        return Layout(self.machines_dir, self.settings_dir, self.units_dir)


# ---------------------------------------------------------------- input: render every machine before any change

def render_all(ctx: Context, machines: List[Machine]) -> List[Desired]:
    """Validate every machine (each resource by its own logic) and plan every settings file; no I/O but reads."""
    desired, items, errors = [], [], []
    for machine in machines:
        try:
            items.append(settings_item(ctx, machine))
            desired.append(render_machine(ctx, machine))
        except FleetError as exc:
            errors.append(str(exc))
    try:   # every item's problems, also of a machine that failed above for another reason
        settings = plan_settings(ctx, items)
    except nspawn_settings.SettingsError as exc:
        errors.append(str(exc))
    if errors:
        raise FleetError("invalid fleet: " + "; ".join(errors), errors=errors)
    for one, item in zip(desired, settings.items):   # the settings plan's warnings (adoption, trust) lead
        one.settings, one.warnings = item, item.warnings + one.warnings
    return desired


def render_machine(ctx: Context, machine: Machine) -> Desired:
    """One machine's settings item, limits and image options (validated by their own logic)."""
    label = f"machines[{machine.name}]"
    try:
        limits = resources_utils.normalize(machine.resources, f"{label}.resources.")
    except resources_utils.ResourceError as exc:
        raise FleetError(str(exc)) from None
    warnings = resources_utils.device_warnings(limits, label=f"{label}.resources.")
    image_options = image_options_for(machine)
    if image_options is not None:
        validate_image(ctx.machines_dir, machine.name, image_options, f"{label}.image")
    has_source = bool((image_options or {}).get("source"))
    if not has_source and machine.state == "running" and not os.path.isdir(ctx.layout.root(machine.name)):
        raise FleetError(f"{label}: state=running needs a root, but {ctx.layout.root(machine.name)} does not exist "
                         "and neither template nor image.source is given")
    dropin = resources_utils.dropin_path(machine.name, ctx.units_dir)
    return Desired(machine, resources_utils.ResourcesItem(machine.name, dropin, limits), image_options, warnings)


def settings_item(ctx: Context, machine: Machine) -> nspawn_settings.SettingsItem:
    """The machine's .nspawn file for the settings resource (fleet header); zone/bridge/network are shorthands."""
    label = f"machines[{machine.name}]"
    params = dict(machine.settings)
    for key in ("zone", "bridge"):
        value = getattr(machine, key)
        if value is not None:
            if params.get(key) not in (None, value):
                raise FleetError(f"{label}: {key}={value!r} and settings.{key}={params[key]!r} disagree")
            params[key] = value
    for key, value in netmodel.network_settings(machine.network).items():
        if key in params and nspawn_settings.as_bool(params[key]) != value:
            raise FleetError(f"{label}: network={machine.network!r} means {key}={str(value).lower()}, but "
                             f"settings.{key}={params[key]!r}; drop one of them")
        params[key] = value
    return nspawn_settings.SettingsItem(machine.name, ctx.layout.settings_path(machine.name), params, FLEET_HEADER,
                                        f"{label}.settings", f"{label}: settings", ctx.machines_dir, FLEET_MARKER)


def plan_settings(ctx: Context, items: List[nspawn_settings.SettingsItem]) -> nspawn_settings.SettingsPlan:
    """The machines' .nspawn files through the settings resource: one read (no systemd version), the pure plan
    (a SettingsError names every item's problem)."""
    return nspawn_settings.plan(items, nspawn_settings_io.read(ctx.module, items, version=False))


def check_addresses(params: dict, machines: List[Machine], network_dir: str = networkd.NETWORK_DIR) \
        -> Tuple[List[str], Dict[str, netmodel.Net]]:
    """The address plan of the whole host, before any change (check mode too); (warnings, the host's networks).

    The subnets come from the network role's variables (``network_zones``, ``network_bridges``) and
    from the zones and bridges corral manages on the host (their ``50-corral-*.network`` files).
    """
    zones = [z for z in params.get("network_zones") or [] if isinstance(z, dict)]
    nets = netmodel.known_networks(zones, params.get("network_bridges") or [],
                                   netmodel.host_networks(network_io.read_dir(network_dir)))
    wanted = [netmodel.Wanted(m.name, machine_attachment(m)["kind"], machine_attachment(m)["name"],
                              [(k, getattr(m, k)) for k in ("address", "address6") if getattr(m, k)])
              for m in machines]
    plan = netmodel.plan_addresses(wanted, nets, params.get("port_forwards"), [str(z.get("name")) for z in zones])
    if plan.errors:
        raise FleetError("invalid addresses: " + "; ".join(plan.errors), errors=plan.errors)
    return plan.warnings, nets


def check_prune_all(items: List[dict], prune_flag: bool, prune_all: bool, victims: List[str]) -> None:
    """An empty machine list prunes the whole fleet: only when the operator said so (prune_all)."""
    if prune_all and not prune_flag:
        raise FleetError("prune_all: only used with prune=true (it allows pruning with an empty machines list)")
    if prune_flag and not items and victims and not prune_all:
        raise FleetError(f"prune: machines is empty, so prune=true would remove every fleet machine of this host "
                         f"({', '.join(victims)}); a host that lost its variables looks exactly like this. "
                         "Set prune_all=true (role: corral_fleet_prune_all) to prune them all; nothing was changed")


# ---------------------------------------------------------------- templates and images (read -> plan -> apply)

def image_items(ctx: Context, templates: List[dict], desired: List[Desired], currents: List[Current]) -> List[dict]:
    """The image logic's items: every template, then every machine whose root the fleet manages (build order)."""
    items = [image_params(ctx.machines_dir, t["name"], {k: v for k, v in t.items() if k != "name" and v is not None})
             for t in templates]
    predict_from = template_sources(ctx.machines_dir, templates)
    for one, current in zip(desired, currents):
        machine = one.machine
        if one.image_options is None:
            continue
        # A running root is written only when this run restarts the machine for the change anyway.
        options = dict(one.image_options)
        options.setdefault("setup_running", "defer" if (machine.restart or ctx.policy) == "never" else "apply")
        options["_running"] = current.running   # known from the batched show: no command per machine
        # A deferral whose restart is pending anyway decides nothing: its root is not read (a container can make
        # any path of it refuse); the first run that finds the machine stopped reads and prepares it.
        options["_setup_unread"] = current.running and options["setup_running"] == "defer" and (
            current.stale or bool(one.settings and one.settings.changed and one.settings.restart_required))
        if machine.template and not os.path.isdir(ctx.layout.root(machine.template)):
            # the template is built earlier in this run: its clone is predicted from what it will be a copy of
            options.update(_source_planned=True, _predict_from=predict_from.get(machine.template))
        options["_network_auto"] = "network_links" not in machine.image   # computed: a missing networkd warns
        items.append(image_params(ctx.machines_dir, machine.name, options))
    return items


def image_call(name: str, function, *args):
    """One image's read, plan or apply; the image logic's errors name the image."""
    return confined_call(name, False, function, *args)[0]


def confined_call(name: str, confine: bool, function, *args) -> Tuple[object, Optional[str]]:
    """``(function(*args), None)``, or ``(None, why)`` when the machine's root refused a path and ``confine``.

    A running container owns its root and can make any path in it refuse (a directory swapped for a symlink
    in a loop): that must cost its own machine this run, not every machine of the host. A template's root is
    the host's: its refusal (``confine`` false) fails the run like any other image error.
    """
    try:
        return in_step(f"machines[{name}]: image", function, *args), None
    except images_setup_io.RootRefused as exc:
        if not confine:
            raise FleetError(f"image {name}: {exc}") from None
        return None, str(exc)
    except (images.ImageError, images_setup.SetupError, CommandError) as exc:
        raise FleetError(f"image {name}: {exc}") from None


def image_workers() -> int:
    """How many roots are cloned at once: one per CPU this process may run on, at most IMAGE_WORKERS (a copy
    without reflinks is bound by the disk: two overlap well, many only contend)."""
    return max(1, min(IMAGE_WORKERS, len(os.sched_getaffinity(0))))


def apply_images(ctx: Context, todo: Dict[str, images.ItemPlan], workers: int,
                 confine: frozenset = frozenset()) -> Dict[str, dict]:
    """Every image's plan in item order, at most ``workers`` at once: {name: outcome}, in item order.

    Clones and preparations of an existing root overlap; anything else (a root built from another source,
    a removal) runs alone, after everything before it. A clone of an earlier item (its template) starts
    once that one is done. Once an item failed no further item starts; the started ones finish, and the
    first failure in item order is raised, as running them one after another would. A root in ``confine`` that
    refuses a path is no failure of the run: its outcome is ``{"refused": why}`` and the others go on.
    """
    futures: Dict[str, Future] = {}

    def busy() -> List[Future]:
        return [f for f in futures.values() if not f.done()]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for name, item in todo.items():
            alone = item.action in ("create", "rebuild") and item.params.get("source") != "clone"
            source = futures.get(item.params.get("clone_from"))
            if alone or source:
                wait_for(busy() if alone else [source])   # everything before it, or its template
            while len(busy()) >= workers:
                wait_for(busy(), return_when=FIRST_COMPLETED)
            if any(f.exception() for f in futures.values() if f.done()):
                break
            futures[name] = pool.submit(confined_call, name, name in confine, images_io.apply_one, ctx.module, item)
            if alone:
                wait_for([futures[name]])
    done = {name: future.result() for name, future in futures.items()}
    return {name: outcome if why is None else {"refused": why} for name, (outcome, why) in done.items()}


def images_step(ctx: Context, items: List[dict], confine: frozenset = frozenset()) -> Dict[str, dict]:
    """Read every image, plan them (pure), build/prepare them unless in check mode (apply_images): {name: result}.

    A root in ``confine`` (the machines, not the templates) that refuses a path while read or prepared is left
    alone from there on: its result is ``{"refused": why}``.
    """
    read = {i["name"]: confined_call(i["name"], i["name"] in confine, images_io.read_one, ctx.module, ctx.layout, i)
            for i in items}
    refused = {name: {"refused": why} for name, (_state, why) in read.items() if why is not None}
    todo = {name: image_call(name, images.plan_one, state) for name, (state, why) in read.items() if why is None}
    outcomes = {} if ctx.check_mode else apply_images(ctx, todo, image_workers(), confine)
    refused.update({name: outcome for name, outcome in outcomes.items() if "refused" in outcome})
    results = {name: refused.get(name) or images.result(item, outcomes.get(name)) for name, item in todo.items()}
    results.update(refused)
    for result in results.values():
        for warning in result.pop("warnings", []):
            ctx.module.warn(warning)
    return results


def refusal(check_mode: bool, result: dict) -> FleetError:
    """The task's failure when a machine's root refused a path: every other machine was planned and converged."""
    refused = {n: m["refused"] for n, m in result["machines"].items() if m.get("refused")}
    words = "; ".join(f"{name}: {why}" for name, why in refused.items())
    return FleetError(f"left untouched this run, their root refused a path: {words}. Every other machine was "
                      f"{'planned' if check_mode else 'converged'}", **result)


# ---------------------------------------------------------------- read (batched)

def read_units(module, names: List[str]) -> machine_utils.RuntimeState:
    """State, enablement and live limits of every machine's unit and machines.target in ONE systemctl call."""
    return machine_io.read(module, names, resources_io.SHOW + resources_utils.show_properties())


def current_of(ctx: Context, desired: Desired, state: machine_utils.RuntimeState) -> Current:
    name = desired.machine.name
    runtime = state.current(name)
    return Current(**vars(runtime), root_exists=os.path.isdir(ctx.layout.root(name)), unit=state.units.get(name, {}),
                   stale=machine_utils.pending_restart(runtime, machine_io.settings_mtimes(name, (ctx.settings_dir,))))


def managed_machines(settings_dir: str) -> List[str]:
    """Names of machines whose .nspawn file carries the fleet header."""
    return [name for name, text in nspawn_settings_io.read_dir(settings_dir).items() if is_fleet_managed(text)]


# ---------------------------------------------------------------- apply (never in check mode)

def apply_files(ctx: Context, plans: List[MachinePlan]) -> None:
    """Write changed settings files and drop-ins; one daemon-reload for all drop-ins."""
    for plan in plans:
        for result in plan.files:
            if result.changed:
                resources_io.write(ctx.module, result)
    if any(plan.reload_needed for plan in plans):
        systemd.daemon_reload(ctx.module)


def apply_runtime(ctx: Context, plans: List[MachinePlan], how: Dict[str, machine_utils.WaitSpec]) -> List[str]:
    """Live limits, then the machine logic's enable/disable, stop, restart and start (batched); returns warnings."""
    for plan in plans:
        if plan.live and plan.runtime not in ("stop", "restart"):
            # set-property --runtime (resets of removed limits included), verified with systemctl show
            resources_io.apply_live(ctx.module, plan.name, plan.live)
    outcomes = machine_io.apply(ctx.module, plans, how)
    # one error listing every machine that did not come up; warnings (degraded) otherwise
    failed = {n: o.as_dict() for n, o in outcomes.items() if not o.ok}
    if failed:
        raise FleetError("machines did not come up: " + "; ".join(f"{n}: {o.get('msg')}" for n, o in failed.items()),
                         machines_failed=failed)
    return [o.warning for o in outcomes.values() if o.warning]


def prune(ctx: Context, names: List[str], units: machine_utils.RuntimeState) -> None:
    """Stop, disable and remove the files of fleet-managed machines no longer declared (never in check mode)."""
    if not names:
        return
    systemd.stop(ctx.module, [n for n in names if units.units.get(n, {}).get("ActiveState", "inactive") != "inactive"])
    systemd.disable(ctx.module, names)
    for name in names:
        for path in (ctx.layout.settings_path(name), resources_utils.dropin_path(name, ctx.units_dir)):
            resources_io.write(ctx.module, FileResult(path, True, {}, "remove"))
    systemd.daemon_reload(ctx.module)


def purge(ctx: Context, names: List[str]) -> List[str]:
    """Delete a pruned machine's root only if corral built it (the image logic, honours check mode);
    any other root is kept and named in a warning."""
    warnings = []
    for name in names:
        try:
            outcome = images_io.purge_built(ctx.module, ctx.machines_dir, name)
        except (images.ImageError, CommandError, OSError) as exc:
            raise FleetError(f"purge {name}: {exc}") from None
        if outcome["kept"]:
            warnings.append(f"purge {name}: root kept: {outcome['path']} ({outcome['kept']}); its settings and "
                            "drop-in were removed. Delete it with corral.nspawn.image state=absent if you mean it")
    return warnings


def observed_addresses(ctx: Context, plans, desired, currents, wait: bool, nets: Dict[str, netmodel.Net],
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


def in_step(what: str, function, *args):
    """``function(*args)``; an unexpected (non-corral) exception becomes a FleetError naming the machine and step."""
    try:
        return function(*args)
    except Exception as exc:  # pylint: disable=broad-exception-caught
        if type(exc).__module__.startswith("ansible_collections.corral.nspawn."):
            raise
        raise FleetError(f"{what}: unexpected {type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------- the run

def prepare(ctx: Context, params: dict) -> Tuple[List[Desired], List[str], Dict[str, netmodel.Net]]:
    """Phase 1: merge, validate and render everything; any problem fails here, before any change."""
    errors = shared.errors({k: params[k] for k in ("timeout",) + shared.DIRS})
    if errors:
        raise FleetError("invalid fleet: " + "; ".join(errors), errors=errors)
    machines = desired_machines(params["machines"], params["defaults"], params["templates"],
                                params.get("host_defaults"))
    address_warnings, nets = check_addresses(params, machines)
    if params["prune"] or params.get("prune_all"):
        victims = set(managed_machines(ctx.settings_dir)) - {t["name"] for t in params["templates"]}
        check_prune_all(params["machines"], params["prune"], bool(params.get("prune_all")), sorted(victims))
    desired = render_all(ctx, machines)
    for item in params["templates"]:
        validate_template(ctx.machines_dir, item)
    return desired, address_warnings, nets


def run_fleet(module) -> dict:
    """The module's whole job; returns the result dict for exit_json."""
    params = module.params
    ctx = Context(module, params["machines_dir"], params["settings_dir"], params["units_dir"],
                  module.check_mode, params["restart"])
    desired, warnings, nets = prepare(ctx, params)
    declared = [d.machine.name for d in desired]
    templates = [t["name"] for t in params["templates"]]
    pruned = [v["name"] for v in plan_prune(managed_machines(ctx.settings_dir), declared + templates,
                                            params["purge"])] if params["prune"] else []
    units = read_units(module, declared + [n for n in pruned if n not in declared])
    currents = [current_of(ctx, d, units) for d in desired]
    items = [d.limits for d in desired]
    limits = resources_utils.plan(items, resources_io.read(module, items, shown=units.units))
    roots = images_step(ctx, image_items(ctx, params["templates"], desired, currents), frozenset(declared))
    # per machine: the settings and resources plans' items, the image step's outcome, the runtime decision;
    # a machine whose root refused a path is left as it is (refused_plan)
    plans = [refused_plan(d.machine.name, roots[d.machine.name]["refused"])
             if roots.get(d.machine.name, {}).get("refused") else
             in_step(f"machines[{d.machine.name}]: plan", plan_machine, d.machine, c, d.settings, lim.file,
                     roots.get(d.machine.name), d.machine.restart or ctx.policy, d.settings.restart_required,
                     lim.live, lim.stale, d.settings.takeover) for d, c, lim in zip(desired, currents, limits.items)]
    warnings += [w for d in desired for w in d.warnings]
    if not module.check_mode:
        apply_files(ctx, plans)
        warnings += apply_runtime(ctx, plans, wait_specs(desired, params["wait"], params["timeout"]))
        prune(ctx, pruned, units)
    warnings += purge(ctx, pruned) if params["purge"] else []
    seen, seen_warnings = observed_addresses(ctx, plans, desired, currents, params["wait"], nets)
    for warning in warnings + seen_warnings:
        module.warn(warning)
    templates = {n: roots[n] for n in templates}
    result = fleet_result(plans, desired, currents, templates, pruned)
    for name, entry in result["machines"].items():
        entry.update(seen.get(name, {}))
    if module._diff:
        result["diff"] = fleet_diff(plans, currents, templates, pruned)
    if result["refused"]:
        raise refusal(module.check_mode, result)
    return result
