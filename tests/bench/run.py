"""Run every benchmark of tests/bench in turn (``make bench``); results go to docs/performance.md by hand.

Benchmarks are measurements, not tests: they print numbers and ratios taken in one run,
so the noise of a shared machine affects both sides of every comparison alike.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHMARKS = [
    ["bench_image.py", "--clones", "5"],
    ["bench_fleet.py", "--sizes", "1,10,50", "--repeat", "3"],
]


def main() -> int:
    worst = 0
    for script, *args in BENCHMARKS:
        print(f"== {script} {' '.join(args)}", flush=True)
        worst = max(worst, subprocess.run([sys.executable, os.path.join(HERE, script), *args], check=False).returncode)
    return worst


if __name__ == "__main__":
    sys.exit(main())
