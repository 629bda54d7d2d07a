# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every recipe of docs/user-guide.md marked ``test: e2e``, run as written on one test host ("rcp1").

The blocks are read from the guide through their markers (tests/e2e/recipes.py), merged with
the recipes they say they build on, written as ``group_vars/nspawn_hosts/recipes.yml`` of an
inventory, and applied with ``playbooks/site.yml``: check -> apply -> apply. The check run must
leave the host as it was and predict exactly the tasks and the per-machine changes the real run
then makes; the second apply changes nothing. Then each recipe's promise is checked from
outside (``outcome_NAME`` below). Two phases share the host:

1. every e2e recipe but ``unpriv-undo`` and ``prune``, in one run (their machine names differ);
2. ``prune`` and ``unpriv-undo``: the machines of ``zone`` and ``unpriv`` stay, every other one is
   pruned, and ``unpriv`` gets its IDs from 0 back.

What the host provides is what the markers' ``needs`` say (the image directory and tarball as
read-only bind mounts of the harness's image, ``eth0``-``eth2`` as veths, the bind sources).
The test hosts have no package source, so the host role runs with
``corral_host_bootstrap_packages: []`` (none of these recipes bootstraps). Recipes marked
``test: settings (...)`` are checked by tests/unit/roles/test_user_guide_recipes.py.
The tests of this file are one flow in file order: run the file whole.
"""

import json
import os
import re

import pytest
import yaml

import harness
import recipes as guide
from harness import wait_until
from promised import fingerprint, inside, prepare

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SITE = os.path.join(ROOT, "playbooks", "site.yml")
RECIPES = guide.load()
LAST = ("unpriv-undo", "prune")
PHASE1 = [n for n, r in RECIPES.items() if r.end_to_end and n not in LAST]
PHASE2 = list(LAST)
HOST_ENV = {"corral_host_bootstrap_packages": []}   # no package source on test hosts (see above)
PASSWORD = "corral-example-only"                    # the guide's login recipe names it
TASK = re.compile(r"^TASK \[(?P<name>[^\]]+)\]", re.M)

LOGIN = r"""
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp("machinectl", ["machinectl", "login", sys.argv[1]])
seen = b""
def expect(token, timeout, nudge=False):
    global seen
    end = time.time() + timeout
    while token not in seen:
        ready = select.select([fd], [], [], 3)[0]
        if not ready and nudge:
            os.write(fd, b"\r")
        if time.time() > end:
            sys.exit(f"no {token!r} within {timeout} s; last output {seen[-400:]!r}")
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                sys.exit(f"the session ended before {token!r}; last output {seen[-400:]!r}")
    seen = seen[seen.index(token) + len(token):]
expect(b"login: ", 60, nudge=True)
os.write(fd, b"root\r")
expect(b"Password: ", 30)
os.write(fd, sys.argv[2].encode() + b"\r")
time.sleep(1)
os.write(fd, b"echo LOGGED-$((6*7))-IN; exit\r")
expect(b"LOGGED-42-IN", 30)
print("root login accepted")
"""


# ---------------------------------------------------------------- the host and its runs

def provide(host, need: str) -> None:
    """Make the host have what a recipe's marker says it needs."""
    if need.startswith("interface "):
        link = need.split()[1]
        host.ssh(f"ip link show {link} >/dev/null 2>&1 || (ip link add {link} type veth peer name lan-{link} && "
                 f"ip link set {link} addrgenmode none && ip link set lan-{link} addrgenmode none && "
                 f"ip link set {link} up && ip link set lan-{link} up)")
    elif need in ("/srv/images/debian12", "/srv/images/debian12.tar"):
        make = "mkdir -p" if need.endswith("debian12") else "mkdir -p /srv/images && touch"
        source = need.replace("/srv/images/", "/srv/corral/images/")
        host.ssh(f"{make} {need} && (findmnt -n {need} >/dev/null || mount --bind -o ro {source} {need})")
    else:
        host.ssh(f"mkdir -p {harness.shlex_quote(need)}")


