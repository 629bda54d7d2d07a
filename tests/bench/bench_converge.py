# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: the first converge of N containers cloned from one template, split into steps (issue 15).

Not a timed test. Boots one test host (``--hosts K``: K hosts, converged together with forks) and,
for each size N, converges N machines (cloned from one template, a static address in a zone, a
resource drop-in, running, enabled, waited for) with the fleet role in three runs, each timed
from outside, so that every step is measured on its own:

  * ``clone``: the N machines declared stopped and disabled with nothing but their template (the
    fleet clones N roots and writes each one's hostname);
  * ``write``: the same machines with their zone, address and resources (the fleet writes the
    .nspawn file, the resource drop-in and the network file in the root);
  * ``start+wait``: the same machines running and enabled, waited for (the fleet's one
    ``systemctl start`` for all of them, then its wait for each container's systemd);
  * ``no-op``: the same run again (changed=0): the fixed cost of a fleet run with N machines
    (playbook start, argument validation, one module invocation reading N machines), subtracted
    from the three runs above to give the steps' own cost.

``start+wait`` is split with the test host's own timestamps (same kernel clock): ``start`` from the
first unit leaving ``inactive`` to the last one ``active`` (systemctl start returns then), each
container's own boot from its unit becoming active to its systemd's ``FinishTimestamp``.
Memory: the test host's anonymous memory (``rss`` of its memory cgroup) before the start and after
every container runs, divided by N, and the summed PSS of each container's processes.
Between sizes the machines are purged (not timed). The collection is the tree of git revision
``--rev`` (``git archive``), so edits in the working tree during a run change nothing.
``--before REV`` measures a second collection in the same run on the same host, the two alternating
size by size (each side first in every other size), so their ratio compares code, not load.
``--clone-rounds R`` (with ``--before``) measures only the clone step of the last size, R rounds, the
two collections alternating within each round (results: bench_converge-clones.json): on a shared
machine one round is as noisy as one size, the median of several is not.
Results: tests/bench/results/bench_converge.json (``--hosts K``: bench_converge-multi.json, with
the same sizes on one host first, in the same run, for the ratio).

    python tests/bench/bench_converge.py [--sizes 1,10,30] [--hosts 1] [--rev HEAD] [--before REV] [--keep]
    python tests/bench/bench_converge.py --sizes 10 --hosts 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, HERE)

import harness  # noqa: E402  pylint: disable=wrong-import-position
from bench_fleet import networkd_on_bus  # noqa: E402  pylint: disable=wrong-import-position
from bench_site import collection_of  # noqa: E402  pylint: disable=wrong-import-position
from results import Record  # noqa: E402  pylint: disable=wrong-import-position

TEMPLATE = {"name": "cvtmpl", "source": "directory", "path": "/srv/corral/images/debian12"}
ZONE = {"name": "conv", "address": ["10.97.0.1/24"]}
RESOURCES = {"memory_max": "256M"}
PREFIX = "cv"
MACHINES_DIR = "/var/lib/machines"

# The test host's state read after a converge: per machine its unit's start timestamps (host side) and its
# own systemd's FinishTimestamp (inside), as microseconds of the kernel's monotonic clock (containers share it);
# and the memory figures.
COLLECT = r"""
import json, os, subprocess, sys
def show(argv):
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    return {k: v for k, _, v in (l.partition("=") for l in out.splitlines())}
def pss(unit):
    total = 0
    base = "/sys/fs/cgroup/unified/machine.slice/" + unit
    for top, _dirs, files in os.walk(base):
        if "cgroup.procs" in files:
            for pid in open(os.path.join(top, "cgroup.procs")).read().split():
                try:
                    for line in open("/proc/%s/smaps_rollup" % pid):
                        if line.startswith("Pss:"):
                            total += int(line.split()[1])
                except OSError:
                    pass
    return total * 1024
out = {"machines": {}}
for name in sys.argv[1:]:
    unit = "systemd-nspawn@%s.service" % name
    host = show(["systemctl", "show", "-p", "InactiveExitTimestampMonotonic", "-p", "ActiveEnterTimestampMonotonic",
                 "-p", "ActiveState", unit])
    inner = show(["systemctl", "--machine", name, "show", "-p", "FinishTimestampMonotonic"])
    out["machines"][name] = {"state": host.get("ActiveState"), "exit_inactive": host.get("InactiveExitTimestampMonotonic"),
                             "active": host.get("ActiveEnterTimestampMonotonic"),
                             "finish": inner.get("FinishTimestampMonotonic"), "pss": pss(unit)}
stat = dict(l.split() for l in open("/sys/fs/cgroup/memory/memory.stat"))
out["rss"] = int(stat["rss"])
out["cache"] = int(stat["cache"])
print(json.dumps(out))
"""


class BenchError(SystemExit):
    """The benchmark cannot give a truthful number; the message says why."""


def machines(count: int, step: str) -> list:
    out = []
    for index in range(count):
        machine = {"name": f"{PREFIX}{index:03d}", "template": TEMPLATE["name"]}
        if step == "clone":
            machine.update(state="stopped", enabled=False)
        else:
            machine.update(zone=ZONE["name"], address=f"10.97.0.{10 + index}/24", resources=RESOURCES,
                           state="stopped" if step == "write" else "running", enabled=step != "write")
        out.append(machine)
    return out


def fleet_vars(count: int, step: str) -> dict:
    if count > 200:
        raise BenchError("at most 200 machines (one /24 zone)")
    return {"corral_fleet_machines": machines(count, step), "corral_fleet_templates": [TEMPLATE],
            "corral_network_zones": [ZONE], "corral_network_nat": False, "corral_host_bootstrap_packages": [],
            "corral_fleet_prune": True, "corral_fleet_purge": True, "corral_fleet_prune_all": count == 0,
            "corral_fleet_timeout": 900}


def write_json(path: str, data) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    return path


class Runner:
    """Runs the fleet role (or site.yml) of one collection against a set of test hosts."""

    def __init__(self, work: str, collections: str, hosts: list):
        self.work, self.collections, self.hosts = work, collections, hosts
        data = json.loads(harness._write_inventory(hosts))  # pylint: disable=protected-access
        data["all"]["children"] = {"nspawn_hosts": {"hosts": data["all"]["children"]["test_hosts"]["hosts"]}}
        self.inventory = write_json(os.path.join(work, f"inventory-{len(hosts)}.json"), data)
        self.fleet = write_json(os.path.join(work, "fleet.json"), [
            {"name": "fleet", "hosts": "nspawn_hosts", "gather_facts": False, "become": True,
             "roles": ["corral.nspawn.fleet"]}])
        self.site = os.path.join(collections, "ansible_collections", "corral", "nspawn", "playbooks", "site.yml")

    def run(self, playbook: str, extra: dict, expect_noop: bool = False) -> float:
        extra_file = write_json(os.path.join(self.work, "extra.json"), extra)
        argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", self.inventory,
                "-e", f"@{extra_file}", "--forks", str(max(5, len(self.hosts))), playbook]
        started = time.monotonic()
        res = subprocess.run(argv, capture_output=True, text=True, timeout=3600, cwd=ROOT, stdin=subprocess.DEVNULL,
                             env=harness.ansible_env(ANSIBLE_COLLECTIONS_PATH=self.collections,
                                                     # not a master connection left from an earlier host
                                                     # at the same address (it stays 60 s)
                                                     ANSIBLE_SSH_CONTROL_PATH_DIR=os.path.join(self.work, "cp")),
                             check=False)
        elapsed = time.monotonic() - started
        recap = harness.parse_recap(res.stdout)
        name = os.path.basename(playbook)
        for host in self.hosts:
            got = recap.get(host.name)
            if res.returncode != 0 or not got or got.get("failed", 1) or got.get("unreachable", 1):
                raise BenchError(f"{name} failed on {host.name} (rc={res.returncode}, recap {got}):\n"
                                 f"{res.stdout[-3000:]}\n{res.stderr[-2000:]}")
            if expect_noop and got.get("changed") != 0:
                raise BenchError(f"{name}: no-op run reported changed={got.get('changed')} on {host.name}:\n"
                                 f"{res.stdout[-3000:]}")
        return elapsed


