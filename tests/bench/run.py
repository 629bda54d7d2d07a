"""Run every benchmark of tests/bench in turn (``make bench``), then regenerate docs/performance.md.

Each script writes its results file (tests/bench/results/NAME.json); report.py turns them into
the document's tables, so no figure is copied by hand.

Benchmarks are measurements, not tests: they print numbers and ratios taken in one run,
so the noise of a shared machine affects both sides of every comparison alike.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHMARKS = [
    ["bench_image.py", "--bootstraps", "3", "--clones", "5"],
    ["bench_image.py", "--bootstraps", "3", "--clones", "5", "--btrfs"],
    ["bench_fleet.py", "--sizes", "1,10,50", "--realistic", "1,10", "--repeat", "3"],
    ["bench_connection.py", "--count", "10", "--tasks", "20", "--repeat", "3"],
    ["bench_planning.py", "--sizes", "10,100,1000", "--repeat", "3"],
    ["bench_site.py", "--repeat", "3"],
    ["bench_converge.py", "--sizes", "1,10,30"],
    ["bench_converge.py", "--sizes", "10", "--hosts", "3"],
]


def main() -> int:
    worst = 0
    for script, *args in BENCHMARKS:
        print(f"== {script} {' '.join(args)}", flush=True)
        worst = max(worst, subprocess.run([sys.executable, os.path.join(HERE, script), *args], check=False).returncode)
    if worst:
        print("a benchmark failed: docs/performance.md left as it was", file=sys.stderr)
        return worst
    return subprocess.run([sys.executable, os.path.join(HERE, "report.py")], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
