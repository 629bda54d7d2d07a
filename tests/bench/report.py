# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Regenerate the measured parts of docs/performance.md from tests/bench/results/*.json.

Every figure in that document sits between ``<!-- BEGIN bench:NAME -->`` and
``<!-- END bench:NAME -->`` and is written here from what a benchmark script printed into
its results file; the prose around the blocks holds no measured number
(tests/unit/bench/test_performance_doc.py checks both).

    python tests/bench/report.py           # rewrite docs/performance.md
    python tests/bench/report.py --check   # exit 1 when the document is out of date
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RESULTS_DIR = os.path.join(HERE, "results")
DOC = os.path.join(ROOT, "docs", "performance.md")
BLOCK_RE = re.compile(r"(<!-- BEGIN bench:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- END bench:(?P=name) -->)", re.S)

CLONE_TARGET_PERCENT = 5.0     # a clone costs under 5 % of a bootstrap
FLAT_TARGET = 2.0              # the largest fleet costs under 2x the smallest
NAIVE_TARGET = 10.0            # the fleet role is at least 10x faster than the naive loop at the largest size
PLAN_TARGET = 1.0              # the fleet's pure planning for 1000 machines takes under 1 s (issue 15)
SITE_MARGIN = 1.5              # a no-op site.yml costs at most the floor plus 1.5 s (issue 15)
MULTI_TARGET = 1.3             # 3 hosts converged together take at most 1.3x of one host (issue 15)


