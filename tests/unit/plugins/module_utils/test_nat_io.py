# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the nat reconcile flow with nftables, systemctl and /proc/sys faked."""

import copy
import json
import os

import pytest

from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.io_fake import Failed, FakeModule
from ansible_collections.corral.nspawn.plugins.module_utils import nat, nat_io, network_io, nft, systemd
from ansible_collections.corral.nspawn.tests.unit.fakes import FakeModule as SharedFakeModule, exit_result


class FakeNft:
    """A kernel ruleset that applies our JSON commands (just enough for add/delete/insert)."""

    name = "fake"

    def __init__(self, ruleset=None):
        self.ruleset = ruleset or []
        self.transactions = []

    def list_ruleset(self):
        return copy.deepcopy(self.ruleset)

    def apply(self, commands):
        self.transactions.append(commands)
        for cmd in commands:
            (verb, obj), = cmd.items()
            if verb == "delete" and "table" in obj:
                ref = obj["table"]
                self.ruleset = [o for o in self.ruleset if not (
                    next(iter(o.values())).get("family") == ref["family"] and
                    (next(iter(o.values())).get("table") == ref["name"] or
                     ("table" in o and o["table"]["name"] == ref["name"])))]
            elif verb == "add" and not any(o == obj for o in self.ruleset):
                self.ruleset.append(copy.deepcopy(obj))
            elif verb == "insert":  # at the top of its chain, like nft
                rule = obj["rule"]
                same = [i for i, o in enumerate(self.ruleset) if "rule" in o and all(
                    o["rule"][k] == rule[k] for k in ("family", "table", "chain"))]
                self.ruleset.insert(same[0] if same else len(self.ruleset),
                                    {"rule": dict(rule, handle=len(self.ruleset) + 100)})


@pytest.fixture
def env(tmp_path, monkeypatch):
    for attr in ("RULESET_DIR", "UNIT_DIR", "SYSCTL_DIR"):
        monkeypatch.setattr(nat, attr, str(tmp_path / attr))
    proc = tmp_path / "proc"
    proc.mkdir()
    for key in ("net.ipv4.ip_forward", "net.ipv4.conf.all.route_localnet"):
        (proc / key).write_text("0\n")
    monkeypatch.setattr(nat_io, "proc_path", lambda key: str(proc / key))
    monkeypatch.setattr(network_io, "read_dir", lambda: {})
    state = {"nft": FakeNft(), "enabled": False, "active": False, "systemctl": [], "proc": proc, "tmp": tmp_path}
    monkeypatch.setattr(nat_io, "Backend", lambda module: state["nft"])
    monkeypatch.setattr(systemd, "show_unit", lambda module, unit, props: {
        "UnitFileState": "enabled" if state["enabled"] else "disabled",
        "ActiveState": "active" if state["active"] else "inactive"})

    def systemctl(module, verb, units, *flags):
        state["systemctl"].append([verb, *units])
        key, value = {"enable": ("enabled", True), "disable": ("enabled", False),
                      "start": ("active", True), "stop": ("active", False)}[verb]
        state[key] = value
    monkeypatch.setattr(systemd, "systemctl", systemctl)
    monkeypatch.setattr(systemd, "daemon_reload", lambda module: state["systemctl"].append(["daemon-reload"]))
    return state


def run_nat(module):
    """The nat module's main() in-process: nat_io.run through errors.run_module (the seam since issue 16)."""
    return exit_result(module, nat_io.run)


def params(**kw):
    base = {"table": "corral", "state": "present", "masquerade": ["10.88.10.0/24"], "uplinks": ["uplink0"],
            "links": [], "forwards": [{"proto": "tcp", "host_port": 8080, "address": "10.88.10.2", "port": 80}],
            "localhost": True, "integrate": False, "force": False}
    base.update(kw)
    return base


def test_rhythm_check_apply_check_apply(env):
    check = run_nat(FakeModule(params(), check_mode=True))
    assert check["changed"] and env["nft"].transactions == [] and not os.path.exists(env["tmp"] / "RULESET_DIR")
    assert (env["proc"] / "net.ipv4.ip_forward").read_text() == "0\n" and env["systemctl"] == []
    assert check["diff"][0]["before"] == "" and "dnat ip to 10.88.10.2:80" in check["diff"][0]["after"]
    applied = run_nat(FakeModule(params()))
    assert applied["changed"]
    (transaction,) = env["nft"].transactions
    assert transaction[:2] == [{"add": {"table": {"family": "inet", "name": "corral"}}},
                               {"delete": {"table": {"family": "inet", "name": "corral"}}}]
    assert (env["proc"] / "net.ipv4.conf.all.route_localnet").read_text() == "1\n"
    assert env["systemctl"] == [["daemon-reload"], ["enable", "corral-nft-corral.service"],
                                ["start", "corral-nft-corral.service"]]
    for check_mode in (True, False):
        again = run_nat(FakeModule(params(), check_mode=check_mode))
        assert not again["changed"], again["changes"]
    assert len(env["nft"].transactions) == 1