def collect(host: harness.TestHost, count: int) -> dict:
    names = " ".join(f"{PREFIX}{i:03d}" for i in range(count))
    return json.loads(host.ssh(f"python3 -c '{COLLECT}' {names}", timeout=300).stdout)


def stamp(value: str) -> float:
    """Seconds from a ``*TimestampMonotonic`` property (microseconds; 0 when the event did not happen)."""
    value = (value or "").strip()
    if not value.isdigit() or value == "0":
        raise BenchError(f"missing timestamp {value!r}")
    return int(value) / 1e6


def split_start(state: dict) -> dict:
    """The start step and each container's own boot, from the host's timestamps."""
    machines = state["machines"].values()
    down = [m for m in machines if m["state"] != "active"]
    if down:
        raise BenchError(f"{len(down)} containers are not active after the converge: {down[:3]}")
    first = min(stamp(m["exit_inactive"]) for m in machines)
    active = [stamp(m["active"]) for m in machines]
    boots = sorted(stamp(m["finish"]) - stamp(m["active"]) for m in machines)
    finish = max(stamp(m["finish"]) for m in machines)
    return {"start": round(max(active) - first, 3), "boots_done": round(finish - first, 3),
            "boot_median": round(boots[len(boots) // 2], 3), "boot_max": round(boots[-1], 3)}


def purge(runner: Runner) -> None:
    runner.run(runner.fleet, fleet_vars(0, "clone"))


def converge(runner: Runner, count: int) -> dict:
    """One size on every host of ``runner``: the timed steps, the per-host split and the memory."""
    purge(runner)
    row = {"count": count, "hosts": len(runner.hosts)}
    row["clone_run"] = runner.run(runner.fleet, fleet_vars(count, "clone"))
    clones = {h.name: clone_stamps(h, count) for h in runner.hosts}
    row["write_run"] = runner.run(runner.fleet, fleet_vars(count, "write"))
    writes = {h.name: write_stamps(h, count) for h in runner.hosts}
    before = {h.name: collect_memory(h) for h in runner.hosts}
    row["start_wait_run"] = runner.run(runner.fleet, fleet_vars(count, "start"))
    noops = [runner.run(runner.fleet, fleet_vars(count, "start"), expect_noop=True) for _run in range(3)]
    row["noop_runs"] = [round(n, 3) for n in noops]
    row["noop_run"] = sorted(noops)[1]
    time.sleep(5)  # let the containers' boot-time jobs settle before reading memory
    row["per_host"] = {}
    for host in runner.hosts:
        state = collect(host, count)
        split = split_start(state)
        split.update(clones[host.name])
        split.update(writes[host.name])
        split["rss_per_container"] = round((state["rss"] - before[host.name]) / count)
        pss = sorted(m["pss"] for m in state["machines"].values())
        split["pss_median"] = pss[len(pss) // 2]
        row["per_host"][host.name] = split
    noop = row["noop_run"]
    row["clone"] = round(row["clone_run"] - noop, 3)
    row["write"] = round(row["write_run"] - noop, 3)
    row["start_wait"] = round(row["start_wait_run"] - noop, 3)
    first = next(iter(row["per_host"].values()))
    row["start"] = max(h["start"] for h in row["per_host"].values())
    # wait: from the last unit active to the last container's systemd finished booting (the host's clock);
    # what the start+wait run took beyond that is the fleet's poll interval and the noise of two runs
    row["boots_done"] = max(h["boots_done"] for h in row["per_host"].values())
    row["wait"] = round(row["boots_done"] - row["start"], 3)
    row["after_boot"] = round(row["start_wait"] - row["boots_done"], 3)
    row["total"] = round(row["clone"] + row["write"] + row["start_wait"], 3)
    print(f"{os.path.basename(runner.collections)} hosts={len(runner.hosts)} n={count:3d}: "
          f"clone {row['clone']:.2f} s (on the host {first['clone_span']:.2f} s, "
          f"one {first['clone_median']:.2f} s), write {row['write']:.2f} s (on the host {first['write_span']:.2f} s), "
          f"start {row['start']:.2f} s, wait {row['wait']:.2f} s (+{row['after_boot']:.2f} s), (no-op run {noop:.2f} s), total {row['total']:.2f} s; "
          f"boot median {first['boot_median']:.2f} s; rss/container {first['rss_per_container'] / 2**20:.1f} MiB, "
          f"PSS median {first['pss_median'] / 2**20:.1f} MiB", flush=True)
    return row


def clone_stamps(host: harness.TestHost, count: int) -> dict:
    """Clone step on the host's clock: each root's birth time to the mtime of the hostname the fleet wrote
    into it right after the copy; the span from the first birth to the last hostname."""
    args = " ".join(f"{MACHINES_DIR}/{PREFIX}{i:03d} {MACHINES_DIR}/{PREFIX}{i:03d}/etc/hostname" for i in range(count))
    values = [float(v) for v in host.ssh(f"stat -c '%.9W %.9Y' {args}").stdout.split()]
    born, written = values[0::4], values[3::4]   # root: birth, mtime; hostname: birth, mtime
    if not all(born):
        raise BenchError("the test host's filesystem reports no birth time: cannot split the clone step")
    each = sorted(w - b for b, w in zip(born, written))
    return {"clone_span": round(max(written) - min(born), 3), "clone_median": round(each[len(each) // 2], 3),
            "clone_max": round(each[-1], 3)}


def write_stamps(host: harness.TestHost, count: int) -> dict:
    """Write step on the host's clock: the first to the last modification of the files the write run made
    (each machine's .nspawn file, its resource drop-ins and the network file in its root)."""
    paths = " ".join(f"/etc/systemd/nspawn/{PREFIX}{i:03d}.nspawn /etc/systemd/system/systemd-nspawn@{PREFIX}{i:03d}"
                     f".service.d/*.conf {MACHINES_DIR}/{PREFIX}{i:03d}/etc/systemd/network/*.network"
                     for i in range(count))
    values = [float(v) for v in host.ssh(f"stat -c '%.9Y' {paths}").stdout.split()]
    return {"write_span": round(max(values) - min(values), 3), "write_files": len(values)}


def clone_rounds(runners: dict, count: int, rounds: int) -> dict:
    """The clone run of ``count`` machines, ``rounds`` times per collection, alternating (each side first in every
    other round): per side the wall times of the runs and the host's clone spans (first birth to last hostname)."""
    out = {"count": count, "runs": {side: [] for side in runners}, "spans": {side: [] for side in runners}}
    for index in range(rounds):
        for side in list(runners)[::-1 if index % 2 else 1]:
            runner = runners[side]
            purge(runner)
            out["runs"][side].append(round(runner.run(runner.fleet, fleet_vars(count, "clone")), 3))
            out["spans"][side].append(clone_stamps(runner.hosts[0], count)["clone_span"])
            print(f"round {index + 1} {side}: clone run {out['runs'][side][-1]:.2f} s, on the host "
                  f"{out['spans'][side][-1]:.2f} s", flush=True)
    purge(next(iter(runners.values())))
    return out


def collect_memory(host: harness.TestHost) -> int:
    out = host.ssh("awk '$1 == \"rss\" {print $2}' /sys/fs/cgroup/memory/memory.stat").stdout.strip()
    return int(out)


def site_noop(runner: Runner, count: int, repeat: int) -> list:
    extra = fleet_vars(count, "start")
    runner.run(runner.site, extra)
    return [round(runner.run(runner.site, extra, expect_noop=True), 3) for _run in range(repeat)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,10,30", help="machine counts per host")
    parser.add_argument("--hosts", type=int, default=1, help="test hosts converged together (forks); "
                        "more than 1 also measures the same sizes on one host first")
    parser.add_argument("--repeat", type=int, default=2, help="no-op site.yml runs per host count")
    parser.add_argument("--rev", default="HEAD", help="git revision of the collection")
    parser.add_argument("--before", default="", help="a second revision measured in the same run (one host only)")
    parser.add_argument("--clone-rounds", type=int, default=0, help="only the clone step of the last size, "
                        "this many rounds alternating with --before")
    parser.add_argument("--prefix", default="cvb", help="test host name prefix")
    parser.add_argument("--keep", action="store_true", help="leave the test hosts running")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    name = "bench_converge" + ("-multi" if args.hosts > 1 else "-clones" if args.clone_rounds else "")
    record = Record(name, sys.argv[1:] if argv is None else argv)
    if args.before and args.hosts > 1:
        raise BenchError("--before compares two collections on one host: leave --hosts at 1")
    if args.clone_rounds and not args.before:
        raise BenchError("--clone-rounds compares two collections: give --before REV")
    rev, before = (subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", r], capture_output=True, text=True,
                                  check=True).stdout.strip() if r else "" for r in (args.rev, args.before))
    record.data.update(rev=rev, before=before, sizes=sizes, hosts=args.hosts, template=TEMPLATE["path"])
    work = tempfile.mkdtemp(prefix="corral-bench-converge-")
    collections = {r: collection_of(r, os.path.join(work, f"collection-{r}")) for r in (rev, before) if r}
    names = [f"{args.prefix}{i}" for i in range(1, args.hosts + 1)]
    hosts = harness.boot_many(names)
    try:
        counts = [1] if args.hosts == 1 else [1, args.hosts]
        rows = record.data["rows"] = []
        noop = record.data["site_noop"] = {}
        for k in counts:
            runners = {r: Runner(work, c, hosts[:k]) for r, c in collections.items()}
            runner = runners[rev]
            # not timed: the host role (no zone yet: networkd first started by it may miss D-Bus, see
            # bench_fleet.networkd_on_bus), then the zone and the template
            runner.run(runner.site, dict(fleet_vars(0, "clone"), corral_network_zones=[]))
            for host in hosts[:k]:
                networkd_on_bus(host)
            runner.run(runner.site, fleet_vars(0, "clone"))
            if args.clone_rounds:
                record.data["clone_rounds"] = clone_rounds(runners, sizes[-1], args.clone_rounds)
                break
            for index, count in enumerate(sizes):
                for side in list(runners)[::-1 if index % 2 else 1]:   # each side first in every other size
                    rows.append(dict(converge(runners[side], count), rev=side))
            noop[str(k)] = site_noop(runner, sizes[-1], args.repeat)
            print(f"hosts={k}: no-op site.yml with {sizes[-1]} machines per host: {noop[str(k)]}", flush=True)
            purge(runner)
        record.data["host_systemd"] = hosts[0].ssh("systemctl --version | head -1").stdout.strip()
        record.data["host_mem_total"] = int(hosts[0].ssh("awk '/MemTotal/ {print $2}' /proc/meminfo").stdout) * 1024
    finally:
        if not args.keep:
            harness.stop_many(names)
        shutil.rmtree(work, ignore_errors=True)
    record.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
