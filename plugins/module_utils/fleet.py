# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""The fleet's input: argument spec, defaults merge and validation (pure: no I/O).

One run of the fleet (``fleet_io.run_fleet``): ``desired_machines`` here (merge, validate, before any
read) -> ``fleet_io`` reads everything batched -> ``fleet_plan`` decides every machine's actions (pure)
-> ``fleet_io`` applies them in phase order (templates and images, files, one daemon-reload, live
limits, enable/disable/stop/restart/start as batched jobs with concurrent waits).

The machine keys come from ONE spec (``machine_spec``): ``MACHINE_KEYS`` and the ``Machine`` record
are derived from it.
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import field, make_dataclass
from typing import Dict, List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError
from ansible_collections.corral.nspawn.plugins.module_utils.files import MANAGED_MARKER
from ansible_collections.corral.nspawn.plugins.module_utils.names import ifname_error, machine_name_error, zone_name_error
from ansible_collections.corral.nspawn.plugins.module_utils import images, netmodel, nspawn_settings, shared
from ansible_collections.corral.nspawn.plugins.module_utils.values import line_error

FLEET_MARKER = f"{MANAGED_MARKER} fleet"
FLEET_HEADER = f"# {FLEET_MARKER}. Do not edit: changes are overwritten on the next run.\n"
RESTART_POLICIES = ("on_change", "never", "always")
STATES = ("running", "stopped", "present")
# Secrets are machine-level options. image and templates items have real sub-specs (derived from the
# image module's spec), so a secret written there is masked too (no_log) and then refused: one place per
# machine, never in a template (templates are never booted; clones would share it).
SECRET_KEYS = ("root_password", "root_password_hash")
# Options of the image module that the fleet sets itself for every image (never given in image/templates).
IMAGE_FIXED_KEYS = ("name", "state", "machines_dir")
MACHINE_DEFAULTS = {"enabled": True, "state": "running", "restart": None}


class FleetError(CorralError):
    """Bad input or a failed step; ``details`` go into the failure result."""


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
        address=dict(type="str"),
        gateway=dict(type="str"),
        root_password=dict(type="str", no_log=True),
        root_password_hash=dict(type="str", no_log=True),
        enabled=dict(type="bool"),
        state=dict(type="str", choices=list(STATES)),
        restart=dict(type="str", choices=list(RESTART_POLICIES)),
        wait=dict(type="bool"),
        timeout=dict(type="int"),
        network=dict(type="str", choices=list(netmodel.NETWORK_MODES)),
        address6=dict(type="str"),
        gateway6=dict(type="str"),
    )


MACHINE_KEYS = tuple(machine_spec())
# One declared machine after merging defaults: a field per key of machine_spec (dict options default to {},
# the rest to MACHINE_DEFAULTS or None: unset); name first and required.
Machine = make_dataclass("Machine", [("name", str)] + [
    (key, object, field(default_factory=dict) if spec["type"] == "dict" else field(default=MACHINE_DEFAULTS.get(key)))
    for key, spec in machine_spec().items() if key != "name"])


# ---------------------------------------------------------------- desired state (pure)

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
    return Machine(**merge_layers(MACHINE_DEFAULTS, defaults, host_defaults, item))


def merge_layers(*layers: Optional[dict]) -> dict:
    """The fleet's one merge of a machine's layers (least specific first; None or {} adds nothing).

    Dictionaries merge recursively, lists replace, None inherits (``deep_merge``); the attachment
    (zone, bridge, network) is not merged key by key: the most specific layer that sets any of
    them wins as a whole (netmodel.merge_attachment). Unset (None) keys are left out. The network
    prune check and the inventory plugin read a declared machine through this too, so they see the
    network the fleet deploys it on.
    """
    merged: dict = {}
    for layer in layers:
        merged = deep_merge(merged, layer or {})
    merged = {k: v for k, v in merged.items() if v is not None and k not in netmodel.ATTACHMENT_KEYS}
    merged.update(netmodel.merge_attachment(layers))
    return merged


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


def machine_attachment(machine: Machine) -> dict:
    """``{kind, name}`` of the machine's one attachment (zone, bridge, veth, host or none)."""
    return netmodel.attachment(machine.zone, machine.bridge, machine.network, machine.settings)


def image_options_for(machine: Machine) -> Optional[dict]:
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
    links = []   # the container-side links to configure by default; none when it runs a command (no networkd)
    if nspawn_settings.boots(machine.settings):
        links = netmodel.container_links(machine_attachment(machine)["kind"], machine.settings)
    # Every link the machine gets is configured inside a root the fleet prepares (DHCP unless static);
    # image.network_links: [] opts out. A root adopted as it is (no template, no image options) is not written.
    if "network_links" not in options and links and options:
        options["network_links"] = links
    return options or None


def image_params(machines_dir: str, name: str, options: dict, state: str = "present") -> dict:
    """The image logic's parameters for the root of ``name`` (the fleet sets name, state and machines_dir)."""
    params = {k: v for k, v in options.items() if k not in IMAGE_FIXED_KEYS}
    params.update(name=name, state=state, machines_dir=machines_dir)
    return params


def validate_image(machines_dir: str, name: str, options: dict, label: str) -> None:
    """The image logic's own validation of a machine's or template's image options."""
    unknown = sorted(set(options) - set(images.IMAGE_OPTION_SPEC))
    errors = [f"unknown option(s) {', '.join(unknown)}"] if unknown else []
    errors += images.validate(images.normalize(image_params(machines_dir, name, options)))
    if errors:
        raise FleetError(f"{label}: " + "; ".join(errors))


def validate_template(machines_dir: str, item: dict) -> None:
    """One templates item: never a secret, a source, and image options the image logic accepts."""
    options = {k: v for k, v in item.items() if k != "name" and v is not None}
    secrets = [k for k in SECRET_KEYS if options.get(k) is not None]
    if secrets:
        raise FleetError(f"templates[{item.get('name')}].{secrets[0]}: templates are never booted; set it on the "
                         "machines (machines[].root_password_hash or defaults), where it is kept out of logs")
    if not options.get("source"):
        raise FleetError(f"templates[{item.get('name')}].source: required (how to build the template root)")
    validate_image(machines_dir, item.get("name"), options, f"templates[{item.get('name')}]")