def test_a_foreign_table_of_the_same_name_is_not_replaced(env):
    env["nft"].ruleset = [{"table": {"family": "inet", "name": "corral", "handle": 1}},
                          {"chain": {"family": "inet", "table": "corral", "name": "x", "handle": 2}},
                          {"rule": {"family": "inet", "table": "corral", "chain": "x", "handle": 3,
                                    "expr": [{"accept": None}]}}]
    with pytest.raises(Failed, match="exists and was not created by corral.nspawn"):
        run_nat(FakeModule(params()))
    assert env["nft"].transactions == []
    assert run_nat(FakeModule(params(force=True)))["changed"]


def test_bad_input_fails_before_reading_nftables(env):
    with pytest.raises(Failed, match=r"forwards\[0\].host_port: 0 is not a port"):
        run_nat(FakeModule(params(forwards=[{"proto": "tcp", "host_port": 0, "address": "10.0.0.1",
                                            "port": None}])))
    assert env["nft"].transactions == [] and not os.path.exists(env["tmp"] / "SYSCTL_DIR")


def test_blocking_chain_warns_and_integrate_inserts_then_converges(env):
    env["nft"].ruleset = [{"table": {"family": "ip", "name": "filter", "handle": 1}},
                          {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1,
                                     "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}]
    warned = run_nat(FakeModule(params()))
    assert warned["blockers"][0]["table"] == "filter"
    module = FakeModule(params())
    run_nat(module)
    assert any("table ip filter chain FORWARD (hook forward, policy drop)" in w for w in module.warnings)
    integrated = run_nat(FakeModule(params(integrate=True)))
    assert integrated["changed"] and all("insert" in c for c in env["nft"].transactions[-1])
    assert not run_nat(FakeModule(params(integrate=True)))["changed"]


def test_absent_deletes_table_disables_unit_and_removes_files(env):
    run_nat(FakeModule(params()))
    gone = run_nat(FakeModule(params(state="absent")))
    assert gone["changed"] and "delete table inet corral" in gone["changes"]
    assert nft.table_objects(env["nft"].ruleset, "corral") is None
    assert env["systemctl"][-3:] == [["stop", "corral-nft-corral.service"], ["disable", "corral-nft-corral.service"],
                                     ["daemon-reload"]]
    assert not os.listdir(env["tmp"] / "RULESET_DIR") and not os.listdir(env["tmp"] / "UNIT_DIR")
    assert not run_nat(FakeModule(params(state="absent")))["changed"]


# ---------------------------------------------------------------- issue 10: order of actions, route_localnet

LOCALNET = "net.ipv4.conf.all.route_localnet"


class RefusingNft(FakeNft):
    """A kernel that refuses every transaction (like EPERM on a table another process owns)."""

    def apply(self, commands):
        self.transactions.append(commands)
        raise nft.NftError("nft: Error: Could not process rule: Operation not permitted")


def snapshot(env):
    """Files under the fake /etc, live sysctls and the boot unit state."""
    files = {}
    for top, _dirs, names in os.walk(env["tmp"]):
        for name in names:
            path = os.path.join(top, name)
            with open(path, encoding="utf-8") as handle:
                files[path] = handle.read()
    return files, env["enabled"], env["active"], list(env["systemctl"])


@pytest.mark.parametrize("state", ["present", "absent"])
def test_refused_ruleset_leaves_files_unit_and_sysctls_as_before(env, state):
    run_nat(FakeModule(params()))
    if state == "present":  # a different ruleset, no forward: files and route_localnet would change
        args = params(forwards=[])
    else:
        args = params(state="absent")
    before = snapshot(env)
    env["nft"] = RefusingNft(env["nft"].ruleset)
    with pytest.raises(Failed, match="nft refused the transaction for table inet corral; nothing was changed"):
        run_nat(FakeModule(args))
    assert env["nft"].transactions, "the transaction was not even tried"
    assert snapshot(env) == before


def test_refused_ruleset_on_a_fresh_host_writes_nothing(env):
    env["nft"] = RefusingNft()
    with pytest.raises(Failed, match="Operation not permitted"):
        run_nat(FakeModule(params()))
    assert snapshot(env) == (snapshot_of_proc_only(env), False, False, [])


def snapshot_of_proc_only(env):
    return {str(env["proc"] / key): "0\n" for key in ("net.ipv4.ip_forward", LOCALNET)}


@pytest.mark.parametrize("args", [{"forwards": []}, {"localhost": False}, {"state": "absent"}])
def test_route_localnet_is_set_back_live_and_persisted(env, args):
    run_nat(FakeModule(params()))
    assert (env["proc"] / LOCALNET).read_text() == "1\n"
    rhythm = [run_nat(FakeModule(params(**args), check_mode=check)) for check in (True, False, True, False)]
    assert [r["changed"] for r in rhythm] == [True, True, False, False]
    assert f"set {LOCALNET} = 0" in rhythm[0]["changes"] and f"set {LOCALNET} = 0" in rhythm[1]["changes"]
    assert rhythm[1]["changes"][0] == f"set {LOCALNET} = 0", "route_localnet must go before its guard chain"
    assert (env["proc"] / LOCALNET).read_text() == "0\n"
    sysctl_file = env["tmp"] / "SYSCTL_DIR" / "90-corral-nat-corral.conf"
    assert not sysctl_file.exists() or LOCALNET not in sysctl_file.read_text()
    assert "localnet" not in nft.summary(nft.table_objects(env["nft"].ruleset, "corral"))


def test_flushed_ruleset_is_restored_first_and_reported(env):
    run_nat(FakeModule(params()))
    env["nft"].ruleset = []  # nft flush ruleset
    restored = run_nat(FakeModule(params()))
    assert restored["changed"] and restored["changes"] == ["create table inet corral"]
    assert "localnet" in nft.summary(nft.table_objects(env["nft"].ruleset, "corral"))
    assert not run_nat(FakeModule(params()))["changed"]


def test_bad_value_fails_before_any_nft_call(env):
    with pytest.raises(Failed, match=r"uplinks: a bare '\*'"):
        run_nat(FakeModule(params(uplinks=["*"])))
    assert env["nft"].transactions == [] and snapshot(env)[0] == snapshot_of_proc_only(env)


def test_the_ruleset_and_unit_files_are_not_opened_before_the_kernel_took_the_table(env, monkeypatch):
    """test_nat_order's breakpoint (a FIFO at the ruleset path) must be reached after the transaction only."""
    opened = []
    real = nat_io.read_file
    monkeypatch.setattr(nat_io, "read_file", lambda path: opened.append((path, len(env["nft"].transactions)))
                        or real(path))
    run_nat(FakeModule(params()))
    assert [n for p, n in opened if p == nat.ruleset_path("corral")] == [1]
    assert [n for p, n in opened if p == nat.unit_path("corral")] == [1]


# ---------------------------------------------------------------- the backend without the python3-nftables binding

def test_binary_backend_lists_and_applies_through_nft_json(monkeypatch):
    """No binding: the nft binary with JSON in and out (found broken by pylint in s16n's move: the class called
    nat_io.run, the module flow, instead of runner.run)."""
    monkeypatch.setattr(nat_io, "_nftables", None)
    listed = '{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "inet", "name": "corral"}}]}'
    module = SharedFakeModule({}, bins=["nft"], answers={("/usr/bin/nft", "-j", "-a", "list"): (0, listed, ""),
                                                         ("/usr/bin/nft", "-j", "-f", "-"): (1, "", "Error: boom")})
    engine = nat_io.Backend(module)
    assert engine.name == "nft -j"
    assert engine.list_ruleset() == [{"table": {"family": "inet", "name": "corral"}}]
    with pytest.raises(nft.NftError, match="nft: Error: boom"):
        engine.apply([{"add": {"table": {"family": "inet", "name": "corral"}}}])
    assert module.calls == [["/usr/bin/nft", "-j", "-a", "list", "ruleset"], ["/usr/bin/nft", "-j", "-f", "-"]]
    assert json.loads(module.options[1]["data"]) == {"nftables": [{"add": {"table": {"family": "inet", "name": "corral"}}}]}


def test_no_binding_and_no_nft_binary_fails_naming_what_is_missing(monkeypatch):
    monkeypatch.setattr(nat_io, "_nftables", None)
    with pytest.raises(nat.NatError, match="nftables"):
        nat_io.Backend(SharedFakeModule({}, bins=[]))
