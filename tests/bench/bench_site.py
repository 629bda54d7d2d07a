# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: a no-op playbooks/site.yml on one host, split per role, this checkout vs an older one (issue 15).

Not a timed test. Boots one test host and converges it with this checkout's site.yml: the example
inventory's zone ``apps``, bridge ``br-corral``, NAT and port forward, and five running containers
cloned from one template (the example's web, app and db plus two more). Then times no-op runs
(every one must end with changed=0, failed=0, unreachable=0) of:

  * ``floor``: one ``ansible.builtin.command: true`` task (start-up plus one round trip);
  * ``builtin3``: the floor plus ``ping`` and ``stat``: three distinct builtin modules, each built on the
    controller and started on the host once, as site.yml's three module invocations are (Ansible's own cost);
  * ``host``, ``network``, ``fleet``: each role alone, as site.yml applies it;
  * ``site``: the whole playbooks/site.yml;

for two collections in the same run, alternating (each goes first in every other round), REPEAT times each (median): ``after`` and
``before``, the trees of git revisions AFTER (default HEAD) and BEFORE, each extracted with
``git archive`` with its own site.yml (so edits in the working tree during a run change nothing).
Results: tests/bench/results/bench_site.json.

    python tests/bench/bench_site.py [--before REV] [--after REV] [--repeat 3] [--host site-bench] [--keep]
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
import yaml  # noqa: E402  pylint: disable=wrong-import-position
from results import Record, summary  # noqa: E402  pylint: disable=wrong-import-position

EXAMPLES = os.path.join(ROOT, "examples", "inventory", "group_vars", "nspawn_hosts")
# the commit before the host role became one module call (issue 15)
DEFAULT_BEFORE = "0ebf218^"
PLAYS = ("floor", "builtin3", "host", "network", "fleet", "site")
MORE = [{"name": "cache", "address": "10.88.0.13/24"}, {"name": "worker", "address": "10.88.0.14/24"}]


class BenchError(SystemExit):
    pass


def inventory_vars() -> dict:
    """The example inventory's variables, machines without their in-container vars, plus two machines."""
    data = {}
    for name in ("host.yml", "network.yml", "fleet.yml"):
        with open(os.path.join(EXAMPLES, name), encoding="utf-8") as handle:
            data.update(yaml.safe_load(handle) or {})
    data["corral_fleet_machines"] = [{k: v for k, v in m.items() if k not in ("vars", "groups")}
                                     for m in data["corral_fleet_machines"]] + MORE
    data["corral_host_bootstrap_packages"] = []   # test hosts build no roots: no debootstrap to install
    return data


def write_inventory(host: harness.TestHost, path: str) -> str:
    data = json.loads(harness._write_inventory([host]))  # pylint: disable=protected-access
    hosts = data["all"]["children"]["test_hosts"]["hosts"]
    data["all"]["children"] = {"nspawn_hosts": {"hosts": hosts, "vars": inventory_vars()}}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    return path


def playbooks(directory: str, site: str) -> dict:
    """{play: path}: the floor, each role alone (as site.yml applies it), the whole site.yml."""
    def play(name, **body):
        path = os.path.join(directory, f"{name}.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump([dict({"name": name, "hosts": "nspawn_hosts", "gather_facts": False, "become": True}, **body)],
                      handle)
        return path
    floor = [{"name": "one round trip", "ansible.builtin.command": "true", "changed_when": False}]
    # Ansible's own cost of three module invocations, as site.yml makes (one per role): three distinct builtin
    # modules, so each is built on the controller and started on the host, as host_prepare, networks and fleet are
    builtin3 = floor + [{"name": "ping", "ansible.builtin.ping": {}},
                        {"name": "stat", "ansible.builtin.stat": {"path": "/"}}]
    network = [{"role": "corral.nspawn.network", "vars": {"_corral_network_prune_later": True}}]
    return {"floor": play("floor", tasks=floor), "builtin3": play("builtin3", tasks=builtin3),
            "host": play("host", roles=["corral.nspawn.host"]),
            "network": play("network", roles=network),
            "fleet": play("fleet", roles=["corral.nspawn.fleet"]),
            "site": site}


def collection_of(rev: str, directory: str) -> str:
    """ANSIBLE_COLLECTIONS_PATH holding the tree of ``rev`` as corral.nspawn."""
    target = os.path.join(directory, "ansible_collections", "corral", "nspawn")
    os.makedirs(target)
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", target], input=archive, check=True)
    return directory