def lan_dhcp_server(host) -> None:
    """The LAN behind eth0 has a DHCP server (the host's networkd on the far end lan-eth0), as a LAN's router would."""
    host.ssh("printf '[Match]\\nName=lan-eth0\\n\\n[Network]\\nAddress=192.168.77.1/24\\nDHCPServer=yes\\n' "
             "> /etc/systemd/network/10-rcp-lan.network && networkctl reload")


def inventory(host, tmp_path, names) -> str:
    """hosts.yml with the host in nspawn_hosts, group_vars/nspawn_hosts/recipes.yml the recipes as written."""
    data = json.loads(harness._write_inventory([host]))  # pylint: disable=protected-access
    data["all"]["children"] = {"nspawn_hosts": {"hosts": data["all"]["children"]["test_hosts"]["hosts"]}}
    (tmp_path / "group_vars" / "nspawn_hosts").mkdir(parents=True, exist_ok=True)
    (tmp_path / "hosts.yml").write_text(json.dumps(data))
    variables = guide.merge(guide.compose(RECIPES, names), HOST_ENV, "test host")
    (tmp_path / "group_vars" / "nspawn_hosts" / "recipes.yml").write_text(yaml.safe_dump(variables, sort_keys=False))
    return str(tmp_path / "hosts.yml")


def changed_tasks(out: str) -> list:
    """Task names that reported 'changed' in the order they ran (loops count once per item)."""
    tasks = []
    parts = TASK.split(out.split("PLAY RECAP")[0])
    for name, body in zip(parts[1::2], parts[2::2]):
        tasks += [name] * len(re.findall(r"^changed: \[", body, re.M))
    return tasks


def fleet_summary(out: str) -> list:
    match = re.search(r'"corral_fleet_result\.summary": (\[.*?\n    \])', out, re.S)
    # the fleet role reports its summary whenever it changed something: a report this cannot read is a failure,
    # not an empty summary (a renamed variable would otherwise make check and apply agree on [])
    reported = re.search(r"TASK \[corral\.nspawn\.fleet : Report what changed per container\][^\n]*\n\s*ok:", out)
    assert bool(match) == bool(reported), f"the fleet's summary report could not be read:\n{out[-3000:]}"
    return json.loads(match.group(1)) if match else []


def site(host, inv: str, check: bool) -> harness.PlaybookRun:
    run = harness.run_playbook(SITE, inv, check=check, diff=check)
    counts = run.recap.get(host.name, {})
    assert run.rc == 0 and counts.get("failed", 1) == 0 and counts.get("unreachable", 1) == 0, \
        f"site.yml ({'check' if check else 'apply'}) failed (rc={run.rc}, {counts}):\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
    return run


def check_apply_apply(host, inv: str) -> list:
    """check (host unchanged, predicts exactly) -> apply (changes) -> apply (nothing)."""
    before = fingerprint(host)
    check = site(host, inv, check=True)
    harness.assert_same(before, fingerprint(host), "site.yml --check")
    apply = site(host, inv, check=False)
    assert apply.recap[host.name]["changed"] > 0, apply.stdout[-3000:]
    assert changed_tasks(check.stdout) == changed_tasks(apply.stdout), \
        f"check mode predicted the tasks {changed_tasks(check.stdout)}, the run changed {changed_tasks(apply.stdout)}"
    assert fleet_summary(check.stdout) == fleet_summary(apply.stdout), \
        f"check mode predicted {fleet_summary(check.stdout)}, the run did {fleet_summary(apply.stdout)}"
    before = fingerprint(host)
    again = site(host, inv, check=False)
    assert again.recap[host.name]["changed"] == 0, f"second apply changed something:\n{again.stdout[-5000:]}"
    harness.assert_same(before, fingerprint(host), "site.yml second apply")
    return [check, apply, again]


@pytest.fixture(scope="module")
def host(make_host):
    host = make_host("rcp1")
    prepare(host)
    for name in set(PHASE1 + PHASE2):
        for recipe in guide.chain(RECIPES, [name]):
            for need in RECIPES[recipe].needs:
                provide(host, need)
    lan_dhcp_server(host)
    with open(os.path.join(host.root, "root", "login.py"), "w", encoding="utf-8") as handle:
        handle.write(LOGIN)
    yield host
    host.ssh("machinectl list --no-legend | awk '{print $1}' | xargs -r machinectl terminate", check=False)


