# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""corral.nspawn.nat planning (pure): validation, normalisation, sysctl and boot-unit files.

Persistence choice: the table is written in nft syntax to ``/etc/nftables.d/TABLE.nft`` and
loaded at boot by ``corral-nft-TABLE.service`` (oneshot, ordered after ``nftables.service``,
whose stock Debian config starts with ``flush ruleset``, and before ``network-pre.target``).
The stock ``/etc/nftables.conf`` is not edited: it belongs to the administrator.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ansible_collections.corral.nspawn.plugins.module_utils import nft
from ansible_collections.corral.nspawn.plugins.module_utils.names import ifname_error
from ansible_collections.corral.nspawn.plugins.module_utils.unitfile import HEADER, render
from ansible_collections.corral.nspawn.plugins.module_utils.values import line_error

RULESET_DIR = "/etc/nftables.d"
UNIT_DIR = "/etc/systemd/system"
SYSCTL_DIR = "/etc/sysctl.d"
LOCALNET = "net.ipv4.conf.all.route_localnet"
_TABLE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")  # used with fullmatch: '$' accepts a trailing newline

FORWARD_SPEC = dict(
    proto=dict(type="str", default="tcp", choices=["tcp", "udp"]),
    host_port=dict(type="int", required=True),
    address=dict(type="str", required=True),
    port=dict(type="int"),
)
NAT_OPTION_SPEC = dict(
    table=dict(type="str", default="corral"),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    masquerade=dict(type="list", elements="str"),
    uplinks=dict(type="list", elements="str", default=[]),
    links=dict(type="list", elements="str", default=[]),
    networks=dict(type="list", elements="str"),
    forwards=dict(type="list", elements="dict", default=[], options=copy.deepcopy(FORWARD_SPEC)),
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


def select_networks(managed: List[dict], names: Optional[List[str]]) -> List[dict]:
    """The managed networks rules are derived from: all of them, or only the links in ``names``.

    The network role passes the declared zones and bridges when it prunes, so one that is about
    to be removed loses its rules in the same run (and check mode predicts that).
    """
    return managed if names is None else [m for m in managed if m["name"] in set(names)]


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
    for value in params.get("networks") or []:
        error = ifname_error(value)
        if error:
            errors.append(f"networks: {error}")
    managed = select_networks(managed, params.get("networks"))
    managed_nets = [ipaddress.ip_interface(a).network for m in managed for a in m["addresses"]]
    given = params.get("masquerade")
    result.masquerade = _subnets(given if given is not None else [str(n) for n in managed_nets], errors)
    for key in ("uplinks", "links"):
        for value in params.get(key) or []:
            error = _pattern_error(value)
            if error:
                errors.append(f"{key}: {error}")
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


def render_sysctl(settings: Dict[str, str]) -> str:
    return HEADER + "".join(f"{key} = {value}\n" for key, value in settings.items())


def sysctl_proc_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


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