def load(name: str, results_dir: str = RESULTS_DIR) -> Optional[dict]:
    path = os.path.join(results_dir, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _loads(values: List[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def context(data: dict) -> str:
    return (f"Measured {data['started']} to {data['finished']} on {data['cores']} cores (kernel {data['kernel']}), "
            f"load average (1 / 5 / 15 min) {_loads(data['load_before'])} before and {_loads(data['load_after'])} "
            f"after, as read by the script.\nCommand: `{data['command']}`\n")


def cell(summary: Optional[dict]) -> str:
    if not summary:
        return "-"
    if len(summary["runs"]) == 1:
        return f"{summary['median']:.2f} s (1 run)"
    return f"{summary['median']:.2f} s ({summary['min']:.2f}-{summary['max']:.2f})"


def ratio(numerator: Optional[dict], denominator: Optional[dict]) -> str:
    if not numerator or not denominator:
        return "-"
    return f"{numerator['median'] / denominator['median']:.1f}x"


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# ---------------------------------------------------------------- image

def image_block(results: List[dict]) -> str:
    if not results:
        return "No results yet: run `python tests/bench/bench_image.py`.\n"
    lines = ["| machines_dir | clone method | bootstraps | bootstrap median (min-max) | clones | clone median (min-max) "
             "| clone / bootstrap |", "|---|---|---:|---:|---:|---:|---:|"]
    for data in results:
        lines.append(f"| {data['fs']} | {', '.join(f'`{m}`' for m in data['clone_methods'])} | "
                     f"{len(data['bootstrap']['runs'])} | {cell(data['bootstrap'])} | {len(data['clone']['runs'])} | "
                     f"{cell(data['clone'])} | **{data['ratio_percent']:.1f} %** |")
    lines.append("")
    for data in results:
        lines.append(f"Target on {data['fs']}: a clone costs under {CLONE_TARGET_PERCENT:.0f} % of a bootstrap: "
                     f"{met(data['ratio_percent'] < CLONE_TARGET_PERCENT)}. Root size {data['root_size']}, "
                     f"{data['deb_cache']} package cache. " + context(data))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- fleet

def fleet_block(data: Optional[dict]) -> str:
    if not data:
        return "No results yet: run `python tests/bench/bench_fleet.py`.\n"
    lines = [f"Median of {data['repeat']} no-op runs each (min-max), after one converging run.", "",
             "| machines | kind | site.yml | fleet role | naive loop | naive / fleet role | naive / site.yml |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for row in data["rows"]:
        lines.append(f"| {row['count']} | {row['kind']} | {cell(row.get('site'))} | {cell(row['role'])} | "
                     f"{cell(row['naive'])} | {ratio(row['naive'], row['role'])} | {ratio(row['naive'], row.get('site'))} |")
    lines.append("")
    for kind in dict.fromkeys(row["kind"] for row in data["rows"]):  # in the order measured
        lines.extend(_targets(kind, [r for r in data["rows"] if r["kind"] == kind]))
    lines += ["", context(data)]
    return "\n".join(lines) + "\n"


def _targets(kind: str, rows: List[dict]) -> List[str]:
    first, last = min(rows, key=lambda r: r["count"]), max(rows, key=lambda r: r["count"])
    files = last["naive_files_per_machine"]
    out = [f"- {kind}: the naive loop wrote {files} files per machine, byte for byte the fleet's "
           f"({last['naive_files_compared']} compared at {last['count']} machines)."]
    if first is last:
        return out
    flat = last["role"]["median"] / first["role"]["median"]
    naive = last["naive"]["median"] / last["role"]["median"]
    out.append(f"- {kind}: {last['count']} machines cost {flat:.2f}x of {first['count']} with the fleet role "
               f"(target under {FLAT_TARGET:.0f}x: {met(flat < FLAT_TARGET)})"
               + (f", site.yml {last['site']['median'] / first['site']['median']:.2f}x" if last.get("site") else "")
               + f"; the naive loop takes {naive:.1f}x the fleet role at {last['count']} "
               f"(target at least {NAIVE_TARGET:.0f}x: {met(naive >= NAIVE_TARGET)}).")
    return out


# ---------------------------------------------------------------- connection

def connection_block(data: Optional[dict]) -> str:
    if not data:
        return "No results yet: run `python tests/bench/bench_connection.py`.\n"
    rows = data["rows"]
    lines = [f"{data['tasks']} tasks x {data['count']} containers, forks {data['count']}; per task = the wall time of "
             f"one task over all {data['count']} containers at once; median of {data['repeat']} runs (min-max).", "",
             "| connection | per task | whole run | per task vs direct SSH |", "|---|---:|---:|---:|"]
    labels = {"nspawn": "`corral.nspawn.nspawn` (SSH to the host)", "ssh": "`ansible.builtin.ssh` into each container"}
    for name, row in rows.items():
        per_task = row["per_task"]
        lines.append(f"| {labels.get(name, name)} | {per_task['median'] * 1000:.0f} ms "
                     f"({per_task['min'] * 1000:.0f}-{per_task['max'] * 1000:.0f}) | {cell(row['total'])} | "
                     f"{per_task['median'] / rows['ssh']['per_task']['median']:.2f}x |")
    ok = rows["nspawn"]["per_task"]["median"] <= rows["ssh"]["per_task"]["median"]
    lines += ["", f"Target: no slower than direct SSH per task: {met(ok)}.", "", context(data)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- planning

def planning_block(data: Optional[dict]) -> str:
    if not data:
        return "No results yet: run `python tests/bench/bench_planning.py`.\n"
    lines = [f"Median of {data['repeat']} runs each (min-max); systemctl calls and the largest argv of one run "
             f"(limit on this machine: {data['argv_limit']} bytes, at most {data['names_cap']} names per call).", "",
             "| machines | plan (check mode) | first converge (files written) | no-op | systemctl calls first / no-op "
             "| largest argv | no-op per machine |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in data["rows"]:
        calls = row["calls"]
        largest = max(c["largest_argv_bytes"] for c in calls.values())
        lines.append(f"| {row['count']} | {cell(row['check'])} | {cell(row['first'])} | {cell(row['noop'])} | "
                     f"{calls['first']['systemctl_calls']} / {calls['no-op']['systemctl_calls']} | {largest} bytes | "
                     f"{row['noop']['median'] / row['count'] * 1000:.2f} ms |")
    lines.append("")
    largest = max(data["rows"], key=lambda r: r["count"])
    fits = all(c["largest_argv_bytes"] <= data["argv_limit"] for r in data["rows"] for c in r["calls"].values())
    lines.append(f"- Target: planning {largest['count']} machines takes under {PLAN_TARGET:.0f} s: plan "
                 f"{largest['check']['median']:.2f} s ({met(largest['check']['median'] < PLAN_TARGET)}), no-op "
                 f"{largest['noop']['median']:.2f} s ({met(largest['noop']['median'] < PLAN_TARGET)}).")
    lines.append(f"- Every systemctl argv within the limit: {met(fits)}.")
    lines += ["", context(data)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- site.yml per role

SITE_LABELS = {"floor": "one `command: true` task (the floor)",
               "builtin3": "three builtin module tasks (`command`, `ping`, `stat`)", "host": "`host` role alone",
               "network": "`network` role alone", "fleet": "`fleet` role alone", "site": "whole `site.yml`"}


def site_block(data: Optional[dict]) -> str:
    if not data:
        return "No results yet: run `python tests/bench/bench_site.py`.\n"
    lines = [f"One test host, {data['machines']} running containers, one zone, one bridge, NAT, a port forward; "
             f"no-op runs (changed=0), median of {data['repeat']} each (min-max), the two collections alternating "
             f"in one run: before = `{data['before']}`, after = `{data['after']}`.", "",
             "| play | before | after | after / before | after minus the floor |", "|---|---:|---:|---:|---:|"]
    rows = {row["play"]: row for row in data["rows"]}
    floor = rows["floor"]["after"]["median"]
    for play, row in rows.items():
        over = "-" if play == "floor" else f"{row['after']['median'] - floor:+.2f} s"
        lines.append(f"| {SITE_LABELS.get(play, play)} | {cell(row['before'])} | {cell(row['after'])} | "
                     f"{row['after']['median'] / row['before']['median']:.2f}x | {over} |")
    site = rows["site"]["after"]["median"]
    if data.get("tasks"):
        lines += ["", "Where one more no-op `site.yml` run of each side spent its time on the controller (from a "
                  "task's start to the next one's; the last row: the tasks' sum and, in brackets, that run's wall time "
                  "from outside):", ""]
        lines += task_table(data["tasks"])
    lines += ["", f"- Target: a no-op `site.yml` costs at most the floor plus {SITE_MARGIN:.1f} s: "
              f"{site - floor:.2f} s over the floor ({met(site - floor <= SITE_MARGIN)}).",
              *builtin_lines(rows, floor, site),
              f"- The test host resolves its own name: {'yes' if data.get('host_resolves_own_name') else 'no'}; "
              f"{data.get('host_systemd', '')}.", "", context(data)]
    return "\n".join(lines) + "\n"


def builtin_lines(rows: dict, floor: float, site: float) -> List[str]:
    """What Ansible itself charges for site.yml's three module invocations, and what is left for corral's code."""
    if "builtin3" not in rows:
        return []
    three = rows["builtin3"]["after"]["median"]
    return [f"- Ansible's own cost of three module invocations (three builtin module tasks): the floor plus "
            f"{three - floor:.2f} s. site.yml's three roles cost {site - three:.2f} s more than those three tasks: "
            "the roles' other tasks (argument validation, skipped steps) and corral's own module code "
            "(built and started on each run, then its reads and plan)."]


def task_table(tasks: dict) -> List[str]:
    """Per task: before and after seconds (names of both sides in order, summed when a name repeats)."""
    sums: Dict[str, Dict[str, float]] = {}
    for side in ("before", "after"):
        for name, seconds in tasks.get(side, {}).get("tasks", []):
            sums.setdefault(name, {}).setdefault(side, 0.0)
            sums[name][side] += seconds
    lines = ["| task | before | after |", "|---|---:|---:|"]
    for name, sides in sums.items():
        cells = [f"{sides[s]:.2f} s" if s in sides else "-" for s in ("before", "after")]
        lines.append(f"| {name.replace('|', '/')} | {cells[0]} | {cells[1]} |")
    totals = [sum(t for _n, t in tasks.get(s, {}).get("tasks", [])) for s in ("before", "after")]
    walls = [tasks.get(s, {}).get("wall") for s in ("before", "after")]
    lines.append(f"| all tasks (the whole run) | {totals[0]:.2f} s ({walls[0]:.2f} s) | {totals[1]:.2f} s "
                 f"({walls[1]:.2f} s) |")
    return lines


# ---------------------------------------------------------------- first converge at scale

def _mib(value: float) -> str:
    return f"{value / 2 ** 20:.1f} MiB"


def converge_rows(data: dict, hosts: int, rev: str = "") -> List[dict]:
    """The rows of ``hosts`` hosts measured with collection ``rev`` (default: the run's own, not ``--before``'s)."""
    rev = rev or data["rev"]
    return [r for r in data["rows"] if r["hosts"] == hosts and r.get("rev", data["rev"]) == rev]


def converge_table(rows: List[dict]) -> List[str]:
    lines = ["| hosts | machines per host | clone | write (on the host) | start | wait (boots) | fleet after the last boot "
             "| no-op run | first converge | per machine | boot median (max) | clone per machine (on the host) "
             "| anonymous memory per container | PSS per container (median) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        first = next(iter(row["per_host"].values()))
        span = f" ({first['write_span']:.2f} s)" if "write_span" in first else ""
        lines.append(f"| {row['hosts']} | {row['count']} | {row['clone']:.2f} s | {row['write']:.2f} s{span} | "
                     f"{row['start']:.2f} s | {row['wait']:.2f} s | {row['after_boot']:+.2f} s | "
                     f"{row['noop_run']:.2f} s | {row['total']:.2f} s | {row['total'] / row['count']:.2f} s | "
                     f"{first['boot_median']:.2f} s ({first['boot_max']:.2f} s) | {first['clone_median']:.2f} s | "
                     f"{_mib(first['rss_per_container'])} | {_mib(first['pss_median'])} |")
    return lines


def _first(row: dict) -> dict:
    return next(iter(row["per_host"].values()))


def marginal_lines(rows: List[dict], lead: str = "Marginal") -> List[str]:
    """The marginal cost of one more container against its own clone plus its own boot, two ways."""
    one, last = rows[0], rows[-1]
    marginal = (last["total"] - one["total"]) / (last["count"] - one["count"])
    boot = _first(one)["boot_median"]
    own = _first(last)["clone_median"] + boot
    lines = [f"- {lead} cost of one more container from {one['count']} to {last['count']}: "
             f"{marginal:.2f} s; its own clone ({last['count']} machines) plus its own boot (alone): "
             f"{own:.2f} s (target: at most that: {met(marginal <= own)})."]
    if "clone_span" in _first(last):
        share = _first(last)["clone_span"] / last["count"] + boot
        lines.append(f"  Counting a clone as the host's time for all {last['count']} clones divided by "
                     f"{last['count']} (clones overlap, so one clone's own time overstates its cost): "
                     f"{share:.2f} s ({met(marginal <= share)}).")
    return lines


def before_lines(data: dict, before: List[dict], after: List[dict]) -> List[str]:
    lines = [f"Same run, `{data['before']}` (before) against `{data['rev']}` (after), alternating size by size:", ""]
    for old, new in zip(before, after):
        lines.append(f"- {new['count']} machines: clone step {old['clone']:.2f} s -> {new['clone']:.2f} s "
                     f"({new['clone'] / old['clone']:.2f}x), first converge {old['total']:.2f} s -> "
                     f"{new['total']:.2f} s ({new['total'] / old['total']:.2f}x).")
    return lines + [""]


def converge_block(data: Optional[dict]) -> str:
    if not data:
        return "No results yet: run `python tests/bench/bench_converge.py`.\n"
    rows = converge_rows(data, 1)
    before = converge_rows(data, 1, data["before"]) if data.get("before") else []
    lines = [f"One test host (collection `{data['rev']}`), machines cloned from `{data['template']}`; every step "
             "is the time of its fleet run minus the median no-op run of the same size (start and wait from the "
             "host's own timestamps, see above).", ""] + converge_table(rows) + [""]
    if before:
        lines += [f"The same steps with collection `{data['before']}` in the same run:", ""]
        lines += converge_table(before) + [""] + before_lines(data, before, rows)
    if len(rows) > 1:
        lines += marginal_lines(rows)
    if len(before) > 1:
        lines += marginal_lines(before, f"Before (`{data['before']}`): marginal")
    lines += ["", context(data)]
    return "\n".join(lines) + "\n"


def _median(runs: List[float]) -> float:
    return statistics.median(runs)


def _spread(runs: List[float]) -> str:
    return f"{_median(runs):.2f} s ({min(runs):.2f}-{max(runs):.2f})"


def clones_block(data: Optional[dict]) -> str:
    if not data:
        return ("No results yet: run `python tests/bench/bench_converge.py --sizes 10 --before REV "
                "--clone-rounds 5`.\n")
    rounds = data["clone_rounds"]
    old, new = data["before"], data["rev"]
    lines = [f"The clone step of {rounds['count']} machines alone, {len(rounds['runs'][new])} rounds, collections "
             f"`{old}` (before) and `{new}` (after) alternating within each round; median (min-max).", "",
             "| collection | clone run (fleet role, from outside) | clones on the host (first root to last hostname) |",
             "|---|---:|---:|"]
    for side, label in ((old, "before"), (new, "after")):
        lines.append(f"| `{side}` ({label}) | {_spread(rounds['runs'][side])} | {_spread(rounds['spans'][side])} |")
    ratio_ = _median(rounds["spans"][new]) / _median(rounds["spans"][old])
    lines += ["", f"- Clones on the host, after / before: {ratio_:.2f}x (medians of the same run).", "", context(data)]
    return "\n".join(lines) + "\n"


def multi_block(data: Optional[dict]) -> str:
    if not data:
        return "No results yet: run `python tests/bench/bench_converge.py --sizes 10 --hosts 3`.\n"
    hosts = data["hosts"]
    one, many = converge_rows(data, 1), converge_rows(data, hosts)
    lines = [f"{hosts} test hosts converged together (forks) vs one of them alone, in the same run "
             f"(collection `{data['rev']}`).", ""] + converge_table(one + many) + [""]
    noop = data["site_noop"]
    single, multi = noop.get("1"), noop.get(str(hosts))
    if one and many:
        ratio_ = many[-1]["total"] / one[-1]["total"]
        lines.append(f"- First converge of {many[-1]['count']} machines per host: {hosts} hosts take "
                     f"{ratio_:.2f}x of one (target at most {MULTI_TARGET:.1f}x: {met(ratio_ <= MULTI_TARGET)}). "
                     f"All {hosts} test hosts share this machine's {data.get('cores', '?')} cores and one disk: "
                     f"their clones and boots, CPU- and disk-bound, take turns here, so {hosts} hosts cost about "
                     f"{hosts}x of one by construction. This ratio cannot show what separate machines would do; "
                     "the per-host columns above show the work per host.")
    if single and multi:
        single, multi = _median(single), _median(multi)
        ratio_ = multi / single
        lines.append(f"- No-op `site.yml` (median of {len(noop[str(hosts)])}): one host {single:.2f} s, {hosts} hosts "
                     f"{multi:.2f} s: {ratio_:.2f}x (target at most {MULTI_TARGET:.1f}x: "
                     f"{met(ratio_ <= MULTI_TARGET)}).")
    lines += ["", context(data)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- document

def blocks(results_dir: str = RESULTS_DIR) -> Dict[str, str]:
    images = [d for d in (load("bench_image-ext4", results_dir), load("bench_image-btrfs", results_dir)) if d]
    return {"image": image_block(images), "fleet": fleet_block(load("bench_fleet", results_dir)),
            "connection": connection_block(load("bench_connection", results_dir)),
            "planning": planning_block(load("bench_planning", results_dir)),
            "site": site_block(load("bench_site", results_dir)),
            "converge": converge_block(load("bench_converge", results_dir)),
            "converge-clones": clones_block(load("bench_converge-clones", results_dir)),
            "multihost": multi_block(load("bench_converge-multi", results_dir))}


def render(text: str, generated: Dict[str, str]) -> str:
    missing = set(generated) - {m.group("name") for m in BLOCK_RE.finditer(text)}
    if missing:
        raise ValueError(f"docs/performance.md has no block for {sorted(missing)}")
    return BLOCK_RE.sub(lambda m: m.group(1) + generated[m.group("name")] + m.group(4), text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether the document is up to date")
    args = parser.parse_args(argv)
    with open(DOC, encoding="utf-8") as handle:
        text = handle.read()
    new = render(text, blocks())
    if args.check:
        if new != text:
            print("docs/performance.md is out of date: run python tests/bench/report.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        with open(DOC, "w", encoding="utf-8") as handle:
            handle.write(new)
        print("docs/performance.md regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
