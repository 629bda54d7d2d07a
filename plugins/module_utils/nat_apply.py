# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reconcile corral.nspawn.nat: read the ruleset, plan (nat.py, nft.py), write files, apply one transaction."""

from __future__ import annotations

from typing import Dict, List, Optional

from ansible_collections.corral.nspawn.plugins.module_utils import nat, network_apply, networkd, nft, systemd
from ansible_collections.corral.nspawn.plugins.module_utils.files import ensure_file, file_diff, read_text
from ansible_collections.corral.nspawn.plugins.module_utils.unitfile import HEADER


def backend(module) -> nft.Backend:
    """libnftables binding or the nft binary; a clear error when neither is there."""
    found = nft.Backend(module)
    if not found.available():
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib("nftables (Debian: python3-nftables or the nft command)"))
    return found


def _read_sysctl(keys) -> Dict[str, Optional[str]]:
    return {key: read_text(nat.sysctl_proc_path(key)) for key in keys}


def _write_sysctls(module, todo: Dict[str, str]) -> List[str]:
    if not module.check_mode:
        for key, value in todo.items():
            with open(nat.sysctl_proc_path(key), "w", encoding="utf-8") as handle:
                handle.write(value + "\n")
    return [f"set {key} = {value}" for key, value in todo.items()]


def _boot_unit(module, table: str, present: bool, unit_changed: bool) -> List[str]:
    """Enable and start (or stop and disable) the unit that restores the table at boot.

    Started, not only enabled: an active unit is restarted/reloaded with nftables.service
    (PartOf=, ReloadPropagatedFrom=), which loads our table again after that service's flush.
    """
    unit = nat.unit_name(table)
    state = systemd.show_unit(module, unit, ["UnitFileState", "ActiveState"])
    enabled = systemd.is_enabled(state.get("UnitFileState", ""))
    active = state.get("ActiveState") in ("active", "activating", "reloading")
    verbs = (["enable"] if not enabled else []) + (["start"] if not active else []) if present \
        else (["stop"] if active else []) + (["disable"] if enabled else [])
    if not module.check_mode:
        if unit_changed and present:
            systemd.daemon_reload(module)
        for verb in verbs:
            systemd.systemctl(module, verb, [unit])
    return [f"{verb} {unit}" for verb in verbs]


def _files(module, table: str, desired: Optional[list], settings: Dict[str, str]) -> list:
    present = desired is not None
    nft_bin = module.get_bin_path("nft") or "/usr/sbin/nft"
    plan = {nat.ruleset_path(table): nft.render_file(desired, HEADER + "\n") if present else None,
            nat.unit_path(table): nat.render_unit(table, nft_bin) if present else None,
            nat.sysctl_path(table): nat.render_sysctl(settings) if present else None}
    return [ensure_file(module, path, text, 0o644) for path, text in plan.items()]


def _ownership(module, params: dict, current) -> None:
    if current is not None and not params["force"] and not nft.owned(current):
        module.fail_json(msg=f"table: {nft.FAMILY} {params['table']} exists and was not created by corral.nspawn "
                             "(no rule carries a 'corral:' comment); refusing to replace it. Choose another "
                             "table or set force=true", ruleset=nft.render(current))


def _transaction(module, engine, commands: List[dict], desired: Optional[list], table: str,
                 undo: Dict[str, str]) -> None:
    """Apply and read back; a refusal restores ``undo`` (sysctls changed before) and fails."""
    if not commands or module.check_mode:
        return
    try:
        engine.apply(commands)
    except nft.NftError as exc:
        _write_sysctls(module, undo)  # the refused transaction kept the guard chain: route_localnet may go back
        module.fail_json(msg=f"nft refused the transaction for table {nft.FAMILY} {table}; nothing was changed "
                             f"(the persisted ruleset, boot unit and sysctls are as before): {exc}", changed=False)
    after = nft.table_objects(engine.list_ruleset(), table)
    if desired is not None and not nft.same(desired, after):
        module.fail_json(msg="the table read back after the transaction differs from the desired one; the "
                             "persisted ruleset, boot unit and sysctls were not changed",
                         changed=True, observed=nft.render(after), expected=nft.render(desired))


