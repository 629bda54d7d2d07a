# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: a no-op re-run of the fleet for 1, 10 and 50 containers vs a naive loop.

Not a timed test. Boots one test host, declares N settings-only machines (stopped,
disabled, no root: the run measures reconciliation, not booting), converges once,
then times no-op re-runs of

  * playbooks/site.yml (host + network + fleet roles, the fleet in ONE module call),
  * the fleet role alone,
  * tests/bench/naive_fleet.yml: the same files written by builtin modules looped
    per container (4 task invocations per container),

and prints the median of REPEAT runs and the ratios. Every timed run must report
changed=0 on the host, otherwise the benchmark fails. Results go to docs/performance.md.

    python tests/bench/bench_fleet.py [--sizes 1,10,50] [--repeat 3] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import harness  # noqa: E402  pylint: disable=wrong-import-position

HOST = "flt-bench"
SITE = os.path.join(ROOT, "playbooks", "site.yml")
NAIVE = os.path.join(HERE, "naive_fleet.yml")

# Same content both ways: a few [Exec]/[Network] keys and two limits per machine.
SETTINGS = {"boot": True, "private_users": "pick", "virtual_ethernet": True}
RESOURCES = {"memory_max": "256M", "cpu_quota": "50%"}
NAIVE_EXEC = {"Boot": "yes", "PrivateUsers": "pick"}
NAIVE_SERVICE = {"MemoryMax": "256M", "CPUQuota": "50%"}


def fleet_vars(count: int) -> dict:
    machines = [{"name": f"bf{i:03d}", "state": "stopped", "enabled": False, "settings": SETTINGS,
                 "resources": RESOURCES} for i in range(count)]
    return {"corral_fleet_machines": machines, "corral_network_nat": False,
            "corral_host_bootstrap_packages": []}


def naive_vars(count: int) -> dict:
    return {"naive_machines": [{"name": f"bn{i:03d}", "exec": NAIVE_EXEC, "service": NAIVE_SERVICE}
                               for i in range(count)]}


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


def timed(playbook: str, inv: str, extra: dict, expect_noop: bool) -> float:
    started = time.monotonic()
    run = harness.run_playbook(playbook, inv, extra)
    elapsed = time.monotonic() - started
    recap = run.recap.get(HOST, {})
    if run.rc != 0 or recap.get("failed"):
        raise SystemExit(f"{os.path.basename(playbook)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-2000:]}")
    if expect_noop and recap.get("changed"):
        raise SystemExit(f"{os.path.basename(playbook)}: no-op re-run reported changed={recap['changed']}:\n"
                         f"{run.stdout[-3000:]}")
    return elapsed


def measure(playbook: str, inv: str, extra: dict, repeat: int) -> float:
    timed(playbook, inv, extra, expect_noop=False)  # converge first, not timed
    return statistics.median(timed(playbook, inv, extra, expect_noop=True) for _run in range(repeat))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,10,50")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the test host running")
    parser.add_argument("--no-site", action="store_true", help="skip the site.yml measurement")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    host = harness.boot(HOST)
    rows = []
    try:
        state = harness.ensure_dir(os.path.join(host.state, "bench"))
        inv = inventory(host, os.path.join(state, "inventory.json"))
        fleet_only = fleet_only_playbook(os.path.join(state, "fleet_only.json"))
        for count in sizes:
            site = float("nan") if args.no_site else measure(SITE, inv, fleet_vars(count), args.repeat)
            role = measure(fleet_only, inv, fleet_vars(count), args.repeat)
            naive = measure(NAIVE, inv, naive_vars(count), args.repeat)
            rows.append((count, site, role, naive))
            print(f"n={count:3d}  site.yml {site:6.2f} s  fleet role {role:6.2f} s  naive loop {naive:6.2f} s  "
                  f"naive/fleet-role {naive / role:5.1f}x", flush=True)
    finally:
        if not args.keep:
            harness.stop(HOST)
    print("\n| containers | site.yml no-op | fleet role no-op | naive loop no-op | naive / fleet role |")
    print("|---:|---:|---:|---:|---:|")
    for count, site, role, naive in rows:
        print(f"| {count} | {site:.2f} s | {role:.2f} s | {naive:.2f} s | {naive / role:.1f}x |")
    first, last = rows[0], rows[-1]
    print(f"\nfleet role: {last[0]} containers cost {last[2] / first[2]:.2f}x of {first[0]} "
          f"(site.yml {last[1] / first[1]:.2f}x); naive loop at {last[0]}: {last[3] / last[2]:.1f}x the fleet role")
    return 0


if __name__ == "__main__":
    sys.exit(main())
