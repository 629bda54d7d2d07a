# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: a no-op re-run of the fleet vs a naive per-container loop, two kinds of machines.

Not a timed test. Boots one test host and, for each kind and size:

  * settings-only machines (a .nspawn file and a resource drop-in, stopped, disabled, no root);
  * realistic machines (cloned from a template, static address in a zone, running, enabled);

converges once, then times REPEAT no-op re-runs of

  * playbooks/site.yml (host + network + fleet roles, the fleet in ONE module call),
  * the fleet role alone,
  * tests/bench/naive_fleet.yml: the SAME files (read back from what the fleet wrote, the
    machine name swapped) written with builtin modules looped per machine and file, roots cloned
    with ``cp -a`` and units started/enabled with ``systemd_service``.

Every timed run must show the test host in its recap with failed=0, unreachable=0 and
changed=0, otherwise the benchmark fails. After the naive converge every naive file is compared
byte for byte with the fleet's. Medians of REPEAT runs, the load average before and after (read
by this script) and the raw runs go to tests/bench/results/fleet.json; tests/bench/report.py
turns them into the tables of docs/performance.md.

    python tests/bench/bench_fleet.py [--sizes 1,10,50] [--realistic 1,10] [--repeat 3] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, HERE)

import harness  # noqa: E402  pylint: disable=wrong-import-position
from results import Record, summary  # noqa: E402  pylint: disable=wrong-import-position

HOST = "prm-bench"
SITE = os.path.join(ROOT, "playbooks", "site.yml")
NAIVE = os.path.join(HERE, "naive_fleet.yml")
MACHINES_DIR = "/var/lib/machines"
TEMPLATE = {"name": "benchtmpl", "source": "directory", "path": "/srv/corral/images/debian12"}
ZONE = {"name": "bench", "address": ["10.98.0.1/24"]}

SETTINGS = {"boot": True, "private_users": "pick", "virtual_ethernet": True}
RESOURCES = {"memory_max": "256M", "cpu_quota": "50%"}
KINDS = {
    "settings-only": {"prefix": "bs", "naive_prefix": "ns"},
    "realistic": {"prefix": "br", "naive_prefix": "nr"},
}


class BenchError(SystemExit):
    """The benchmark cannot give a truthful number; the message says why."""


def machines(kind: str, count: int, prefix: str) -> list:
    if kind == "settings-only":
        return [{"name": f"{prefix}{i:03d}", "state": "stopped", "enabled": False, "settings": SETTINGS,
                 "resources": RESOURCES} for i in range(count)]
    return [{"name": f"{prefix}{i:03d}", "template": TEMPLATE["name"], "zone": ZONE["name"],
             "address": address(kind, prefix, i), "state": "running", "enabled": True,
             "resources": RESOURCES} for i in range(count)]


def address(kind: str, prefix: str, index: int) -> str:
    """Static address of a realistic machine: fleet ones from .10, naive ones from .110 (no clash)."""
    base = 10 if prefix == KINDS[kind]["prefix"] else 110
    if index >= 100:
        raise BenchError("realistic machines: at most 100 per run (one /24 zone)")
    return f"10.98.0.{base + index}/24"


def fleet_vars(kind: str, count: int) -> dict:
    extra = {"corral_fleet_machines": machines(kind, count, KINDS[kind]["prefix"]),
             "corral_network_nat": False, "corral_host_bootstrap_packages": [],
             # the next size or kind must not find the previous set still declared and running
             "corral_fleet_prune": True, "corral_fleet_purge": True}
    if kind == "realistic":
        extra.update(corral_fleet_templates=[TEMPLATE], corral_network_zones=[ZONE])
    return extra


def fleet_only_playbook(path: str) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump([{"name": "Fleet role only", "hosts": "nspawn_hosts", "gather_facts": False,
                    "roles": ["corral.nspawn.fleet"]}], handle)
    return path


def inventory(host: harness.TestHost, path: str) -> str:
    data = json.loads(harness._write_inventory([host]))  # pylint: disable=protected-access
    data["all"]["children"] = {"nspawn_hosts": {"hosts": data["all"]["children"]["test_hosts"]["hosts"]}}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    return path