def _warn(module, warnings: List[str], blockers: List[dict]) -> None:
    for warning in warnings:
        module.warn(warning)
    for b in blockers:
        module.warn(f"table {b['family']} {b['table']} chain {b['chain']} (hook {b['hook']}, {b['reason']}) may drop "
                    "container traffic: tables are independent, an accept in ours does not override it. Add accepts "
                    "there, or set integrate=true")


def _table_change(present: bool, current, table: str) -> str:
    verb = "replace" if present and current is not None else "create" if present else "delete"
    return f"{verb} table {nft.FAMILY} {table}"


def run(module) -> dict:
    params = module.params
    table = params["table"]
    todo = nat.plan(params, networkd.managed_networks(network_apply.read_dir()))
    if todo.errors:
        module.fail_json(msg="; ".join(todo.errors))
    engine = backend(module)
    ruleset = engine.list_ruleset()
    current = nft.table_objects(ruleset, table)
    _ownership(module, params, current)
    present = params["state"] == "present"
    desired = nft.build_ruleset(todo.ruleset_params())["nftables"] if present else None
    blockers = nft.foreign_blockers(ruleset, table) if present else []
    integrate = nft.integrate_commands(ruleset, table, blockers if params["integrate"] else [], todo.links)
    _warn(module, todo.warnings, [] if params["integrate"] else blockers)
    table_changed = (not nft.same(desired, current)) if present else current is not None
    commands = (nft.replace_commands(desired, table) if present else nft.delete_commands(table)) \
        if table_changed else []
    settings = nat.sysctl_settings(todo) if present else {}
    live = _read_sysctl(set(settings) | {nat.LOCALNET})
    sysctls = nat.sysctl_plan(settings, live, read_text(nat.sysctl_path(table)))
    off = {nat.LOCALNET: "0"} if sysctls.get(nat.LOCALNET) == "0" else {}
    changes: List[str] = []
    files: list = []
    for step in nat.steps(present, sysctls, bool(commands or integrate)):
        if step == "localnet-off":
            changes += _write_sysctls(module, off)
        elif step == "nft":
            changes += [_table_change(present, current, table)] if table_changed else []
            changes += [f"update {len(integrate)} integrate rule command(s) in other tables"] if integrate else []
            _transaction(module, engine, commands + integrate, desired, table,
                         {nat.LOCALNET: (live.get(nat.LOCALNET) or "").strip()} if off else {})
        elif step == "files":
            files = _files(module, table, desired, settings)
            changes += [f"{r.action} {r.path}" for r in files if r.changed]
            if not present and any(r.changed and r.path == nat.unit_path(table) for r in files) \
                    and not module.check_mode:
                systemd.daemon_reload(module)
        elif step == "unit":  # present: after its file is written; absent: disabled while the file exists
            changes += _boot_unit(module, table, present,
                                  any(r.changed and r.path == nat.unit_path(table) for r in files))
        elif step == "sysctl":
            changes += _write_sysctls(module, {k: v for k, v in sysctls.items() if k not in off})
    result = dict(changed=bool(changes), changes=changes, table=f"{nft.FAMILY} {table}", backend=engine.name,
                  chains=nft.summary(desired), blockers=blockers, sysctl=settings,
                  masquerade=[str(n) for n in todo.masquerade], links=todo.links, forwards=todo.forwards)
    if module._diff and changes:
        diffs = [r.diff for r in files if r.changed and r.diff]
        if table_changed:
            diffs.insert(0, file_diff(f"nft table {nft.FAMILY} {table}", nft.render(current) if current is not None
                                      else None, nft.render(desired) if present else None))
        result["diff"] = diffs
    return result