@pytest.fixture(scope="module")
def phase1(host, tmp_path_factory):
    return check_apply_apply(host, inventory(host, tmp_path_factory.mktemp("rcp-phase1"), PHASE1))


@pytest.fixture(scope="module")
def phase2(host, phase1, tmp_path_factory):
    uid_map_before = host.ssh("cat /proc/$(machinectl show unpriv -p Leader --value)/uid_map").stdout.split()
    runs = check_apply_apply(host, inventory(host, tmp_path_factory.mktemp("rcp-phase2"), PHASE2))
    return {"runs": runs, "uid_map_before": uid_map_before}


def machines(host) -> list:
    return sorted(host.ssh("machinectl list --no-legend --no-pager | awk '{print $1}'").stdout.split())


def run_in(host, machine: str, cmd: str) -> str:
    result = inside(host, machine, cmd)
    assert result.returncode == 0, f"in {machine}: {cmd}: {result.stdout}{result.stderr}"
    return result.stdout


# ---------------------------------------------------------------- what each recipe promises

def outcome_base(host):
    assert host.ssh("test -x /var/lib/machines/debian12-tmpl/lib/systemd/systemd", check=False).returncode == 0
    declared = {m["name"] for m in guide.compose(RECIPES, PHASE1).get("corral_fleet_machines", [])}
    assert declared <= set(machines(host)), (declared, machines(host))


def outcome_tar(host):
    assert "Debian" in host.ssh("cat /var/lib/machines/from-tar/etc/os-release").stdout


def outcome_limits(host):
    show = host.ssh("systemctl show -p MemoryMax,MemoryHigh,CPUQuotaPerSecUSec,ActiveState,UnitFileState "
                    "systemd-nspawn@db.service").stdout.split()
    assert set(show) >= {"MemoryMax=2147483648", "MemoryHigh=1610612736", "CPUQuotaPerSecUSec=2s",
                         "ActiveState=active", "UnitFileState=enabled"}, show


def outcome_zone(host):
    assert "inet 10.88.0.10/24" in run_in(host, "web", "ip -4 -o addr show host0")

    def leased():
        out = inside(host, "app", "ip -4 -o addr show host0").stdout
        match = re.search(r"inet 10\.88\.0\.(\d+)/24", out)
        return match and int(match.group(1)) >= 100
    wait_until(leased, 60, "a DHCP lease from .100 up for app")
    for name in ("web", "app"):
        wait_until(lambda n=name: inside(host, n, "ping -c1 -W2 203.0.113.2").returncode == 0, 30,
                   f"{name} to reach the uplink through NAT")


def outcome_ports(host):
    host.ssh("systemd-run -M web --unit=rcp-http --collect /usr/bin/python3 -m http.server 80")
    fetch = ("python3 -c \"import urllib.request; print(urllib.request.urlopen('http://{}:8080/', timeout=5).status)\"")
    wait_until(lambda: host.uplink(fetch.format("203.0.113.1")).stdout.strip() == "200", 30,
               "the forward from the uplink to web:80")
    assert host.ssh(fetch.format("127.0.0.1")).stdout.strip() == "200"


def outcome_bridge(host):
    wait_until(lambda: host.ssh("ping -c1 -W2 10.89.0.10", check=False).returncode == 0, 30, "lanweb on br0")
    assert '"master":"br-lan"' in host.ssh("ip -j link show eth1").stdout.replace(" ", "")


def outcome_hostnet(host):
    assert "uplink0" in run_in(host, "tool", "ip -o link show")


def outcome_macvlan(host):
    assert " macvlan " in run_in(host, "lan1", "ip -d -o link show mv-eth0")
    wait_until(lambda: "inet 192.168.77." in inside(host, "lan1", "ip -4 -o addr show mv-eth0").stdout, 60,
               "a DHCP lease from the LAN on mv-eth0 in lan1")
    assert "eth2" in run_in(host, "nic2", "ip -o link show eth2")
    assert host.ssh("ip link show eth2", check=False).returncode != 0, "eth2 is still on the host"


def outcome_dns(host):
    assert run_in(host, "web", "cat /etc/resolv.conf") == host.ssh("cat /etc/resolv.conf").stdout != ""


