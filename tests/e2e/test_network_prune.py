# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""corral_network_prune with playbooks/site.yml on a real test host ("npr-a").

Zone "przone" with machine pz1 and bridge "prbr0" with machine pb1 are converged; two hand-made
bridges named like ours exist next to them (prbr9 by `ip link add`, prbr8 from 50-corral-prbr8.*
networkd files without the managed comment). Then, each with prune on (network and fleet):
check+diff of removing the bridge and its machine changes nothing; the real run removes both in
one go (link, files, masquerade/forward rules) and the next run changes nothing; removing the zone
while pz1 is still declared, declaring nothing without prune_all, or removing the zone while the
fleet keeps pz1 running on it (fleet prune off) each fail before any change; removing the zone and
pz1 together converges in one run (machines first, then the network). Tests run in file order and
build on each other.

The last three tests (they converge from any state, so ``-k layer`` runs them alone) give machine ph1
no attachment of its own: ``corral_fleet_defaults: {zone: przone}`` fleet-wide and
``corral_fleet_host_defaults: {bridge: prbr0}`` in the host layer, which the fleet deploys on prbr0
only. The prune check reads the same layers: undeclaring the zone removes it (no machine is on it),
undeclaring the bridge is refused naming ph1, before any change.
"""

import json
import os
import re
import shlex

import pytest

import harness
from harness import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SITE = os.path.join(ROOT, "playbooks", "site.yml")
HOST = "npr-a"
TEMPLATES = [{"name": "debian12-tmpl", "source": "directory", "path": "/srv/corral/images/debian12"}]
ZONE = {"name": "przone", "address": ["10.77.1.1/24"], "dhcp_server": True}
BRIDGE = {"name": "prbr0", "address": ["10.77.2.1/24"], "dhcp_server": True}
PZ1 = {"name": "pz1", "template": "debian12-tmpl", "zone": "przone", "address": "10.77.1.10/24"}
PB1 = {"name": "pb1", "template": "debian12-tmpl", "bridge": "prbr0", "address": "10.77.2.10/24"}
PH1 = {"name": "ph1", "template": "debian12-tmpl"}  # its network comes from the layers below
LAYERS = {"corral_fleet_defaults": {"zone": "przone"}, "corral_fleet_host_defaults": {"bridge": "prbr0"}}
HAND_NETDEV = "/etc/systemd/network/50-corral-prbr8.netdev"
HAND_NETWORK = "/etc/systemd/network/50-corral-prbr8.network"


def variables(zones, bridges, machines, prune_all=False, fleet_prune=True):
    return {"corral_host_bootstrap_packages": [], "corral_network_zones": zones, "corral_network_bridges": bridges,
            "corral_network_prune": True, "corral_fleet_templates": TEMPLATES, "corral_fleet_machines": machines,
            "corral_fleet_prune": fleet_prune, "corral_network_prune_all": prune_all,
            "corral_fleet_prune_all": prune_all and fleet_prune}


@pytest.fixture(scope="module")
def host(make_host):
    return make_host(HOST)


@pytest.fixture(scope="module")
def inventory(host, tmp_path_factory):
    data = json.loads(harness._write_inventory([host]))  # pylint: disable=protected-access
    data["all"]["children"] = {"nspawn_hosts": {"hosts": data["all"]["children"]["test_hosts"]["hosts"]}}
    path = tmp_path_factory.mktemp("npr-inventory") / "hosts.yml"
    path.write_text(json.dumps(data))
    return str(path)


def site(inventory, extra_vars, check=False, diff=False, ok=True):
    run = harness.run_playbook(SITE, inventory, extra_vars, check=check, diff=diff)
    if ok:
        assert run.rc == 0 and run.recap.get(HOST, {}).get("failed") == 0, run.stdout[-8000:] + run.stderr[-3000:]
    return run


def corral_table(host):
    return host.ssh("nft list table inet corral").stdout


def link_exists(host, name):
    return host.ssh(f"ip link show {name}", check=False).returncode == 0


def our_files(host, pattern):
    return host.ssh(f"ls /etc/systemd/network | grep -- {shlex.quote(pattern)}", check=False).stdout.split()


def active(host, machine):
    return host.ssh(f"systemctl is-active systemd-nspawn@{machine}.service", check=False).stdout.strip()


def task_output(stdout, name):
    """The output block of task ``name`` (between its TASK header and the next one)."""
    blocks = [b for b in stdout.split("\nTASK [") if b.startswith(name + "]")]
    assert blocks, f"task {name!r} did not run:\n{stdout[-4000:]}"
    return blocks[0]


def fingerprint(host, machines="pz1 pb1"):
    """Everything a refused prune must leave alone: networkd files (with mtimes), links, NAT, machines."""
    script = ("ls -l --time-style=full-iso /etc/systemd/network; ip -br link show type bridge; "
              "nft list table inet corral; ls /etc/systemd/nspawn; "
              f"for m in {machines}; do systemctl show -p ActiveState,ActiveEnterTimestampMonotonic "
              "systemd-nspawn@$m.service; done")
    return host.ssh(script, check=False).stdout


def test_converge_a_zone_and_a_bridge_with_a_machine_each(host, inventory):
    site(inventory, variables([ZONE], [BRIDGE], [PZ1, PB1]))
    assert active(host, "pz1") == "active" and active(host, "pb1") == "active"
    assert link_exists(host, "vz-przone") and link_exists(host, "prbr0")
    assert "vb-pb1" in host.ssh("ip -br link show master prbr0").stdout
    table = corral_table(host)
    assert "10.77.2.0/24" in table and "prbr0" in table, table
    # hand-made bridges named like ours: one without files, one from unmarked 50-corral-* files
    host.ssh("ip link add prbr9 type bridge && ip link set prbr9 up && "
             f"printf '[NetDev]\\nName=prbr8\\nKind=bridge\\n' > {HAND_NETDEV} && "
             f"printf '[Match]\\nName=prbr8\\n\\n[Network]\\nAddress=10.77.8.1/24\\n"
             f"ConfigureWithoutCarrier=yes\\n' > {HAND_NETWORK} && networkctl reload")
    assert wait_until(lambda: link_exists(host, "prbr8"), 20)


def test_check_diff_shows_the_prune_and_changes_nothing(host, inventory):
    before = fingerprint(host)
    run = site(inventory, variables([ZONE], [], [PZ1]), check=True, diff=True)
    assert run.recap[HOST]["changed"] > 0, run.recap
    out = run.stdout
    assert "/etc/systemd/network/50-corral-prbr0.netdev (absent)" in out, out[-6000:]
    assert "/etc/systemd/network/50-corral-prbr0.network (absent)" in out
    assert "link prbr0 (pruned)" in out
    assert "machine pb1 (pruned)" in out
    nat = task_output(out, "corral.nspawn.network : Zones, bridges, NAT and port forwards")
    assert "changed:" in nat and any(line.startswith("-") and "10.77.2.0/24" in line for line in nat.splitlines()), nat
    assert fingerprint(host) == before


def test_removing_the_bridge_and_its_machine_removes_both_in_one_run(host, inventory):
    run = site(inventory, variables([ZONE], [], [PZ1]))
    assert run.recap[HOST]["changed"] > 0
    assert active(host, "pb1") != "active"
    assert host.ssh("test -e /etc/systemd/nspawn/pb1.nspawn", check=False).returncode != 0
    assert not link_exists(host, "prbr0"), host.ssh("ip -br link").stdout
    assert our_files(host, "prbr0") == []
    table = corral_table(host)
    assert "10.77.2.0/24" not in table and "prbr0" not in table, table
    # the zone and its machine are untouched, the hand-made bridges survive
    assert active(host, "pz1") == "active" and link_exists(host, "vz-przone") and "10.77.1.0/24" in table
    assert link_exists(host, "prbr9") and link_exists(host, "prbr8")
    assert our_files(host, "prbr8") == ["50-corral-prbr8.netdev", "50-corral-prbr8.network"]


def test_next_run_changes_nothing(inventory):
    run = site(inventory, variables([ZONE], [], [PZ1]))
    assert run.recap[HOST]["changed"] == 0, run.stdout[-6000:]


def test_removing_a_zone_a_declared_machine_uses_fails_before_any_change(host, inventory):
    before = fingerprint(host)
    run = site(inventory, variables([], [], [PZ1]), ok=False)
    assert run.rc != 0 and run.recap[HOST]["failed"] == 1 and run.recap[HOST]["changed"] == 0, run.recap
    assert "zone przone (vz-przone) is used by declared machine(s) pz1" in run.stdout, run.stdout[-4000:]
    assert fingerprint(host) == before


def test_declaring_nothing_prunes_nothing_without_prune_all(host, inventory):
    before = fingerprint(host)
    run = site(inventory, variables([], [], []), ok=False)
    assert run.rc != 0 and run.recap[HOST]["changed"] == 0, run.recap
    assert "zones and bridges are empty, so pruning would remove every zone and bridge" in run.stdout
    assert fingerprint(host) == before


def test_a_zone_with_a_running_container_the_fleet_keeps_is_refused(host, inventory):
    """Without corral_fleet_prune the undeclared pz1 stays, running on the zone: the zone must stay too."""
    before = fingerprint(host)
    run = site(inventory, variables([], [], [], prune_all=True, fleet_prune=False), ok=False)
    assert run.rc != 0 and run.recap[HOST]["changed"] == 0, run.recap
    assert "zone przone (vz-przone) is joined by machine(s) pz1 in /etc/systemd/nspawn" in run.stdout
    assert re.search(r"zone przone \(vz-przone\) has running container\(s\) attached: pz1 \(port v[be]-pz1\)",
                     run.stdout), run.stdout[-4000:]
    assert fingerprint(host) == before


def test_removing_a_zone_with_its_machine_converges_in_one_run(host, inventory):
    run = site(inventory, variables([], [], [], prune_all=True))
    assert run.recap[HOST]["changed"] > 0
    assert active(host, "pz1") != "active"
    assert not link_exists(host, "vz-przone") and our_files(host, "przone") == []
    assert "10.77.1.0/24" not in corral_table(host)
    assert link_exists(host, "prbr9") and link_exists(host, "prbr8")
    again = site(inventory, variables([], [], [], prune_all=True))
    assert again.recap[HOST]["changed"] == 0, again.stdout[-6000:]


def test_layer_converge_a_machine_the_host_layer_puts_on_the_bridge(host, inventory):
    site(inventory, dict(variables([ZONE], [BRIDGE], [PH1]), **LAYERS))
    assert active(host, "ph1") == "active"
    assert "vb-ph1" in host.ssh("ip -br link show master prbr0").stdout
    settings = host.ssh("cat /etc/systemd/nspawn/ph1.nspawn").stdout
    assert "Bridge=prbr0" in settings and "Zone=" not in settings, settings
    assert link_exists(host, "vz-przone")  # declared, no machine on it


def test_layer_the_zone_no_machine_is_on_is_pruned(host, inventory):
    """Before the fix the check merged both layers into one and counted ph1 on przone: the run was refused."""
    run = site(inventory, dict(variables([], [BRIDGE], [PH1]), **LAYERS))
    assert run.recap[HOST]["changed"] > 0, run.recap
    assert not link_exists(host, "vz-przone") and our_files(host, "przone") == []
    assert link_exists(host, "prbr0") and "vb-ph1" in host.ssh("ip -br link show master prbr0").stdout
    assert active(host, "ph1") == "active"
    again = site(inventory, dict(variables([], [BRIDGE], [PH1]), **LAYERS))
    assert again.recap[HOST]["changed"] == 0, again.stdout[-6000:]


def test_layer_the_bridge_the_host_layer_puts_a_machine_on_is_kept(host, inventory):
    """Before the fix ph1 counted on przone only, so prbr0 was a candidate with ph1 running on it."""
    before = fingerprint(host, "ph1")
    run = site(inventory, dict(variables([], [], [PH1], prune_all=True), **LAYERS), ok=False)
    assert run.rc != 0 and run.recap[HOST]["failed"] == 1 and run.recap[HOST]["changed"] == 0, run.recap
    assert "bridge prbr0 is used by declared machine(s) ph1" in run.stdout, run.stdout[-4000:]
    assert fingerprint(host, "ph1") == before
