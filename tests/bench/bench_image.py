# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: a container root by bootstrap vs by clone of a template, per container.

Not a timed test. On this machine (the controller: test hosts have no network), in a
temporary machines_dir under /var/tmp, it runs corral.nspawn.image's code directly:

  * BOOTSTRAPS debootstraps of bookworm minbase + systemd + dbus (mirror read from this
    machine's apt sources at run time; debootstrap's package cache warm unless --cold),
  * CLONES clones of the first root (source=clone, hostname per clone: the fleet's path),

and prints the median bootstrap time, the median clone time, and the ratio (target: < 5%).
The raw runs, medians and the load average before and after (read by this script) go to
tests/bench/results/image-FS.json; tests/bench/report.py turns them into docs/performance.md.

    python tests/bench/bench_image.py [--bootstraps 3] [--clones 5] [--cold] [--btrfs] [--keep]
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
from results import Record, summary  # noqa: E402  pylint: disable=wrong-import-position

MODULE = os.path.join(ROOT, "plugins", "modules", "image.py")


def run_module(args: dict, workdir: str) -> tuple:
    """(wall seconds, result) of one module run as Ansible would run it (a fresh Python process)."""
    path = os.path.join(workdir, "args.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, ".collections"))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, MODULE, path], capture_output=True, text=True, env=env, check=False)
    wall = time.monotonic() - started
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result.get("failed") or not result.get("changed"):
        raise SystemExit(f"module run failed or did nothing: {result.get('msg', result)}\n{proc.stderr[-2000:]}")
    return wall, result


def du(path: str) -> str:
    return subprocess.run(["du", "-sh", path], capture_output=True, text=True, check=False).stdout.split()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstraps", type=int, default=3, help="debootstrap runs (median)")
    parser.add_argument("--clones", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="no debootstrap package cache (downloads every .deb)")
    parser.add_argument("--btrfs", action="store_true",
                        help="machines_dir on a loop-mounted btrfs (clones are snapshots; needs btrfs-progs)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary machines_dir")
    parser.add_argument("--json", default="", help="results file (default tests/bench/results/image-FS.json)")
    opts = parser.parse_args()
    record = Record(f"bench_image-{'btrfs' if opts.btrfs else 'ext4'}", sys.argv[1:])
    harness.ensure_collection_link()
    machines = tempfile.mkdtemp(prefix="img-bench-", dir="/var/tmp")
    work = tempfile.mkdtemp(prefix="img-bench-args-")
    loop_image = os.path.join(work, "btrfs.img")
    if opts.btrfs:
        with open(loop_image, "wb") as handle:
            handle.truncate(4 << 30)
        subprocess.run(["mkfs.btrfs", "-q", loop_image], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "loop", loop_image, machines], check=True)
    try:
        measure(opts, machines, work, record.data)
    finally:
        if opts.keep:
            print(f"kept {machines}")
        elif opts.btrfs:
            subprocess.run(["umount", machines], check=False)
            os.rmdir(machines)
        else:
            shutil.rmtree(machines, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    record.save(opts.json)
    return 0


def measure(opts, machines: str, work: str, data: dict) -> None:
    extra = [] if opts.cold else [f"--cache-dir={harness.ensure_dir(os.path.join(harness.CACHE_DIR, 'debs'))}"]
    base = {"machines_dir": machines, "source": "debootstrap", "suite": "bookworm", "variant": "minbase",
            "include": ["systemd", "dbus"], "mirror": harness.apt_mirror(), "extra_args": extra}
    boots = []
    for index in range(opts.bootstraps):
        name = "tmpl" if index == 0 else f"boot{index}"
        wall, boot = run_module(dict(base, name=name), work)
        boots.append(wall)
        print(f"bootstrap {index + 1} (debootstrap minbase+systemd+dbus, {'cold' if opts.cold else 'warm'} deb cache): "
              f"{wall:.2f} s wall, module elapsed {boot['elapsed']:.2f} s, root {du(os.path.join(machines, name))}")
        if index:
            shutil.rmtree(os.path.join(machines, name))  # only the first one is cloned
    clones, methods = [], set()
    for index in range(1, opts.clones + 1):
        name = f"c{index}"
        wall, result = run_module({"name": name, "machines_dir": machines, "source": "clone",
                                   "clone_from": "tmpl", "hostname": name}, work)
        clones.append(wall)
        methods.add(result["method"])
        print(f"clone {name}: {wall:.2f} s wall, module elapsed {result['elapsed']:.2f} s "
              f"(copy {result['timings'].get('build', 0):.2f} s, setup {result['timings'].get('setup', 0):.2f} s)")
    fs = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "--target", machines], capture_output=True, text=True,
                        check=False).stdout.strip() or "unknown"
    boot, clone = summary(boots), summary(clones)
    data.update(fs=fs, clone_methods=sorted(methods), bootstrap=boot, clone=clone, root_size=du(os.path.join(machines, "tmpl")),
                deb_cache="cold" if opts.cold else "warm", ratio_percent=round(100 * clone["median"] / boot["median"], 2))
    print(f"\nmachines_dir file system: {fs}; cores: {os.cpu_count()}")
    print(f"per container: bootstrap median {boot['median']:.2f} s, clone median {clone['median']:.2f} s "
          f"(min {clone['min']:.2f}, max {clone['max']:.2f}) -> clone/bootstrap = {data['ratio_percent']:.1f}% "
          f"(target < 5%), {boot['median'] / clone['median']:.0f}x faster")


if __name__ == "__main__":
    sys.exit(main())
