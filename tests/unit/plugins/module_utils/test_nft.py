# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for nft.py: ruleset builder, semantic compare, ownership, foreign blockers, integrate, render."""

import copy
import ipaddress
import json
import os

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import nft

# `nft -j -a list ruleset` of nft 1.0.6 (Debian 12) for a small corral table and a docker-like filter table.
with open(os.path.join(os.path.dirname(__file__), "fixtures", "nft-1.0.6-ruleset.json"), encoding="utf-8") as _fh:
    FIXTURE = json.load(_fh)["nftables"]


def ruleset(**overrides):
    params = {"table": "corral", "masquerade": [ipaddress.ip_network("10.88.10.0/24")], "uplinks": ["uplink0"],
              "links": ["ve-*", "vz-*"], "forwards": [], "localhost": True}
    params.update(overrides)
    return nft.build_ruleset(params)["nftables"]


def fixture_desired():
    """What our helpers produce for the fixture's table, in the order the fixture has it."""
    return [{"table": {"family": "inet", "name": "corral"}},
            nft._chain("corral", "forward", "filter", "forward", 0),
            nft._chain("corral", "postrouting", "nat", "postrouting", 100),
            nft._rule("corral", "forward", [nft.CT_ESTABLISHED, nft.ACCEPT], "return traffic"),
            nft._rule("corral", "forward", [nft._iif("vz-*"), nft.ACCEPT], "from vz-*"),
            nft._rule("corral", "postrouting", *nft._masquerade_rules(
                [ipaddress.ip_network("10.88.10.0/24")], ["uplink0"], [])[0])]


# ---------------------------------------------------------------- compare with what nft prints

def test_builder_output_equals_what_nft_prints_back():
    current = nft.table_objects(FIXTURE, "corral")
    assert nft.same(fixture_desired(), current)


def test_compare_ignores_handles_and_order_of_set_members():
    current = copy.deepcopy(nft.table_objects(FIXTURE, "corral"))
    for obj in current:
        body = next(iter(obj.values()))
        body["handle"] = 999
    current[3]["rule"]["expr"][0]["match"]["right"] = ["related", "established"]
    assert nft.same(fixture_desired(), current)


@pytest.mark.parametrize("mutate", [
    lambda objs: objs[5]["rule"]["expr"][1]["match"].update(right="eth9"),       # other uplink
    lambda objs: objs.pop(4),                                                     # rule missing
    lambda objs: objs[1]["chain"].update(policy="drop"),                          # chain policy
    lambda objs: objs[3]["rule"].update(comment="edited by hand"),               # comment
    lambda objs: objs.append({"rule": dict(objs[4]["rule"])}),                    # extra rule
])
def test_compare_detects_real_differences(mutate):
    current = copy.deepcopy(nft.table_objects(FIXTURE, "corral"))
    mutate(current)
    assert not nft.same(fixture_desired(), current)


def test_rule_order_matters():
    current = copy.deepcopy(nft.table_objects(FIXTURE, "corral"))
    current[3], current[4] = current[4], current[3]
    assert not nft.same(fixture_desired(), current)


def test_absent_table_reads_as_none_and_differs():
    assert nft.table_objects(FIXTURE, "other") is None
    assert not nft.same(fixture_desired(), None)


def test_regression_libnftables_prints_l4proto_sets_numerically():
    """The binding printed ``meta l4proto { tcp, udp }`` as ``{ 6, 17 }``: a run never converged. No sets now."""
    text = json.dumps(ruleset(forwards=[{"proto": "udp", "host_port": 53, "address": "10.88.10.2", "port": 53}]))
    assert "l4proto" not in text and '"set"' not in text


# ---------------------------------------------------------------- the ruleset

def chains(objects):
    return {o["chain"]["name"]: (o["chain"]["type"], o["chain"]["hook"], o["chain"]["prio"])
            for o in objects if "chain" in o}


def rules(objects, chain):
    return [o["rule"] for o in objects if "rule" in o and o["rule"]["chain"] == chain]


def test_chains_without_forwards_have_no_localnet_guard():
    assert chains(ruleset()) == {"forward": ("filter", "forward", 0), "input": ("filter", "input", 0),
                                 "prerouting": ("nat", "prerouting", -100), "output": ("nat", "output", -100),
                                 "postrouting": ("nat", "postrouting", 100)}
    assert all(o["chain"]["policy"] == "accept" for o in ruleset() if "chain" in o)