def recap_of(run: harness.PlaybookRun, playbook: str) -> dict:
    """The test host's recap line; a run that failed or lost the host is an error, never 'no change'."""
    name = os.path.basename(playbook)
    if HOST not in run.recap:
        raise BenchError(f"{name}: {HOST} is missing from the PLAY RECAP (rc={run.rc}):\n"
                         f"{run.stdout[-3000:]}\n{run.stderr[-2000:]}")
    recap = run.recap[HOST]
    if run.rc != 0 or recap.get("failed", 1) or recap.get("unreachable", 1):
        raise BenchError(f"{name} failed (rc={run.rc}, recap {recap}):\n{run.stdout[-3000:]}\n{run.stderr[-2000:]}")
    return recap


def timed(playbook: str, inv: str, extra: dict, expect_noop: bool, timeout: int = 1800) -> float:
    started = time.monotonic()
    run = harness.run_playbook(playbook, inv, extra, timeout=timeout)
    elapsed = time.monotonic() - started
    recap = recap_of(run, playbook)
    if expect_noop and recap.get("changed") != 0:
        raise BenchError(f"{os.path.basename(playbook)}: no-op re-run reported changed={recap.get('changed')}:\n"
                         f"{run.stdout[-3000:]}")
    return elapsed


def measure(playbook: str, inv: str, extra: dict, repeat: int, converge: bool = True) -> dict:
    if converge:
        timed(playbook, inv, extra, expect_noop=False)  # converge first, not timed
    return summary([timed(playbook, inv, extra, expect_noop=True) for _run in range(repeat)])


# ---------------------------------------------------------------- the naive loop writes the fleet's files

def fleet_files(host: harness.TestHost, kind: str, name: str) -> dict:
    """{path: content} of every file the fleet wrote for machine ``name``."""
    paths = [f"/etc/systemd/nspawn/{name}.nspawn"]
    paths += host.ssh(f"ls /etc/systemd/system/systemd-nspawn@{name}.service.d/*.conf").stdout.split()
    if kind == "realistic":
        paths += [f"{MACHINES_DIR}/{name}/etc/hostname", f"{MACHINES_DIR}/{name}/etc/systemd/network/10-corral-host0.network"]
    out = host.ssh("python3 -c 'import json,sys; print(json.dumps({p: open(p).read() for p in sys.argv[1:]}))' "
                   + " ".join(paths)).stdout
    return json.loads(out)


def naive_vars(host: harness.TestHost, kind: str, count: int) -> dict:
    """The naive loop's machines: the fleet's files with the machine name swapped."""
    items = []
    for index in range(count):
        fleet_name = f"{KINDS[kind]['prefix']}{index:03d}"
        name = f"{KINDS[kind]['naive_prefix']}{index:03d}"
        swap = {fleet_name: name}
        if kind == "realistic":
            swap[address(kind, KINDS[kind]["prefix"], index)] = address(kind, KINDS[kind]["naive_prefix"], index)
        files = [{"path": _swap(p, swap), "content": _swap(c, swap)}
                 for p, c in fleet_files(host, kind, fleet_name).items()]
        item = {"name": name, "files": files, "state": "started" if kind == "realistic" else "stopped",
                "enabled": kind == "realistic"}
        if kind == "realistic":
            item["clone_from"] = TEMPLATE["name"]
        items.append(item)
    return {"naive_machines": items, "naive_machines_dir": MACHINES_DIR}


def _swap(text: str, swap: dict) -> str:
    for old, new in swap.items():
        text = text.replace(old, new)
    return text


def assert_same_files(host: harness.TestHost, naive: dict) -> int:
    """Every file the naive loop wrote equals the fleet's (name swapped); returns how many."""
    files = [f for item in naive["naive_machines"] for f in item["files"]]
    listing = " ".join(f["path"] for f in files)
    found = json.loads(host.ssh("python3 -c 'import json,sys; print(json.dumps({p: open(p).read() for p in sys.argv[1:]}))' "
                                + listing).stdout)
    wrong = [f["path"] for f in files if found.get(f["path"]) != f["content"]]
    if wrong:
        raise BenchError(f"the naive loop's files differ from the fleet's: {wrong[:5]}")
    return len(files)


