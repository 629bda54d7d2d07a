# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""nftables for corral.nspawn (pure): a ruleset builder, semantic compare, nft-syntax renderer and
foreign drop-chain detection. The backend that talks to the kernel is nat_io.Backend.

The desired ruleset is written in exactly the JSON form ``nft -j list`` prints back
(without handles), so a read-back compares equal when nothing changed. Our table is
replaced in ONE transaction (add table, delete table, add table with chains and
rules); other tables are only read, except for opt-in ``integrate`` accept rules
tagged with our comment.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Dict, List, Optional

from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError

FAMILY = "inet"
CONTAINER_LINKS = ("ve-*", "vb-*", "vz-*")  # host-side links systemd-nspawn creates
COMMENT = "corral"  # our rules' comments start with this; marks the table as ours
PRIO_NAMES = {-300: "raw", -150: "mangle", 0: "filter", 50: "security"}
NAT_PRIO_NAMES = {("prerouting", -100): "dstnat", ("postrouting", 100): "srcnat"}


# ---------------------------------------------------------------- expression builders

def _match(left: dict, right, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> dict:
    return {"meta": {"key": key}}


def _payload(protocol: str, field: str) -> dict:
    return {"payload": {"protocol": protocol, "field": field}}


def _addr_match(network, field: str) -> dict:
    """``ip saddr 10.0.0.0/24`` (a single address prints without a prefix)."""
    proto = "ip" if network.version == 4 else "ip6"
    if network.prefixlen == network.max_prefixlen:
        right = str(network.network_address)
    else:
        right = {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}
    return _match(_payload(proto, field), right)


CT_ESTABLISHED = _match({"ct": {"key": "state"}}, ["established", "related"], "in")
CT_DNAT = _match({"ct": {"key": "status"}}, "dnat", "in")
FIB_LOCAL = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
ACCEPT, DROP, MASQUERADE = {"accept": None}, {"drop": None}, {"masquerade": None}


def _iif(link: str, op: str = "==") -> dict:
    return _match(_meta("iifname"), link, op)


def _oif(link: str, op: str = "==") -> dict:
    return _match(_meta("oifname"), link, op)


# ---------------------------------------------------------------- the ruleset

def _chain(table: str, name: str, ctype: str, hook: str, prio: int) -> dict:
    return {"chain": {"family": FAMILY, "table": table, "name": name, "type": ctype, "hook": hook,
                      "prio": prio, "policy": "accept"}}


def _rule(table: str, chain: str, expr: list, comment: str) -> dict:
    return {"rule": {"family": FAMILY, "table": table, "chain": chain, "comment": f"{COMMENT}: {comment}",
                     "expr": expr}}


def forward_rules(links: List[str]) -> List[tuple]:
    """``(expr, comment)`` accepting container traffic through the forward hook (also used by integrate)."""
    rules = [([CT_ESTABLISHED, ACCEPT], "return traffic"), ([CT_DNAT, ACCEPT], "port forwards")]
    rules += [([_iif(link), ACCEPT], f"from {link}") for link in links]
    return rules


def input_rules(links: List[str]) -> List[tuple]:
    """``(expr, comment)`` accepting DHCP and DNS from container links on the input hook."""
    rules = []
    for link in links:
        rules.append(([_iif(link), _match(_payload("udp", "dport"), 67), ACCEPT], f"dhcp from {link}"))
        # two rules, not "meta l4proto { tcp, udp }": libnftables prints that set numerically
        rules += [([_iif(link), _match(_payload(proto, "dport"), 53), ACCEPT], f"dns from {link}")
                  for proto in ("udp", "tcp")]
    return rules


def _masquerade_rules(subnets: list, uplinks: List[str], links: List[str]) -> List[tuple]:
    rules = []
    for net in subnets:
        if uplinks:
            for uplink in uplinks:
                rules.append(([_addr_match(net, "saddr"), _oif(uplink), MASQUERADE], f"masquerade {net}"))
        else:  # any link that is not a container link is an uplink
            rules.append(([_addr_match(net, "saddr")] + [_oif(link, "!=") for link in links] + [MASQUERADE],
                          f"masquerade {net}"))
    return rules


def _dnat_rule(forward: dict, with_fib: bool = True) -> tuple:
    address = ipaddress.ip_address(forward["address"])
    family = "ip" if address.version == 4 else "ip6"
    expr = [FIB_LOCAL] if with_fib else []
    expr += [_match(_meta("nfproto"), "ipv4" if address.version == 4 else "ipv6"),
             _match(_payload(forward["proto"], "dport"), forward["host_port"]),
             {"dnat": {"family": family, "addr": str(address), "port": forward["port"]}}]
    target = f"[{address}]" if address.version == 6 else str(address)
    return expr, f"{forward['proto']}/{forward['host_port']} to {target}:{forward['port']}"


def build_ruleset(params: dict) -> dict:
    """Our whole table as ``{"nftables": [objects]}`` in the form nft prints it back.

    ``params``: ``table``, ``masquerade`` (ip_network list), ``uplinks``, ``links`` (container link names
    or patterns), ``forwards`` (dicts proto/host_port/address/port), ``localhost`` (bool).
    """
    table = params["table"]
    links = list(params["links"])
    forwards = params.get("forwards") or []
    v4_forwards = [f for f in forwards if ipaddress.ip_address(f["address"]).version == 4]
    localnet = bool(params.get("localhost")) and bool(v4_forwards)
    chains = [("forward", "filter", "forward", 0, forward_rules(links)),
              ("input", "filter", "input", 0, input_rules(links)),
              ("prerouting", "nat", "prerouting", -100, [_dnat_rule(f) for f in forwards]),
              ("output", "nat", "output", -100, [_dnat_rule(f) for f in forwards]),
              ("postrouting", "nat", "postrouting", 100,
               _masquerade_rules(params["masquerade"], params.get("uplinks") or [], links)
               + ([([_addr_match(ipaddress.ip_network("127.0.0.0/8"), "saddr"), CT_DNAT, MASQUERADE],
                    "port forwards from 127.0.0.1")] if localnet else []))]
    if localnet:
        # route_localnet lets 127.0.0.1 be routed to containers; keep martians from outside out.
        chains.append(("localnet", "filter", "prerouting", -300,
                       [([_iif("lo", "!="), _addr_match(ipaddress.ip_network("127.0.0.0/8"), "daddr"), DROP],
                         "no 127.0.0.0/8 from outside (route_localnet)")]))
    objects = [{"table": {"family": FAMILY, "name": table}}]
    objects += [_chain(table, *chain[:4]) for chain in chains]
    for chain in chains:
        objects += [_rule(table, chain[0], expr, comment) for expr, comment in chain[4]]
    return {"nftables": objects}


# ---------------------------------------------------------------- reading and comparing

def _strip(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k != "handle"}


def table_objects(ruleset: List[dict], table: str, family: str = FAMILY) -> Optional[List[dict]]:
    """Objects of one table from a ``list ruleset`` answer (handles dropped); None when absent."""
    found, exists = [], False
    for obj in ruleset:
        kind, body = next(iter(obj.items())) if len(obj) == 1 else ("", {})
        if kind == "table" and body.get("family") == family and body.get("name") == table:
            exists = True
            found.append({"table": {"family": family, "name": table}})
        elif kind in ("chain", "rule", "set", "map", "flowtable", "counter", "quota", "ct helper", "limit") \
                and body.get("family") == family and body.get("table") == table:
            found.append({kind: _strip(body)})
    return found if exists else None


def _norm_expr(value):
    """Order-insensitive where nft does not care about order (set members, ``in`` lists)."""
    if isinstance(value, dict):
        out = {k: _norm_expr(v) for k, v in value.items()}
        if "match" in out and isinstance(out["match"].get("right"), list):
            out["match"]["right"] = sorted(out["match"]["right"], key=json.dumps)
        if isinstance(out.get("set"), list):
            out["set"] = sorted(out["set"], key=json.dumps)
        return out
    if isinstance(value, list):
        return [_norm_expr(v) for v in value]
    return value


def canonical(objects: Optional[List[dict]]) -> Optional[dict]:
    """Comparable form: chains by name, rules per chain in order, other objects sorted."""
    if objects is None:
        return None
    chains, rules, other = {}, {}, []
    for obj in objects:
        (kind, body), = obj.items()
        if kind == "chain":
            chains[body["name"]] = _strip(body)
        elif kind == "rule":
            rules.setdefault(body["chain"], []).append(
                {"expr": _norm_expr(body.get("expr", [])), "comment": body.get("comment")})
        elif kind != "table":
            other.append(json.dumps(obj, sort_keys=True))
    return {"chains": chains, "rules": rules, "other": sorted(other)}


def same(desired: List[dict], current: Optional[List[dict]]) -> bool:
    """True when the live table equals the desired one (semantically)."""
    return canonical(desired) == canonical(current)


def owned(current: Optional[List[dict]]) -> bool:
    """A table is ours when it is empty or a rule carries our comment."""
    if not current:
        return True
    rules = [o["rule"] for o in current if "rule" in o]
    chains = [o for o in current if "chain" in o]
    if not rules and not chains:
        return True
    return any(str(r.get("comment", "")).startswith(COMMENT + ":") for r in rules)


# ---------------------------------------------------------------- transactions

def replace_commands(desired: List[dict], table: str) -> List[dict]:
    """One transaction: add (no-op when present), delete, then add everything."""
    return delete_commands(table) + [{"add": obj} for obj in desired]


def delete_commands(table: str) -> List[dict]:
    ref = {"table": {"family": FAMILY, "name": table}}
    return [{"add": ref}, {"delete": ref}]


# ---------------------------------------------------------------- other tables

def _chain_rules(ruleset: List[dict], chain: dict) -> List[dict]:
    return [o["rule"] for o in ruleset if "rule" in o and o["rule"].get("family") == chain["family"]
            and o["rule"].get("table") == chain["table"] and o["rule"].get("chain") == chain["name"]]


def _unconditional_drop(rule: dict) -> bool:
    expr = [e for e in rule.get("expr", []) if "counter" not in e]
    return len(expr) == 1 and ("drop" in expr[0] or "reject" in expr[0])


def foreign_blockers(ruleset: List[dict], table: str) -> List[dict]:
    """Base chains of OTHER tables on forward/input that drop by policy or by a final catch-all rule."""
    found = []
    for obj in ruleset:
        chain = obj.get("chain")
        if not chain or chain.get("hook") not in ("forward", "input") or chain.get("type") != "filter":
            continue
        if chain.get("family") not in ("ip", "ip6", "inet") or (chain["family"], chain["table"]) == (FAMILY, table):
            continue
        rules = [r for r in _chain_rules(ruleset, chain) if r.get("comment") != integrate_comment(table)]
        if chain.get("policy") == "drop":
            reason = "policy drop"
        elif rules and _unconditional_drop(rules[-1]):
            reason = "ends with an unconditional drop/reject rule"
        else:
            continue
        found.append({"family": chain["family"], "table": chain["table"], "chain": chain["name"],
                      "hook": chain["hook"], "reason": reason})
    return found


def integrate_comment(table: str) -> str:
    return f"corral.nspawn:{table}"


def integrate_commands(ruleset: List[dict], table: str, blockers: List[dict], links: List[str]) -> List[dict]:
    """Commands that put our accepts first in each blocking chain (and drop stale ones); [] when in place."""
    tag = integrate_comment(table)
    wanted = {(b["family"], b["table"], b["chain"]): b["hook"] for b in blockers}
    commands = []
    tagged = [o["rule"] for o in ruleset if "rule" in o and o["rule"].get("comment") == tag]
    chains = {(r["family"], r["table"], r["chain"]) for r in tagged} | set(wanted)
    for key in sorted(chains):
        family, tname, cname = key
        have = [r for r in tagged if (r["family"], r["table"], r["chain"]) == key]
        rules = forward_rules(links) if wanted.get(key) == "forward" else input_rules(links) if key in wanted else []
        exprs = [rule[0] for rule in rules]
        if [_norm_expr(r["expr"]) for r in have] == [_norm_expr(e) for e in exprs]:
            continue
        commands += [{"delete": {"rule": {"family": family, "table": tname, "chain": cname,
                                          "handle": r["handle"]}}} for r in have]
        commands += [{"insert": {"rule": {"family": family, "table": tname, "chain": cname, "comment": tag,
                                          "expr": e}}} for e in reversed(exprs)]
    return commands


# ---------------------------------------------------------------- nft syntax

def _render_right(right) -> str:
    if isinstance(right, dict) and "prefix" in right:
        return f"{right['prefix']['addr']}/{right['prefix']['len']}"
    if isinstance(right, dict) and "set" in right:
        return "{ " + ", ".join(_render_right(v) for v in right["set"]) + " }"
    if isinstance(right, list):
        return ",".join(str(v) for v in right)
    return str(right)


def _render_left(left: dict) -> str:
    if "meta" in left:
        key = left["meta"]["key"]
        return key if key in ("iifname", "oifname") else f"meta {key}"
    if "payload" in left:
        return f"{left['payload']['protocol']} {left['payload']['field']}"
    if "ct" in left:
        return f"ct {left['ct']['key']}"
    if "fib" in left:
        return f"fib {' . '.join(left['fib']['flags'])} {left['fib']['result']}"
    raise ValueError(f"unknown expression {left}")


def _render_stmt(stmt: dict) -> str:
    if "match" in stmt:
        match = stmt["match"]
        left, right = _render_left(match["left"]), match["right"]
        text = f'"{right}"' if left in ("iifname", "oifname") else _render_right(right)
        op = "" if match["op"] in ("==", "in") else f"{match['op']} "
        return f"{left} {op}{text}"
    if "dnat" in stmt:
        dnat = stmt["dnat"]
        addr = f"[{dnat['addr']}]" if dnat["family"] == "ip6" else dnat["addr"]
        return f"dnat {dnat['family']} to {addr}:{dnat['port']}"
    verdict, arg = next(iter(stmt.items()))
    if arg is None:
        return verdict
    raise ValueError(f"unknown statement {stmt}")


def render_rule(rule: dict) -> str:
    """One rule in nft syntax; an expression we do not know is shown as its JSON."""
    try:
        text = " ".join(_render_stmt(s) for s in rule.get("expr", []))
    except (ValueError, KeyError, TypeError):
        text = "# (json) " + json.dumps(rule.get("expr"))
    return text + (f' comment "{rule["comment"]}"' if rule.get("comment") else "")


def _render_prio(chain: dict) -> str:
    prio = chain["prio"]
    if chain["type"] == "nat":
        return NAT_PRIO_NAMES.get((chain["hook"], prio), str(prio))
    return PRIO_NAMES.get(prio, str(prio))


def render(objects: Optional[List[dict]]) -> str:
    """The table in ``nft list table`` syntax ('' when absent)."""
    if objects is None:
        return ""
    table = next(o["table"] for o in objects if "table" in o)
    blocks = []
    for chain in (o["chain"] for o in objects if "chain" in o):
        lines = [f"\tchain {chain['name']} {{"]
        if "hook" in chain:
            lines.append(f"\t\ttype {chain['type']} hook {chain['hook']} priority {_render_prio(chain)}; "
                         f"policy {chain.get('policy', 'accept')};")
        lines += [f"\t\t{render_rule(o['rule'])}" for o in objects
                  if "rule" in o and o["rule"]["chain"] == chain["name"]]
        blocks.append("\n".join(lines) + "\n\t}\n")
    return f"table {table['family']} {table['name']} {{\n" + "\n".join(blocks) + "}\n"


def render_file(objects: List[dict], header: str) -> str:
    """A file ``nft -f`` loads atomically: create, delete, define (restores the table at boot)."""
    table = next(o["table"] for o in objects if "table" in o)
    ref = f"{table['family']} {table['name']}"
    return f"{header}table {ref}\ndelete table {ref}\n\n{render(objects)}"


# ---------------------------------------------------------------- errors

class NftError(CorralError):
    """nft refused a command (raised by nat_io.Backend, the libnftables/nft backend)."""


def summary(objects: Optional[List[dict]]) -> Dict[str, int]:
    """Rule count per chain (for the module result)."""
    counts: Dict[str, int] = {}
    for obj in objects or []:
        if "chain" in obj:
            counts.setdefault(obj["chain"]["name"], 0)
        elif "rule" in obj:
            counts[obj["rule"]["chain"]] = counts.get(obj["rule"]["chain"], 0) + 1
    return counts
