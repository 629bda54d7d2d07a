# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""The I/O of corral.nspawn.nat (nat.plan_table decides; see nat's docstring for the contract).

- ``Backend(module)``: the kernel's ruleset through libnftables (python3-nftables) or the ``nft`` binary.

- ``read(module, params, engine) -> nat.NatState``; ``apply(module, engine, plan, state)``: the live transaction,
  read back, then the files (their plan completed from ``read_files``: the ruleset and unit files are not even
  opened before the kernel took the table), the boot unit and the sysctls.
- ``run(module) -> dict``: read -> plan -> apply (not in check mode) -> the module's result.
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils import nat, network_io, networkd, nft, runner, systemd
from ansible_collections.corral.nspawn.plugins.module_utils.files import read_file, read_text, write_result
from ansible_collections.corral.nspawn.plugins.module_utils.hostprep import proc_path

try:
    import nftables as _nftables
except ImportError:  # pragma: no cover - depends on the host
    _nftables = None


class Backend:
    """libnftables through the ``nftables`` binding, else the ``nft`` binary with JSON in and out; a clear
    error when neither is there."""

    def __init__(self, module):
        self.module, self.lib = module, None
        self.binary = None if _nftables else module.get_bin_path("nft")
        if _nftables:
            self.lib = _nftables.Nftables()
            self.lib.set_json_output(True)
            self.lib.set_handle_output(True)
        elif not self.binary:
            from ansible.module_utils.basic import missing_required_lib
            raise nat.NatError(missing_required_lib("nftables (Debian: python3-nftables or the nft command)"))
        self.name = "libnftables (python3-nftables)" if self.lib else "nft -j"

    def _cmd(self, text: str) -> str:
        if self.lib:
            rc, out, err = self.lib.cmd(text)
        elif text.lstrip().startswith("{"):
            rc, out, err = runner.run(self.module, [self.binary, "-j", "-f", "-"], check=False, data=text)
        else:
            rc, out, err = runner.run(self.module, [self.binary, "-j", "-a", *text.split()], check=False)
        if rc != 0:
            raise nft.NftError(f"nft: {err.strip() or rc}")
        return out

    def list_ruleset(self) -> List[dict]:
        out = self._cmd("list ruleset")
        return [o for o in json.loads(out or '{"nftables": []}')["nftables"] if "metainfo" not in o]

    def apply(self, commands: List[dict]) -> None:
        """Run all ``commands`` as one transaction (all or nothing)."""
        if commands:
            self._cmd(json.dumps({"nftables": commands}))


def read(module, params: dict, engine, managed: List[dict]) -> nat.NatState:
    """Everything the plan needs but the ruleset and unit files (read_files: after the transaction)."""
    table = params.get("table") or "corral"
    return nat.NatState(
        managed=managed, ruleset=engine.list_ruleset(),
        files={nat.sysctl_path(table): read_file(nat.sysctl_path(table))},
        sysctls={key: read_text(proc_path(key)) for key in nat.SYSCTL_KEYS},
        unit=systemd.show_unit(module, nat.unit_name(table), ["UnitFileState", "ActiveState"]),
        nft_bin=module.get_bin_path("nft") or "/usr/sbin/nft")


def read_files(plan: nat.TablePlan, state: nat.NatState) -> Dict[str, Tuple[Optional[str], Optional[int]]]:
    paths = (nat.ruleset_path(plan.table), nat.unit_path(plan.table))
    return dict(state.files, **{path: read_file(path) for path in paths})


def write_sysctls(values: Dict[str, str]) -> None:
    for key, value in values.items():
        with open(proc_path(key), "w", encoding="utf-8") as handle:
            handle.write(value + "\n")


def transaction(engine, plan: nat.TablePlan) -> None:
    """Apply and read back; a refusal writes ``plan.undo`` back (sysctls changed before) and fails."""
    try:
        engine.apply(plan.commands)
    except nft.NftError as exc:
        write_sysctls(plan.undo)  # the refused transaction kept the guard chain: route_localnet may go back
        raise nat.NatError(f"nft refused the transaction for table {nft.FAMILY} {plan.table}; nothing was changed "
                           f"(the persisted ruleset, boot unit and sysctls are as before): {exc}",
                           changed=False) from None
    after = nft.table_objects(engine.list_ruleset(), plan.table)
    if plan.desired is not None and not nft.same(plan.desired, after):
        raise nat.NatError("the table read back after the transaction differs from the desired one; the "
                           "persisted ruleset, boot unit and sysctls were not changed",
                           changed=True, observed=nft.render(after), expected=nft.render(plan.desired))


def write_files(module, plan: nat.TablePlan, state: nat.NatState) -> None:
    nat.plan_files(plan, read_files(plan, state))
    for result in plan.files:
        write_result(module, result)
    if not plan.present and plan.unit_changed:
        systemd.daemon_reload(module)


def boot_unit(module, plan: nat.TablePlan) -> None:
    if plan.present and plan.unit_changed:
        systemd.daemon_reload(module)
    for verb in plan.unit_verbs:
        systemd.systemctl(module, verb, [nat.unit_name(plan.table)])


def apply(module, engine, plan: nat.TablePlan, state: nat.NatState) -> None:
    """Every step in the plan's order (the kernel first: see nat.steps)."""
    actions = {"localnet-off": lambda: write_sysctls(plan.off), "nft": lambda: transaction(engine, plan),
               "files": lambda: write_files(module, plan, state), "unit": lambda: boot_unit(module, plan),
               "sysctl": lambda: write_sysctls(plan.sysctls)}
    for step in plan.steps:
        actions[step]()


def run(module) -> dict:
    """The nat module's whole job for ``module.params`` (the networks module passes its nat item)."""
    params = module.params
    managed = networkd.managed_networks(network_io.read_dir())
    nat.inputs(params, managed)   # bad input fails before any command (nft, systemctl)
    engine = Backend(module)
    state = read(module, params, engine, managed)
    plan = nat.plan_table(params, state)
    for warning in plan.warnings:
        module.warn(warning)
    if module.check_mode:
        nat.plan_files(plan, read_files(plan, state))
    else:
        apply(module, engine, plan, state)
    todo = plan.todo
    result = dict(changed=plan.changed, changes=plan.changes, table=f"{nft.FAMILY} {plan.table}",
                  backend=engine.name, chains=nft.summary(plan.desired), blockers=plan.blockers,
                  sysctl=plan.settings, masquerade=[str(n) for n in todo.masquerade], links=todo.links,
                  forwards=todo.forwards)
    if module._diff and plan.changes:
        result["diff"] = plan.diffs
    return result
