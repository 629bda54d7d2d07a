# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""Zones, bridges and NAT of one host in one module call (corral.nspawn.networks, the network role).

Each zone, bridge and the NAT table run exactly the code of their own modules
(``network_io.zone``, ``network_io.bridge``, ``nat_io.run``), each with its own
validated options, through ``Item``: the module as that run sees it. Zones and bridges share ONE read
of the networkd directory and netlink and ONE ``networkctl reload`` (``network_io.finish``).
"""

from __future__ import annotations

import copy
from typing import List, Tuple

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError

from ansible_collections.corral.nspawn.plugins.module_utils import nat, nat_io, netlink, network_io, networkd, systemd
from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError
from ansible_collections.corral.nspawn.plugins.module_utils.nft import NftError

NETWORKD = "systemd-networkd.service"

# Each item is validated against its own module's spec (``validated``), so this module documents
# them by reference and the three specs stay the only copies.
OPTION_SPEC = dict(
    zones=dict(type="list", elements="dict", default=[]),
    bridges=dict(type="list", elements="dict", default=[]),
    nat=dict(type="dict"),
    networkd=dict(type="bool", default=True),
)
ITEM_SPECS = {"zones": networkd.ZONE_OPTION_SPEC, "bridges": networkd.BRIDGE_OPTION_SPEC, "nat": nat.NAT_OPTION_SPEC}


class ItemFailed(CorralError):
    """One zone, bridge or the NAT run failed (its module would have called fail_json)."""


class Item:
    """The module as one zone, bridge or NAT run sees it: its own params, the parent's everything else."""

    def __init__(self, module, params: dict, label: str):
        self._module, self.params, self.label = module, params, label
        self.check_mode = module.check_mode
        self._diff = module._diff

    def fail_json(self, msg: str, **details):
        raise ItemFailed(f"{self.label}: {msg}", **details)

    def warn(self, msg: str) -> None:
        self._module.warn(f"{self.label}: {msg}")

    def __getattr__(self, name):
        return getattr(self._module, name)


def validated(kind: str, item, label: str) -> Tuple[dict, List[str]]:
    """``item`` checked and filled in as its own module's AnsibleModule would (types, choices, defaults)."""
    if not isinstance(item, dict):
        return {}, [f"{label}: must be a dictionary of corral.nspawn.{kind.rstrip('s')} options, got {item!r}"]
    result = ArgumentSpecValidator(copy.deepcopy(ITEM_SPECS[kind])).validate(copy.deepcopy(item))
    return result.validated_parameters, [f"{label}: " + ("unsupported option(s): " if isinstance(e, UnsupportedError)
                                                         else "") + str(e) for e in result.errors]


def inputs(params: dict) -> Tuple[dict, List[str]]:
    """Every zone, bridge and the NAT options validated, and their own checks, labelled, before any change."""
    out: dict = {"zones": [], "bridges": [], "nat": None, "networkd": params["networkd"]}
    errors: List[str] = []
    for kind, check in (("zones", networkd.zone_errors), ("bridges", networkd.bridge_errors)):
        seen = set()
        for index, item in enumerate(params[kind] or []):
            name = item.get("name") if isinstance(item, dict) else None
            label = f"{kind}[{name if isinstance(name, str) else index}]"
            values, problems = validated(kind, item, label)
            if not problems:
                problems = [f"{label}: {e}" for e in check(values)]
                if name in seen:
                    problems.append(f"{label}: declared twice")
                seen.add(name)
            errors += problems
            out[kind].append(values)
    if params["nat"] is not None:
        out["nat"], problems = validated("nat", params["nat"], "nat")
        errors += problems
    return out, errors


def ensure_networkd(module) -> List[str]:
    """Enable and start systemd-networkd (zones and bridges are its links); the changes in words."""
    unit = systemd.show_unit(module, NETWORKD, ("LoadState", "UnitFileState", "ActiveState"))
    if unit.get("LoadState") == "not-found":
        raise ItemFailed(f"{NETWORKD} is not installed: zones and bridges need systemd-networkd "
                         "(the host role installs it)")
    verbs = systemd.enable_and_start(module, NETWORKD, unit)
    return [f"{' and '.join(verbs)} {NETWORKD}"] if verbs else []


def run_links(module, params: dict, record, result: dict) -> None:
    """Every zone and bridge against ONE read of the networkd directory and netlink, then ONE reload."""
    state = network_io.read()
    try:
        for kind, plan in (("zones", network_io.zone), ("bridges", network_io.bridge)):
            for item in params[kind]:
                label = f"{kind}[{item['name']}]"
                try:
                    result[kind][item["name"]] = record(label, plan(Item(module, dict(item), label), state))
                except networkd.NetworkError as exc:
                    raise ItemFailed(f"{label}: {exc}", **exc.details) from exc
    finally:   # the files already written are reloaded even when a later item fails
        try:
            network_io.finish(module, state)
        except networkd.NetworkError as exc:
            raise ItemFailed(str(exc), **exc.details) from exc


def run_networks(module) -> dict:
    """The module's whole job: networkd, every zone, every bridge, then the NAT table (in that order)."""
    params, errors = inputs(module.params)
    if errors:
        raise ItemFailed("; ".join(errors))
    result = {"changed": False, "changes": [], "zones": {}, "bridges": {}, "nat": None}
    diffs: list = []

    def record(label: str, out: dict) -> dict:
        result["changes"] += [f"{label}: {c}" for c in out.get("changes", [])]
        diffs.extend(out.pop("diff", None) or [])
        result["changed"] = result["changed"] or bool(out.get("changed"))
        return out

    try:
        if params["zones"] or params["bridges"]:
            if params["networkd"]:
                started = ensure_networkd(module)
                record("networkd", {"changes": started, "changed": bool(started)})
            netlink.require(module)
            run_links(module, params, record, result)
        if params["nat"] is not None:
            item = Item(module, dict(params["nat"]), "nat")
            try:
                result["nat"] = record("nat", nat_io.run(item))
            except (nat.NatError, NftError) as exc:
                raise ItemFailed(f"nat: {exc}", **exc.details) from exc
    except CorralError as exc:   # a failed command or any other error: with what changed so far
        failed = exc if isinstance(exc, ItemFailed) else ItemFailed(str(exc), **exc.details)
        failed.details.setdefault("changed", result["changed"] or bool(failed.details.get("changed")))
        failed.details.setdefault("changes", result["changes"])
        raise failed from exc.__cause__ if failed is exc else exc
    if module._diff and diffs:
        result["diff"] = diffs
    return result