def test_port_forward_v4_and_v6_dnat_in_prerouting_and_output_with_localnet_guard():
    forwards = [{"proto": "tcp", "host_port": 8080, "address": "10.88.10.2", "port": 80},
                {"proto": "tcp", "host_port": 8080, "address": "fd00:88::2", "port": 80}]
    objs = ruleset(forwards=forwards)
    assert chains(objs)["localnet"] == ("filter", "prerouting", -300)
    for chain in ("prerouting", "output"):
        dnats = [r["expr"][-1]["dnat"] for r in rules(objs, chain)]
        assert dnats == [{"family": "ip", "addr": "10.88.10.2", "port": 80},
                         {"family": "ip6", "addr": "fd00:88::2", "port": 80}]
        assert all(r["expr"][0] == nft.FIB_LOCAL for r in rules(objs, chain))
    post = rules(objs, "postrouting")
    assert post[-1]["comment"] == "corral: port forwards from 127.0.0.1"


def test_localhost_off_or_v6_only_forwards_need_no_route_localnet_rules():
    v6 = [{"proto": "tcp", "host_port": 80, "address": "fd00::2", "port": 80}]
    v4 = [{"proto": "tcp", "host_port": 80, "address": "10.0.0.2", "port": 80}]
    for objs in (ruleset(forwards=v6), ruleset(forwards=v4, localhost=False)):
        assert "localnet" not in chains(objs)
        assert not any("127.0.0.1" in r["comment"] for r in rules(objs, "postrouting"))


def test_masquerade_without_uplinks_excludes_every_container_link():
    (rule,) = rules(ruleset(uplinks=[], links=["ve-*", "br0"]), "postrouting")
    assert [e["match"]["right"] for e in rule["expr"][1:-1]] == ["ve-*", "br0"]
    assert all(e["match"]["op"] == "!=" for e in rule["expr"][1:-1])


def test_masquerade_per_uplink_and_family():
    nets = [ipaddress.ip_network("10.1.0.0/24"), ipaddress.ip_network("fd00:1::/64"),
            ipaddress.ip_network("10.9.9.9/32")]
    post = rules(ruleset(masquerade=nets, uplinks=["eth0", "wlan*"]), "postrouting")
    assert len(post) == 6
    assert post[2]["expr"][0]["match"]["left"]["payload"]["protocol"] == "ip6"
    assert post[4]["expr"][0]["match"]["right"] == "10.9.9.9"  # /32 prints without a prefix


def test_forward_and_input_accept_each_link():
    objs = ruleset(links=["ve-*", "corralbr0"])
    assert [r["comment"] for r in rules(objs, "forward")] == [
        "corral: return traffic", "corral: port forwards", "corral: from ve-*", "corral: from corralbr0"]
    assert [r["comment"] for r in rules(objs, "input")] == [
        "corral: dhcp from ve-*", "corral: dns from ve-*", "corral: dns from ve-*",
        "corral: dhcp from corralbr0", "corral: dns from corralbr0", "corral: dns from corralbr0"]


def test_every_rule_carries_our_comment_so_the_table_is_recognisably_ours():
    objs = ruleset(forwards=[{"proto": "udp", "host_port": 1, "address": "10.0.0.1", "port": 2}])
    assert all(o["rule"]["comment"].startswith("corral: ") for o in objs if "rule" in o)
    assert nft.owned(objs)


# ---------------------------------------------------------------- ownership and transactions

def test_ownership():
    assert nft.owned(None) and nft.owned([{"table": {"family": "inet", "name": "corral"}}])
    assert nft.owned(nft.table_objects(FIXTURE, "corral"))
    foreign = nft.table_objects(FIXTURE, "filter", family="ip")
    assert not nft.owned(foreign)


def test_replace_is_one_batch_add_delete_add():
    desired = ruleset()
    cmds = nft.replace_commands(desired, "corral")
    ref = {"table": {"family": "inet", "name": "corral"}}
    assert cmds[:2] == [{"add": ref}, {"delete": ref}]
    assert cmds[2:] == [{"add": o} for o in desired]
    assert nft.delete_commands("corral") == [{"add": ref}, {"delete": ref}]


# ---------------------------------------------------------------- other tables

def chain_obj(family, table, name, hook="forward", policy="accept", ctype="filter"):
    return {"chain": {"family": family, "table": table, "name": name, "handle": 1, "type": ctype, "hook": hook,
                      "prio": 0, "policy": policy}}


