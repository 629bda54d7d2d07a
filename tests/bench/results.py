# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every benchmark records next to its numbers, and where (tests/bench/results/NAME.json).

docs/performance.md is generated from these files by tests/bench/report.py, so every figure
in it was printed by a benchmark run: the raw runs, their medians, the load average the
script itself read before and after, the machine and the date.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from typing import List

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")


def load_average() -> List[float]:
    return [round(value, 2) for value in os.getloadavg()]


def summary(runs: List[float]) -> dict:
    """The runs (seconds, rounded) and their median, minimum and maximum."""
    return {"runs": [round(r, 3) for r in runs], "median": round(statistics.median(runs), 3),
            "min": round(min(runs), 3), "max": round(max(runs), 3)}


class Record:
    """Collects one benchmark's results; ``save()`` writes them with the context they were taken in."""

    def __init__(self, name: str, argv: List[str]):
        self.name = name
        self.data = {"benchmark": name, "command": " ".join(["python", f"tests/bench/{name.split('-')[0]}.py"] + argv),
                     "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "load_before": load_average(), "cores": os.cpu_count(), "kernel": platform.release()}

    def save(self, path: str = "") -> str:
        self.data["load_after"] = load_average()
        self.data["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        path = path or os.path.join(RESULTS_DIR, f"{self.name}.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.data, handle, indent=1, sort_keys=True)
            handle.write("\n")
        print(f"results written to {path} (load average before {self.data['load_before']}, "
              f"after {self.data['load_after']})", flush=True)
        return path