def outcome_unpriv(host):
    uid_map = host.ssh("cat /proc/$(machinectl show unpriv -p Leader --value)/uid_map").stdout.split()
    assert uid_map[0] == "0" and uid_map[1] != "0" and uid_map[2] == "65536", uid_map


def outcome_bind(host):
    run_in(host, "build", "echo from-build > /src/rcp-file && id -u > /src/rcp-uid")
    assert host.ssh("stat -c %u:%g /srv/src/rcp-file").stdout.strip() == "0:0"
    assert inside(host, "build", "touch /etc/ssl/certs/rcp-x").returncode != 0, "the read-only bind is writable"


def outcome_pid2(host):
    # the children of the container's PID 1 (nspawn's stub init); the one that is PID 2 inside
    script = ("L=$(machinectl show job -p Leader --value); for p in $(cat /proc/$L/task/*/children); do "
              "if [ \"$(awk '/^NSpid/{print $NF}' /proc/$p/status)\" = 2 ]; then tr '\\0' ' ' < /proc/$p/cmdline; fi; done")
    wait_until(lambda: host.ssh(script).stdout.strip() == "/usr/bin/python3 -m http.server 80", 20,
               "PID 2 of job to be /usr/bin/python3 -m http.server 80")


def outcome_ephemeral(host):
    run_in(host, "scratch", "echo gone-after-restart > /root/rcp-marker")
    assert host.ssh("test -e /var/lib/machines/scratch/root/rcp-marker", check=False).returncode != 0
    host.ssh("systemctl restart systemd-nspawn@scratch.service")
    wait_until(lambda: inside(host, "scratch", "systemctl is-system-running").stdout.strip() in ("running", "degraded"),
               90, "scratch to boot again")
    assert inside(host, "scratch", "test -e /root/rcp-marker").returncode != 0, "the file survived the restart"


def outcome_login(host):
    result = host.ssh(f"python3 /root/login.py shell {PASSWORD}", check=False, timeout=150)
    assert result.returncode == 0 and "root login accepted" in result.stdout, result
    wrong = host.ssh("python3 /root/login.py shell not-the-password", check=False, timeout=150)
    assert wrong.returncode != 0, "a wrong password logged in"


def outcome_unpriv_undo(host, before):
    assert before[1] != "0", f"unpriv was not shifted before the undo: {before}"
    uid_map = host.ssh("cat /proc/$(machinectl show unpriv -p Leader --value)/uid_map").stdout.split()
    assert uid_map == ["0", "0", "65536"], uid_map
    owners = host.ssh("stat -c %u /var/lib/machines/unpriv/etc/passwd /var/lib/machines/unpriv/root").stdout.split()
    assert owners == ["0", "0"], owners
    assert run_in(host, "unpriv", "stat -c %u /etc/passwd").strip() == "0"


def outcome_prune(host):
    kept = {"web", "app", "unpriv"}
    gone = {m["name"] for m in guide.compose(RECIPES, PHASE1).get("corral_fleet_machines", [])} - kept
    assert set(machines(host)) == kept, machines(host)
    left = host.existing(*[f"/etc/systemd/nspawn/{n}.nspawn" for n in gone],
                         *[f"/etc/systemd/system/systemd-nspawn@{n}.service.d/50-corral-resources.conf" for n in gone])
    assert left == [], left
    roots = [f"/var/lib/machines/{n}" for n in sorted(gone)]
    assert host.existing(*roots) == roots, "a pruned machine's root was removed (purge is false)"


# ---------------------------------------------------------------- the tests

def test_every_e2e_recipe_has_an_outcome_check():
    missing = [n for n in PHASE1 + PHASE2 if f"outcome_{n.replace('-', '_')}" not in globals()]
    assert not missing and len(PHASE1) >= 10, (missing, PHASE1)


@pytest.mark.parametrize("name", PHASE1)
def test_recipe_as_written(host, phase1, name):
    globals()[f"outcome_{name.replace('-', '_')}"](host)


def test_unpriv_undo_gives_ids_from_zero_back(host, phase2):
    outcome_unpriv_undo(host, phase2["uid_map_before"])


def test_prune_removes_the_machines_no_recipe_declares(host, phase2):
    outcome_prune(host)
