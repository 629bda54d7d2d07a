# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""corral.nspawn.nat planning (pure): validation, normalisation, sysctl and boot-unit files.

Persistence choice: the table is written in nft syntax to ``/etc/nftables.d/TABLE.nft`` and
loaded at boot by ``corral-nft-TABLE.service`` (oneshot, ordered after ``nftables.service``,
whose stock Debian config starts with ``flush ruleset``, and before ``network-pre.target``).
The stock ``/etc/nftables.conf`` is not edited: it belongs to the administrator.

The resource contract (corral.nspawn.nat and the networks module call it for one table):

- ``nat_io.read(module, params) -> NatState``: the managed networks, the kernel ruleset, our three files
  (text, mode), the live sysctls, the boot unit's state. Nothing changes; works in check mode.
- ``plan_table(params, state) -> TablePlan``: raises ``NatError`` (bad input, a foreign table) before any change;
  ``steps`` in the order apply runs them, ``changes`` in that order, ``diffs`` (table first, then the files);
  ``plan_files(plan, files)`` completes it with the ruleset and unit files, read after the transaction.
- ``nat_io.apply(module, engine, plan)``: the live nft transaction first and read back, only then the files,
  the boot unit and the sysctls; a refused transaction changes nothing. Never in check mode.
- ``plan(params, managed) -> NatPlan``: the validated, normalised inputs (``.errors``) the table is built from.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils import nft, systemd
from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError
from ansible_collections.corral.nspawn.plugins.module_utils.files import FileResult, file_diff, plan_file_mode
# a sysctl.d file is written the same way as the host role's (host_prepare)
from ansible_collections.corral.nspawn.plugins.module_utils.hostprep import sysctl_text
from ansible_collections.corral.nspawn.plugins.module_utils.plan import Plan
from ansible_collections.corral.nspawn.plugins.module_utils.names import ifname_error
from ansible_collections.corral.nspawn.plugins.module_utils.unitfile import HEADER, render
from ansible_collections.corral.nspawn.plugins.module_utils.values import line_error

RULESET_DIR = "/etc/nftables.d"
UNIT_DIR = "/etc/systemd/system"
SYSCTL_DIR = "/etc/sysctl.d"
LOCALNET = "net.ipv4.conf.all.route_localnet"
_TABLE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")  # used with fullmatch: '$' accepts a trailing newline

NAT_OPTION_SPEC = dict(
    table=dict(type="str", default="corral"),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    masquerade=dict(type="list", elements="str"),
    uplinks=dict(type="list", elements="str", default=[]),
    links=dict(type="list", elements="str", default=[]),
    networks=dict(type="list", elements="str"),
    forwards=dict(type="list", elements="dict", default=[], options=dict(
        proto=dict(type="str", default="tcp", choices=["tcp", "udp"]),
        host_port=dict(type="int", required=True),
        address=dict(type="str", required=True),
        port=dict(type="int"))),
    localhost=dict(type="bool", default=True),
    integrate=dict(type="bool", default=False),
    force=dict(type="bool", default=False),
)


@dataclass
class NatPlan:
    """Validated, normalised input: what build_ruleset and the files need."""

    table: str
    masquerade: list = field(default_factory=list)   # ip_network
    uplinks: List[str] = field(default_factory=list)
    links: List[str] = field(default_factory=list)
    forwards: List[dict] = field(default_factory=list)
    localhost: bool = True
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    def ruleset_params(self) -> dict:
        return {"table": self.table, "masquerade": self.masquerade, "uplinks": self.uplinks,
                "links": self.links, "forwards": self.forwards, "localhost": self.localhost}