def rule_obj(family, table, chain, expr, handle=10, comment=None):
    body = {"family": family, "table": table, "chain": chain, "handle": handle, "expr": expr}
    if comment:
        body["comment"] = comment
    return {"rule": body}


def test_foreign_blockers_policy_drop_and_final_reject():
    rs = FIXTURE + [chain_obj("inet", "firewalld", "filter_INPUT", hook="input"),
                    rule_obj("inet", "firewalld", "filter_INPUT", [{"counter": None}, {"reject": None}]),
                    chain_obj("ip", "nat", "POSTROUTING", hook="postrouting", ctype="nat", policy="drop"),
                    chain_obj("inet", "corral", "forward", policy="drop"),
                    chain_obj("bridge", "br", "forward", policy="drop")]
    found = nft.foreign_blockers(rs, "corral")
    assert found == [{"family": "ip", "table": "filter", "chain": "FORWARD", "hook": "forward", "reason": "policy drop"},
                     {"family": "inet", "table": "firewalld", "chain": "filter_INPUT", "hook": "input",
                      "reason": "ends with an unconditional drop/reject rule"}]


def test_a_conditional_final_drop_is_not_a_blocker():
    rs = [chain_obj("inet", "fw", "in", hook="input"),
          rule_obj("inet", "fw", "in", [nft._iif("eth0"), nft.DROP])]
    assert nft.foreign_blockers(rs, "corral") == []


def test_integrate_inserts_in_order_then_is_idempotent_then_cleans_up():
    blockers = nft.foreign_blockers(FIXTURE, "corral")
    cmds = nft.integrate_commands(FIXTURE, "corral", blockers, ["vz-*"])
    inserted = [c["insert"]["rule"] for c in cmds]
    assert {r["chain"] for r in inserted} == {"FORWARD"} and len(inserted) == 3
    # inserted at the top one by one in reverse, so they end up in forward_rules order
    live = [rule_obj("ip", "filter", "FORWARD", r["expr"], handle=100 + i, comment=r["comment"])
            for i, r in enumerate(reversed(inserted))]
    after = FIXTURE + live
    assert [r["rule"]["expr"] for r in live] == [rule[0] for rule in nft.forward_rules(["vz-*"])]
    assert nft.integrate_commands(after, "corral", nft.foreign_blockers(after, "corral"), ["vz-*"]) == []
    cleanup = nft.integrate_commands(after, "corral", [], ["vz-*"])
    assert [c["delete"]["rule"]["handle"] for c in cleanup] == [100, 101, 102]


# ---------------------------------------------------------------- nft syntax

RENDERED = """table inet corral {
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state established,related accept comment "corral: return traffic"
\t\tiifname "vz-*" accept comment "corral: from vz-*"
\t}

\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr 10.88.10.0/24 oifname "uplink0" masquerade comment "corral: masquerade 10.88.10.0/24"
\t}
}
"""


def test_render_matches_nft_list_output():
    assert nft.render(nft.table_objects(FIXTURE, "corral")) == RENDERED


def test_render_of_all_statements_we_build():
    objs = ruleset(forwards=[{"proto": "tcp", "host_port": 8080, "address": "10.88.10.2", "port": 80},
                             {"proto": "udp", "host_port": 53, "address": "fd00::2", "port": 5353}])
    text = nft.render(objs)
    assert "\t\ttype nat hook output priority -100; policy accept;" in text
    assert "fib daddr type local meta nfproto ipv6 udp dport 53 dnat ip6 to [fd00::2]:5353" in text
    assert 'iifname != "lo" ip daddr 127.0.0.0/8 drop' in text
    assert "ct status dnat accept" in text and "(json)" not in text


def test_render_unknown_expression_falls_back_to_json():
    rule = {"chain": "x", "expr": [{"limit": {"rate": 5}}, {"accept": None}]}
    assert nft.render_rule(rule).startswith("# (json) ")


def test_render_file_recreates_the_table_atomically():
    text = nft.render_file(nft.table_objects(FIXTURE, "corral"), "# head\n")
    assert text == "# head\ntable inet corral\ndelete table inet corral\n\n" + RENDERED
    assert nft.render(None) == ""


def test_summary_counts_rules_per_chain():
    assert nft.summary(nft.table_objects(FIXTURE, "corral")) == {"forward": 2, "postrouting": 1}
