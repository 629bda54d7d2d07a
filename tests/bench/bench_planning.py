# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: the fleet's planning for N machines, without a host (issue 15).

Not a timed test. Runs the fleet module's whole logic (``fleet_io.run_fleet``: merge and validate,
address plan, render every ``.nspawn`` file and resource drop-in, read the current state, plan,
and for the first run write the files) in this process against a temporary directory, with a
fake ``systemctl``/``machinectl`` that answers from a table (no host, no container). The image
step is a stand-in that reports the root as present (cloning is measured by bench_image.py), and
the host's own ``.network`` files are not read, so the result depends only on the code.

Every machine is realistic: cloned from one template, in one zone with a static address,
``Boot``/``PrivateUsers`` settings, memory/CPU/tasks limits, enabled and running. Three runs per
size are timed, REPEAT times each (median):

  * ``check``: the first run in check mode: the pure plan (merge, validate, address plan, render,
    read, reconcile), nothing written, no unit touched;
  * ``first``: nothing on disk yet: every file is written, every machine enabled and started;
  * ``no-op``: the same fleet again, converged: files read and compared, one ``systemctl show``.

It also records the ``systemctl`` calls the run made and the largest argv in bytes, against the
limit ``systemd.argv_byte_limit()`` computes from this machine's ``SC_ARG_MAX``: batched calls
are split (``systemd.argv_chunks``) so none exceeds it. Results: tests/bench/results/bench_planning.json.

    python tests/bench/bench_planning.py [--sizes 10,100,1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
COLLECTIONS = os.path.join(ROOT, ".collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "corral", "nspawn")
if not os.path.islink(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(ROOT, LINK)
sys.path.insert(0, COLLECTIONS)
sys.path.insert(0, HERE)

# pylint: disable=wrong-import-position
from ansible_collections.corral.nspawn.plugins.module_utils import fleet_io, systemd  # noqa: E402
from results import Record, summary  # noqa: E402

ZONE = {"name": "apps", "address": ["10.120.0.1/16"]}


class FakeHost:
    """systemd's answers for the fleet's units: state kept from the verbs the fleet runs."""

    def __init__(self):
        self.active, self.enabled, self.calls = set(), set(), []
        self.since = 0

    def run_command(self, argv, **_kw):
        self.calls.append(list(argv))
        if argv[0] == "machinectl":
            return 0, "[]", ""
        verb = argv[1]
        names = [a[len("systemd-nspawn@"):-len(".service")] for a in argv[2:] if a.startswith("systemd-nspawn@")]
        if verb == "show":
            return 0, "".join(f"Id=systemd-nspawn@{n}.service\nActiveState={'active' if n in self.active else 'inactive'}\n"
                              f"UnitFileState={'enabled' if n in self.enabled else 'disabled'}\n"
                              f"MemoryMax=536870912\nCPUQuotaPerSecUSec=500ms\nTasksMax=512\n"
                              f"ActiveEnterTimestamp=@{self.since}\n\n" for n in names), ""
        if verb in ("start", "restart"):
            self.active.update(names)
            self.since = int(time.time()) + 5   # started after its files were written
        elif verb == "stop":
            self.active.difference_update(names)
        elif verb == "enable":
            self.enabled.update(names)
        elif verb == "disable":
            self.enabled.difference_update(names)
        return 0, "", ""


class FakeModule:
    def __init__(self, host, params):
        self.host, self.params, self.check_mode, self._diff = host, params, False, False
        self.warnings = []

    def run_command(self, argv, **kw):
        return self.host.run_command(argv, **kw)

    def atomic_move(self, src, dest, unsafe_writes=False):  # pylint: disable=unused-argument
        os.replace(src, dest)

    def warn(self, msg):
        self.warnings.append(msg)

    def get_bin_path(self, name, *_args, **_kw):
        return f"/usr/bin/{name}"


def present_images(ctx, items):
    for item in items:
        os.makedirs(ctx.layout.root(item["name"]), exist_ok=True)
    return {item["name"]: {"changed": False, "created": False, "changes": []} for item in items}


def params_for(count: int, base: str) -> dict:
    machines = [{"name": f"m{i:05d}", "address": f"10.120.{(i + 2) // 250}.{(i + 2) % 250 + 2}/16"}
                for i in range(count)]
    return dict(machines=machines, templates=[{"name": "base", "source": "directory", "path": "/nonexistent"}],
                defaults={"template": "base", "zone": "apps", "settings": {"boot": True, "private_users": "pick"},
                          "resources": {"memory_max": "512M", "cpu_quota": "50%", "tasks_max": 512}},
                host_defaults={}, network_zones=[ZONE], network_bridges=[], port_forwards=[], prune=False,
                prune_all=False, purge=False, restart="on_change", wait=False, timeout=60,
                machines_dir=os.path.join(base, "machines"), settings_dir=os.path.join(base, "nspawn"),
                units_dir=os.path.join(base, "system"))


def one_size(count: int, repeat: int) -> dict:
    check, first, noop, calls = [], [], [], {}
    for _run in range(repeat):
        base = tempfile.mkdtemp(prefix="corral-bench-plan-")
        try:
            host = FakeHost()
            for label, runs in (("check", check), ("first", first), ("no-op", noop)):
                host.calls.clear()
                module = FakeModule(host, params_for(count, base))
                module.check_mode = label == "check"
                started = time.perf_counter()
                result = fleet_io.run_fleet(module)
                runs.append(time.perf_counter() - started)
                expected = label != "no-op"
                if result["changed"] is not expected or len(result["machines"]) != count:
                    raise SystemExit(f"{count} machines, {label} run: changed={result['changed']}, "
                                     f"{len(result['machines'])} machines in the result")
                sizes = [systemd.argv_bytes(c) for c in host.calls if c[0] == "systemctl"]
                calls[label] = {"systemctl_calls": len(sizes), "largest_argv_bytes": max(sizes)}
        finally:
            shutil.rmtree(base)
    return {"count": count, "check": summary(check), "first": summary(first), "noop": summary(noop), "calls": calls}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    fleet_io.images_step = present_images   # templates too
    fleet_io.network_io.read_dir = lambda _directory=None: {}   # not this host's networkd files
    record = Record("bench_planning", sys.argv[1:])
    record.data.update(repeat=args.repeat, argv_limit=systemd.argv_byte_limit(), names_cap=systemd.ARGV_NAMES_CAP,
                       rows=[])
    for count in [int(s) for s in args.sizes.split(",")]:
        row = one_size(count, args.repeat)
        record.data["rows"].append(row)
        print(f"{count:5d} machines: check {row['check']['median']:.3f} s, first {row['first']['median']:.3f} s, no-op {row['noop']['median']:.3f} s, "
              f"calls {row['calls']}", flush=True)
    record.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