def _pattern_error(value: str) -> Optional[str]:
    """Interface names, optionally ending in ``*`` (nft wildcard)."""
    if value == "*":  # nft: "All-wildcard strings are not supported"
        return "a bare '*' matches every interface and nft refuses it; name a link or a prefix such as 've-*'"
    if isinstance(value, str) and '"' in value:  # nft syntax cannot quote it: the boot-time restore would fail
        return f"{value!r} contains '\"', which the persisted nft file cannot hold"
    if isinstance(value, str) and value.startswith("@"):
        return f"{value!r} starts with '@', which nft reads as a set reference"
    return ifname_error(value[:-1] if value.endswith("*") and len(value) > 1 else value)


def _subnets(values, errors: List[str]) -> list:
    nets = []
    for value in values:
        try:
            if "/" not in str(value):
                raise ValueError("missing /PREFIX")
            if line_error(str(value)):  # an IPv6 scope id may hold any text; it reaches the nft file
                raise ValueError("a scope id with control characters")
            net = ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError as exc:
            errors.append(f"masquerade: {value!r} is not a subnet in CIDR form like 10.88.1.0/24 or "
                          f"fd00:88::/64 ({exc})")
            continue
        if net not in nets:
            nets.append(net)
    return nets


def _forward(item: dict, index: int, errors: List[str]) -> Optional[dict]:
    label = f"forwards[{index}]"
    port = item.get("port") if item.get("port") is not None else item.get("host_port")
    for key, value in (("host_port", item.get("host_port")), ("port", port)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:  # nft refuses true
            errors.append(f"{label}.{key}: {value!r} is not a port; allowed 1..65535")
            return None
    try:
        if line_error(str(item.get("address", ""))):  # an IPv6 scope id may hold any text
            raise ValueError(item.get("address"))
        address = ipaddress.ip_address(str(item.get("address", "")).strip())
    except ValueError:
        errors.append(f"{label}.address: {item.get('address')!r} is not an IPv4 or IPv6 address")
        return None
    return {"proto": item.get("proto") or "tcp", "host_port": item["host_port"], "address": str(address),
            "port": port}


def plan(params: dict, managed: List[dict]) -> NatPlan:
    """Validate and normalise ``params``; ``managed`` are networkd.managed_networks() entries."""
    result = NatPlan(table=params.get("table") or "corral", localhost=params.get("localhost", True))
    errors, warnings = result.errors, result.warnings
    if not _TABLE.fullmatch(result.table):
        control = line_error(result.table)  # name the control character, if that is the problem
        reason = control.split("; allowed:", maxsplit=1)[0] if control else "is not allowed"
        errors.append(f"table: {result.table!r} {reason}; "
                      "use 1-32 letters, digits, '_' or '-', starting with a letter (other tables, like "
                      "io.systemd.nat, are never touched)")
    for key, check in (("networks", ifname_error), ("uplinks", _pattern_error), ("links", _pattern_error)):
        for value in params.get(key) or []:
            error = check(value)
            if error:
                errors.append(f"{key}: {error}")
    # the rules come from every managed network, or only the links in ``networks``: the network role passes
    # the declared zones and bridges when it prunes, so one about to be removed loses its rules in the same run
    if params.get("networks") is not None:
        managed = [m for m in managed if m["name"] in set(params["networks"])]
    managed_nets = [ipaddress.ip_interface(a).network for m in managed for a in m["addresses"]]
    given = params.get("masquerade")
    result.masquerade = _subnets(given if given is not None else [str(n) for n in managed_nets], errors)
    result.uplinks = list(params.get("uplinks") or [])
    links = list(nft.CONTAINER_LINKS) + sorted({m["name"] for m in managed}) + list(params.get("links") or [])
    result.links = [link for i, link in enumerate(links) if link not in links[:i]
                    and not any(p.endswith("*") and link.startswith(p[:-1]) and link != p for p in links)]
    seen = {}
    for index, item in enumerate(params.get("forwards") or []):
        forward = _forward(item, index, errors)
        if forward is None:
            continue
        family = ipaddress.ip_address(forward["address"]).version
        key = (forward["proto"], forward["host_port"], family)
        if key in seen:
            errors.append(f"forwards[{index}]: {forward['proto']} host_port {forward['host_port']} (IPv{family}) "
                          f"is already forwarded by forwards[{seen[key]}]; each host port once per protocol")
            continue
        seen[key] = index
        inside = list(dict.fromkeys(result.masquerade + managed_nets))
        if not any(ipaddress.ip_address(forward["address"]) in net for net in inside if net.version == family):
            warnings.append(f"forwards[{index}]: {forward['address']} is outside every managed container "
                            f"subnet ({', '.join(str(n) for n in inside) or 'none'}); the forward is applied anyway")
        result.forwards.append(forward)
    return result


# ---------------------------------------------------------------- files

def ruleset_path(table: str) -> str:
    return f"{RULESET_DIR}/{table}.nft"


def unit_name(table: str) -> str:
    return f"corral-nft-{table}.service"


def unit_path(table: str) -> str:
    return f"{UNIT_DIR}/{unit_name(table)}"


def sysctl_path(table: str) -> str:
    return f"{SYSCTL_DIR}/90-corral-nat-{table}.conf"


def render_unit(table: str, nft_bin: str) -> str:
    """Boot-time restore of our table (see module docstring for the ordering)."""
    doc = [("Unit", [("Description", f"corral.nspawn nftables table {nft.FAMILY} {table}"),
                     ("DefaultDependencies", "no"),
                     ("Wants", "network-pre.target"),
                     ("Before", "network-pre.target shutdown.target"),
                     ("After", "nftables.service local-fs.target"),
                     # nftables.service restart/reload runs its config, whose stock first line is
                     # "flush ruleset": load ours again right after it (closes that window).
                     ("PartOf", "nftables.service"),
                     ("ReloadPropagatedFrom", "nftables.service"),
                     ("Conflicts", "shutdown.target")]),
           ("Service", [("Type", "oneshot"), ("RemainAfterExit", "yes"),
                        ("ExecStart", f"{nft_bin} -f {ruleset_path(table)}"),
                        ("ExecReload", f"{nft_bin} -f {ruleset_path(table)}")]),
           ("Install", [("WantedBy", "sysinit.target")])]
    return render(doc)


def sysctl_settings(result: NatPlan) -> Dict[str, str]:
    """Kernel settings NAT needs: forwarding (per family in use) and route_localnet for 127.0.0.1 forwards."""
    families = {n.version for n in result.masquerade}
    families |= {ipaddress.ip_address(f["address"]).version for f in result.forwards}
    settings = {"net.ipv4.ip_forward": "1"}
    if 6 in families:
        settings["net.ipv6.conf.all.forwarding"] = "1"
    if result.localhost and any(ipaddress.ip_address(f["address"]).version == 4 for f in result.forwards):
        settings["net.ipv4.conf.all.route_localnet"] = "1"
    return settings


def sysctl_changes(settings: Dict[str, str], current: Dict[str, Optional[str]]) -> Dict[str, str]:
    """Settings whose live value differs (``current`` maps key -> value read from /proc/sys)."""
    return {k: v for k, v in settings.items() if (current.get(k) or "").strip() != v}


def parse_sysctl(text: Optional[str]) -> Dict[str, str]:
    """``key = value`` lines of a sysctl.d file (comments skipped)."""
    found = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith(("#", ";")):
            found[key.strip()] = value.strip()
    return found


def sysctl_plan(settings: Dict[str, str], live: Dict[str, Optional[str]], persisted: Optional[str]) -> Dict[str, str]:
    """Live values to write: ``settings`` that differ, and route_localnet back to 0 when no forward
    needs it any more but our persisted file (``persisted``, its text) shows that corral set it.

    A route_localnet=1 that corral did not set is the administrator's and is left alone.
    """
    todo = sysctl_changes(settings, live)
    if LOCALNET not in settings and parse_sysctl(persisted).get(LOCALNET) == "1" \
            and (live.get(LOCALNET) or "").strip() not in ("", "0"):
        todo[LOCALNET] = "0"
    return todo


def steps(present: bool, sysctls: Dict[str, str], nft_needed: bool) -> List[str]:
    """The order of a run's actions.

    The kernel transaction goes first and is verified: when nft refuses it, the persisted ruleset,
    the boot unit and the sysctls are still as they were. route_localnet is switched off before the
    transaction that may remove its guard chain (``localnet-off``), and switched on (``sysctl``) only
    after the transaction that adds the guard. ``state: absent`` disables the unit before its file goes.
    """
    order = ["localnet-off"] if sysctls.get(LOCALNET) == "0" else []
    order += ["nft"] if nft_needed else []
    return order + (["files", "unit", "sysctl"] if present else ["unit", "files"])


# ---------------------------------------------------------------- the resource contract: plan

SYSCTL_KEYS = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", LOCALNET)


class NatError(CorralError):
    """Bad input, a table we do not own, a refused or diverging transaction; ``details`` for fail_json."""


@dataclass
class NatState:
    """What nat_io.read saw."""

    managed: List[dict] = field(default_factory=list)
    ruleset: list = field(default_factory=list)
    files: Dict[str, Tuple[Optional[str], Optional[int]]] = field(default_factory=dict)
    sysctls: Dict[str, Optional[str]] = field(default_factory=dict)
    unit: Dict[str, str] = field(default_factory=dict)
    nft_bin: str = "/usr/sbin/nft"


@dataclass
class TablePlan(Plan):
    """Everything apply does, in ``steps`` order; ``commands`` include the integrate rules."""

    table: str = "corral"
    present: bool = True
    todo: Optional[NatPlan] = None
    desired: Optional[list] = None
    blockers: List[dict] = field(default_factory=list)
    commands: List[dict] = field(default_factory=list)
    settings: Dict[str, str] = field(default_factory=dict)
    sysctls: Dict[str, str] = field(default_factory=dict)     # written in the last step
    off: Dict[str, str] = field(default_factory=dict)         # route_localnet off, before the transaction
    undo: Dict[str, str] = field(default_factory=dict)        # written back when nft refuses the transaction
    files: List[FileResult] = field(default_factory=list)   # planned by plan_files (see there)
    unit_verbs: List[str] = field(default_factory=list)
    steps: List[str] = field(default_factory=list)
    table_changes: List[str] = field(default_factory=list)
    nft_bin: str = "/usr/sbin/nft"
    table_diff: Optional[dict] = None

    @property
    def unit_changed(self) -> bool:
        return any(r.changed and r.path == unit_path(self.table) for r in self.files)


def inputs(params: dict, managed: List[dict]) -> NatPlan:
    """The validated inputs; NatError naming every bad option (nat_io checks this before any command)."""
    todo = plan(params, managed)
    if todo.errors:
        raise NatError("; ".join(todo.errors))
    return todo


def _table(params: dict, state: NatState) -> TablePlan:
    """The nft part: the desired table, the commands to get there, blockers and integrate rules."""
    todo = inputs(params, state.managed)
    current = nft.table_objects(state.ruleset, todo.table)
    if current is not None and not params.get("force") and not nft.owned(current):
        raise NatError(f"table: {nft.FAMILY} {todo.table} exists and was not created by corral.nspawn (no rule "
                       "carries a 'corral:' comment); refusing to replace it. Choose another table or set force=true",
                       ruleset=nft.render(current))
    present = params.get("state", "present") == "present"
    out = TablePlan(table=todo.table, present=present, todo=todo)
    out.desired = nft.build_ruleset(todo.ruleset_params())["nftables"] if present else None
    out.blockers = nft.foreign_blockers(state.ruleset, todo.table) if present else []
    integrate = nft.integrate_commands(state.ruleset, todo.table, out.blockers if params.get("integrate") else [],
                                       todo.links)
    changed = not nft.same(out.desired, current) if present else current is not None
    if changed:
        out.commands = nft.replace_commands(out.desired, todo.table) if present else nft.delete_commands(todo.table)
        verb = "replace" if present and current is not None else "create" if present else "delete"
        out.table_changes.append(f"{verb} table {nft.FAMILY} {todo.table}")
        out.table_diff = file_diff(f"nft table {nft.FAMILY} {todo.table}", nft.render(current)
                                   if current is not None else None, nft.render(out.desired) if present else None)
    out.table_changes += [f"update {len(integrate)} integrate rule command(s) in other tables"] if integrate else []
    out.commands += integrate
    out.warnings = todo.warnings + [
        f"table {b['family']} {b['table']} chain {b['chain']} (hook {b['hook']}, {b['reason']}) may drop container "
        "traffic: tables are independent, an accept in ours does not override it. Add accepts there, or set "
        "integrate=true" for b in ([] if params.get("integrate") else out.blockers)]
    return out


def plan_files(out: TablePlan, files: Dict[str, Tuple[Optional[str], Optional[int]]]) -> TablePlan:
    """Pure: the ruleset file, boot unit and sysctl file against their (text, mode), then the changes in
    step order. nat_io reads the ruleset and unit files only after the transaction (check mode: at once),
    so nothing of them is opened before the kernel took the table."""
    texts = {ruleset_path(out.table): nft.render_file(out.desired, HEADER + "\n") if out.present else None,
             unit_path(out.table): render_unit(out.table, out.nft_bin) if out.present else None,
             sysctl_path(out.table): sysctl_text(out.settings) if out.present else None}
    out.files = [plan_file_mode(path, *files.get(path, (None, None)), text) for path, text in texts.items()]
    words = {"localnet-off": [f"set {k} = {v}" for k, v in out.off.items()], "nft": out.table_changes,
             "files": [f"{r.action} {r.path}" for r in out.files if r.changed],
             "unit": [f"{verb} {unit_name(out.table)}" for verb in out.unit_verbs],
             "sysctl": [f"set {k} = {v}" for k, v in out.sysctls.items()]}
    out.changes = [line for step in out.steps for line in words[step]]
    out.diffs = [out.table_diff] * bool(out.table_diff) + [r.diff for r in out.files if r.changed and r.diff]
    return out


def _unit_verbs(present: bool, unit: Dict[str, str]) -> List[str]:
    """Enable and start (or stop and disable) the unit that restores the table at boot.

    Started, not only enabled: an active unit is restarted/reloaded with nftables.service
    (PartOf=, ReloadPropagatedFrom=), which loads our table again after that service's flush.
    """
    enabled, active = systemd.is_enabled(unit.get("UnitFileState", "")), systemd.is_running(unit)
    if present:
        return (["enable"] if not enabled else []) + (["start"] if not active else [])
    return (["stop"] if active else []) + (["disable"] if enabled else [])


def plan_table(params: dict, state: NatState) -> TablePlan:
    """Pure: the whole run for one table but its files (plan_files); NatError before any change."""
    out = _table(params, state)
    out.nft_bin = state.nft_bin
    out.settings = sysctl_settings(out.todo) if out.present else {}
    todo = sysctl_plan(out.settings, state.sysctls, state.files.get(sysctl_path(out.table), (None, None))[0])
    out.off = {LOCALNET: "0"} if todo.get(LOCALNET) == "0" else {}
    out.undo = {LOCALNET: (state.sysctls.get(LOCALNET) or "").strip()} if out.off else {}
    out.sysctls = {k: v for k, v in todo.items() if k not in out.off}
    out.unit_verbs = _unit_verbs(out.present, state.unit)
    out.steps = steps(out.present, todo, bool(out.commands))
    return plan_files(out, {sysctl_path(out.table): state.files.get(sysctl_path(out.table), (None, None))})