def remove_naive(host: harness.TestHost, naive: dict) -> None:
    names = [item["name"] for item in naive["naive_machines"]]
    script = ("for m in {names}; do systemctl disable --now systemd-nspawn@$m.service >/dev/null 2>&1; "
              "rm -rf /etc/systemd/nspawn/$m.nspawn /etc/systemd/system/systemd-nspawn@$m.service.d "
              f"{MACHINES_DIR}/$m; done; systemctl daemon-reload").format(names=" ".join(names))
    host.ssh(script, timeout=600)


# ---------------------------------------------------------------- main

NETWORKD_ON_BUS = "busctl list --no-pager --no-legend | grep -q '^org.freedesktop.network1 *[0-9]'"


def networkd_on_bus(host: harness.TestHost) -> None:
    """Work around a bug seen on fresh test hosts (reported): networkd first started by the host
    role sometimes never connects to D-Bus, and the zone's ``networkctl reload`` then times out."""
    if host.ssh(NETWORKD_ON_BUS, check=False).returncode != 0:
        print("WARNING: systemd-networkd started by the host role is not on D-Bus; restarting it (known bug)",
              flush=True)
        host.ssh(f"systemctl restart systemd-networkd && for i in $(seq 1 40); do {NETWORKD_ON_BUS} && exit 0; "
                 "sleep 0.5; done; exit 1")


def bench_one(host, inv: str, fleet_only: str, kind: str, count: int, repeat: int, with_site: bool) -> dict:
    extra = fleet_vars(kind, count)
    row = {"kind": kind, "count": count}
    if with_site:
        row["site"] = measure(SITE, inv, extra, repeat)
    row["role"] = measure(fleet_only, inv, extra, repeat, converge=not with_site)
    naive = naive_vars(host, kind, count)
    row["naive_files_per_machine"] = len(naive["naive_machines"][0]["files"])
    row["naive"] = measure(NAIVE, inv, naive, repeat)
    row["naive_files_compared"] = assert_same_files(host, naive)
    remove_naive(host, naive)
    medians = " ".join(f"{k} {row[k]['median']:.2f} s" for k in ("site", "role", "naive") if k in row)
    print(f"{kind:13s} n={count:3d}  {medians}  naive/fleet-role {row['naive']['median'] / row['role']['median']:.1f}x",
          flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,10,50", help="settings-only machine counts")
    parser.add_argument("--realistic", default="1,10", help="realistic (templated, addressed, running) machine counts")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the test host running")
    parser.add_argument("--no-site", action="store_true", help="skip the site.yml measurement")
    parser.add_argument("--json", default="", help="results file (default tests/bench/results/fleet.json)")
    args = parser.parse_args(argv)
    record = Record("bench_fleet", sys.argv[1:] if argv is None else argv)
    record.data.update(repeat=args.repeat, naive_playbook="tests/bench/naive_fleet.yml")
    plan = [("settings-only", int(s)) for s in args.sizes.split(",") if s] + \
        [("realistic", int(s)) for s in args.realistic.split(",") if s]
    host = harness.boot(HOST)
    rows = record.data["rows"] = []
    try:
        state = harness.ensure_dir(os.path.join(host.state, "bench"))
        inv = inventory(host, os.path.join(state, "inventory.json"))
        fleet_only = fleet_only_playbook(os.path.join(state, "fleet_only.json"))
        timed(SITE, inv, fleet_vars("settings-only", 0), expect_noop=False)  # the host role prepares the host
        networkd_on_bus(host)
        for kind, count in plan:
            rows.append(bench_one(host, inv, fleet_only, kind, count, args.repeat, not args.no_site))
        record.data["host_systemd"] = host.ssh("systemctl --version | head -1").stdout.strip()
    finally:
        if not args.keep:
            harness.stop(HOST)
    record.save(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