def timed(playbook: str, inv: str, collections: str, host: str, expect_noop: bool, tasks: bool = False):
    """Wall time of one run; with ``tasks``, (wall time, [[task name, seconds]...]) from the task_timer callback."""
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inv, playbook]
    extra = {"ANSIBLE_CALLBACK_PLUGINS": os.path.join(HERE, "callback_plugins"),
             "ANSIBLE_CALLBACKS_ENABLED": "task_timer"} if tasks else {}
    started = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=1800, cwd=ROOT, stdin=subprocess.DEVNULL,
                         env=harness.ansible_env(ANSIBLE_COLLECTIONS_PATH=collections, **extra), check=False)
    elapsed = time.monotonic() - started
    recap = harness.parse_recap(res.stdout).get(host)
    name = os.path.basename(playbook)
    if res.returncode != 0 or not recap or recap.get("failed", 1) or recap.get("unreachable", 1):
        raise BenchError(f"{name} failed (rc={res.returncode}, recap {recap}):\n{res.stdout[-3000:]}\n{res.stderr[-2000:]}")
    if expect_noop and recap.get("changed") != 0:
        raise BenchError(f"{name}: no-op run reported changed={recap.get('changed')}:\n{res.stdout[-4000:]}")
    if tasks:
        line = next((l for l in res.stdout.splitlines() if l.startswith("TASK_TIMES ")), None)
        if line is None:
            raise BenchError(f"{name}: the task_timer callback printed nothing")
        return elapsed, json.loads(line[len("TASK_TIMES "):])
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=DEFAULT_BEFORE, help="git revision of the 'before' collection")
    parser.add_argument("--after", default="HEAD", help="git revision of the 'after' collection")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--host", default="site-bench", help="test host name")
    parser.add_argument("--keep", action="store_true", help="leave the test host running")
    args = parser.parse_args(argv)
    record = Record("bench_site", sys.argv[1:] if argv is None else argv)
    revs = {v: subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", getattr(args, v)], capture_output=True,
                              text=True, check=True).stdout.strip() for v in ("before", "after")}
    record.data.update(repeat=args.repeat, machines=len(inventory_vars()["corral_fleet_machines"]), **revs)
    work = tempfile.mkdtemp(prefix="corral-bench-site-")
    variants = {v: collection_of(revs[v], os.path.join(work, v)) for v in ("before", "after")}
    books = {}
    for variant, collections in variants.items():
        os.makedirs(os.path.join(work, f"{variant}-plays"))
        books[variant] = playbooks(os.path.join(work, f"{variant}-plays"), os.path.join(
            collections, "ansible_collections", "corral", "nspawn", "playbooks", "site.yml"))
    host = harness.boot(args.host)
    try:
        inv = write_inventory(host, os.path.join(work, "inventory.json"))
        timed(books["after"]["site"], inv, variants["after"], args.host, expect_noop=False)   # converge, not timed
        runs = {v: {p: [] for p in PLAYS} for v in variants}
        for run in range(args.repeat):
            for play in PLAYS:
                # ABBA: a run can leave the host busy for the next one (the same code measured as before
                # and after differed by 2 s in the order before, after), so each side goes first in turn
                for variant in ("before", "after") if run % 2 == 0 else ("after", "before"):
                    runs[variant][play].append(timed(books[variant][play], inv, variants[variant], args.host, True))
                    print(f"{variant:6s} {play:8s} {runs[variant][play][-1]:.2f} s", flush=True)
        # where a no-op site.yml spends its time: one more run per side with the task_timer callback
        record.data["tasks"] = {}
        for variant in ("before", "after"):
            wall, rows = timed(books[variant]["site"], inv, variants[variant], args.host, True, tasks=True)
            record.data["tasks"][variant] = {"wall": round(wall, 3), "tasks": rows}
        record.data["rows"] = [{"play": p, "before": summary(runs["before"][p]), "after": summary(runs["after"][p])}
                               for p in PLAYS]
        record.data["host_resolves_own_name"] = host.ssh("getent hosts $(hostname)", check=False).returncode == 0
        record.data["host_systemd"] = host.ssh("systemctl --version | head -1").stdout.strip()
    finally:
        if not args.keep:
            harness.stop(args.host)
        shutil.rmtree(work, ignore_errors=True)
    record.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
