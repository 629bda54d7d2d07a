"""docs/performance.md holds only figures a benchmark script printed (tests/bench/report.py)."""

import json
import os
import re
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))

import report  # noqa: E402  pylint: disable=wrong-import-position

# A measured figure: a number with a unit of time, a ratio or a percentage.
FIGURE_RE = re.compile(r"\d+(\.\d+)?\s*(s|ms|%|x)\b")


def _block(tmp_path, filename: str, data: dict, name: str) -> str:
    """The page block ``name`` that report.py renders from ``data`` written as results/``filename``."""
    (tmp_path / filename).write_text(json.dumps(data))
    return report.blocks(str(tmp_path))[name]


def doc() -> str:
    with open(report.DOC, encoding="utf-8") as handle:
        return handle.read()


def test_the_document_is_what_the_results_files_generate():
    assert report.render(doc(), report.blocks()) == doc(), "run python tests/bench/report.py"


def test_no_measured_figure_outside_the_generated_blocks():
    prose = report.BLOCK_RE.sub("", doc())
    assert FIGURE_RE.findall(prose) == [], [m.group(0) for m in FIGURE_RE.finditer(prose)]


def test_every_benchmark_has_a_block():
    names = {m.group("name") for m in report.BLOCK_RE.finditer(doc())}
    assert names == set(report.blocks())


SUMMARY = {"runs": [1.0, 2.0, 3.0], "median": 2.0, "min": 1.0, "max": 3.0}
CONTEXT = {"started": "2026-01-01 10:00 UTC", "finished": "2026-01-01 10:10 UTC", "cores": 2, "kernel": "6.1",
           "load_before": [1.0, 1.5, 2.0], "load_after": [2.0, 2.5, 3.0], "command": "python tests/bench/x.py"}


def test_fleet_block_reports_medians_ratios_targets_and_the_measured_load(tmp_path):
    rows = [{"kind": "settings-only", "count": n, "site": SUMMARY, "naive_files_per_machine": 2,
             "naive_files_compared": 2 * n, "role": dict(SUMMARY, median=m),
             "naive": dict(SUMMARY, median=m * f)} for n, m, f in ((1, 1.0, 2.0), (50, 1.5, 40.0))]
    (tmp_path / "bench_fleet.json").write_text(json.dumps(dict(CONTEXT, repeat=3, rows=rows)))
    block = report.blocks(str(tmp_path))["fleet"]
    assert "| 50 | settings-only | 2.00 s (1.00-3.00) | 1.50 s (1.00-3.00) | 60.00 s (1.00-3.00) | 40.0x | 30.0x |" in block
    assert "50 machines cost 1.50x of 1 with the fleet role (target under 2x: met)" in block
    assert "the naive loop takes 40.0x the fleet role at 50 (target at least 10x: met)" in block
    assert "1.00 / 1.50 / 2.00 before and 2.00 / 2.50 / 3.00 after" in block


def test_a_missed_target_is_reported_as_not_met(tmp_path):
    data = dict(CONTEXT, fs="ext4", clone_methods=["cp --reflink=auto"], bootstrap=SUMMARY,
                clone=dict(SUMMARY, median=0.2), root_size="240M", deb_cache="warm", ratio_percent=10.0)
    (tmp_path / "bench_image-ext4.json").write_text(json.dumps(data))
    assert "a clone costs under 5 % of a bootstrap: NOT met" in report.blocks(str(tmp_path))["image"]


def test_a_document_without_a_block_is_refused():
    with pytest.raises(ValueError, match="no block"):
        report.render("# Performance\n", {"fleet": "x\n"})


def test_connection_block_reports_per_task_costs_against_direct_ssh(tmp_path):
    rows = {"nspawn": {"per_task": dict(SUMMARY, median=0.09, min=0.08, max=0.1), "total": SUMMARY},
            "ssh": {"per_task": dict(SUMMARY, median=0.1, min=0.09, max=0.12), "total": SUMMARY}}
    (tmp_path / "bench_connection.json").write_text(json.dumps(dict(CONTEXT, count=10, tasks=20, repeat=3, rows=rows)))
    block = report.blocks(str(tmp_path))["connection"]
    assert "| `corral.nspawn.nspawn` (SSH to the host) | 90 ms (80-100) | 2.00 s (1.00-3.00) | 0.90x |" in block
    assert "Target: no slower than direct SSH per task: met." in block
    rows["nspawn"]["per_task"]["median"] = 0.2
    (tmp_path / "bench_connection.json").write_text(json.dumps(dict(CONTEXT, count=10, tasks=20, repeat=3, rows=rows)))
    assert "per task: NOT met." in report.blocks(str(tmp_path))["connection"]


def test_planning_block_reports_the_target_and_the_argv_limit(tmp_path):
    calls = {"check": {"systemctl_calls": 4, "largest_argv_bytes": 9000},
             "first": {"systemctl_calls": 17, "largest_argv_bytes": 9000},
             "no-op": {"systemctl_calls": 4, "largest_argv_bytes": 200000}}
    rows = [{"count": 1000, "check": dict(SUMMARY, median=1.5), "first": SUMMARY, "noop": dict(SUMMARY, median=0.5),
             "calls": calls}]
    (tmp_path / "bench_planning.json").write_text(json.dumps(dict(CONTEXT, repeat=3, argv_limit=131072, names_cap=256,
                                                                  rows=rows)))
    block = report.blocks(str(tmp_path))["planning"]
    assert "| 1000 | 1.50 s (1.00-3.00) | 2.00 s (1.00-3.00) | 0.50 s (1.00-3.00) | 17 / 4 | 200000 bytes | 0.50 ms |" in block
    assert "plan 1.50 s (NOT met), no-op 0.50 s (met)" in block
    assert "Every systemctl argv within the limit: NOT met." in block


def test_site_block_compares_before_and_after_against_the_floor(tmp_path):
    def row(play, before, after):
        return {"play": play, "before": dict(SUMMARY, median=before), "after": dict(SUMMARY, median=after)}
    rows = [row("floor", 2.0, 2.0), row("host", 17.0, 2.5), row("site", 22.0, 4.0)]
    (tmp_path / "bench_site.json").write_text(json.dumps(dict(CONTEXT, repeat=3, machines=5, before="abc", after="def",
                                                              rows=rows, host_resolves_own_name=False)))
    block = report.blocks(str(tmp_path))["site"]
    assert "| `host` role alone | 17.00 s (1.00-3.00) | 2.50 s (1.00-3.00) | 0.15x | +0.50 s |" in block
    assert "2.00 s over the floor (NOT met)" in block
    assert "resolves its own name: no" in block
    assert "three builtin module tasks" not in block   # older results without the reference row


def test_site_block_separates_ansibles_own_cost_of_three_invocations(tmp_path):
    def row(play, after):
        return {"play": play, "before": dict(SUMMARY, median=after), "after": dict(SUMMARY, median=after)}
    rows = [row("floor", 1.0), row("builtin3", 1.75), row("site", 2.5)]
    (tmp_path / "bench_site.json").write_text(json.dumps(dict(CONTEXT, repeat=3, machines=5, before="abc", after="def",
                                                              rows=rows)))
    block = report.blocks(str(tmp_path))["site"]
    assert "| three builtin module tasks (`command`, `ping`, `stat`) | 1.75 s (1.00-3.00) |" in block
    assert "three module invocations (three builtin module tasks): the floor plus 0.75 s. site.yml's three roles " \
           "cost 0.75 s more than those three tasks" in block


def _converge_row(hosts, count, total, clone=0.5, boot=1.0):
    per_host = {f"h{i}": {"boot_median": boot, "boot_max": boot, "clone_median": clone, "rss_per_container": 2 ** 24,
                          "pss_median": 2 ** 25, "start": 0.1, "boots_done": 1.0} for i in range(hosts)}
    return {"hosts": hosts, "count": count, "clone": 1.0, "write": 0.1, "start": 0.1, "wait": 0.9, "after_boot": 0.5,
            "noop_run": 2.0, "total": total, "per_host": per_host}


def test_converge_block_reports_the_steps_memory_and_the_marginal_target(tmp_path):
    rows = [_converge_row(1, 1, 3.0), _converge_row(1, 11, 13.0)]
    (tmp_path / "bench_converge.json").write_text(json.dumps(dict(CONTEXT, rev="abc", template="/t", rows=rows)))
    block = report.blocks(str(tmp_path))["converge"]
    assert "| 1 | 11 | 1.00 s | 0.10 s | 0.10 s | 0.90 s | +0.50 s | 2.00 s | 13.00 s | 1.18 s | 1.00 s (1.00 s) " \
           "| 0.50 s | 16.0 MiB | 32.0 MiB |" in block
    assert "from 1 to 11: 1.00 s; its own clone (11 machines) plus its own boot (alone): 1.50 s (target: at most " \
           "that: met)" in block
    rows[1]["per_host"]["h0"]["write_span"] = 0.04
    (tmp_path / "bench_converge.json").write_text(json.dumps(dict(CONTEXT, rev="abc", template="/t", rows=rows)))
    assert "| 1 | 11 | 1.00 s | 0.10 s (0.04 s) | 0.10 s |" in report.blocks(str(tmp_path))["converge"]
    rows[1]["total"] = 33.0
    (tmp_path / "bench_converge.json").write_text(json.dumps(dict(CONTEXT, rev="abc", template="/t", rows=rows)))
    assert "(target: at most that: NOT met)" in report.blocks(str(tmp_path))["converge"]


def test_converge_block_compares_a_before_collection_of_the_same_run(tmp_path):
    """--before: the before rows get their own table, per size the ratios, and both marginal lines; the
    clone counted as the host's span over N is given beside one clone's own time."""
    rows = [dict(_converge_row(1, 1, 3.0), rev="new"), dict(_converge_row(1, 11, 13.0), rev="new"),
            dict(_converge_row(1, 1, 3.0), rev="old"), dict(_converge_row(1, 11, 23.0), rev="old")]
    rows[0]["clone"], rows[2]["clone"] = 1.0, 2.0
    for row in rows:
        row["per_host"]["h0"]["clone_span"] = 0.4 * row["count"]
    data = dict(CONTEXT, rev="new", before="old", template="/t", rows=rows)
    block = _block(tmp_path, "bench_converge.json", data, "converge")
    assert "The same steps with collection `old` in the same run:" in block
    assert block.count("| 1 | 11 | 1.00 s |") == 2
    assert "- 1 machines: clone step 2.00 s -> 1.00 s (0.50x), first converge 3.00 s -> 3.00 s (1.00x)." in block
    assert "- 11 machines: clone step 1.00 s -> 1.00 s (1.00x), first converge 23.00 s -> 13.00 s (0.57x)." in block
    assert "- Marginal cost of one more container from 1 to 11: 1.00 s; its own clone (11 machines) plus its own " \
           "boot (alone): 1.50 s (target: at most that: met)." in block
    assert "divided by 11 (clones overlap, so one clone's own time overstates its cost): 1.40 s (met)." in block
    assert "- Before (`old`): marginal cost of one more container from 1 to 11: 2.00 s" in block
    assert "1.40 s (NOT met)." in block


def test_clones_block_gives_both_medians_and_their_ratio(tmp_path):
    rounds = {"count": 10, "runs": {"new": [9.0, 7.0, 8.0], "old": [12.0, 10.0, 11.0]},
              "spans": {"new": [5.0, 4.0, 6.0], "old": [10.0, 9.0, 11.0]}}
    data = dict(CONTEXT, rev="new", before="old", template="/t", rows=[], clone_rounds=rounds)
    block = _block(tmp_path, "bench_converge-clones.json", data, "converge-clones")
    assert "The clone step of 10 machines alone, 3 rounds" in block
    assert "| `old` (before) | 11.00 s (10.00-12.00) | 10.00 s (9.00-11.00) |" in block
    assert "| `new` (after) | 8.00 s (7.00-9.00) | 5.00 s (4.00-6.00) |" in block
    assert "after / before: 0.50x" in block


def test_multihost_block_reports_both_ratios(tmp_path):
    rows = [_converge_row(1, 10, 20.0), _converge_row(3, 10, 30.0)]
    data = dict(CONTEXT, rev="abc", template="/t", hosts=3, rows=rows, site_noop={"1": [2.0, 2.2], "3": [2.4, 2.5]})
    block = _block(tmp_path, "bench_converge-multi.json", data, "multihost")
    assert "3 hosts take 1.50x of one (target at most 1.3x: NOT met). All 3 test hosts share this machine's " in block
    assert "cannot show what separate machines would do" in block
    assert "one host 2.10 s, 3 hosts 2.45 s: 1.17x (target at most 1.3x: met)" in block


def test_site_block_shows_the_task_breakdown_of_both_sides(tmp_path):
    rows = [{"play": p, "before": SUMMARY, "after": SUMMARY} for p in ("floor", "host", "site")]
    tasks = {"before": {"wall": 5.0, "tasks": [["a", 1.0], ["b", 0.5], ["b", 0.25]]},
             "after": {"wall": 4.0, "tasks": [["a", 0.75], ["c | d", 0.5]]}}
    data = dict(CONTEXT, machines=5, repeat=3, before="b1", after="a1", rows=rows, tasks=tasks)
    block = _block(tmp_path, "bench_site.json", data, "site")
    assert "| a | 1.00 s | 0.75 s |" in block
    assert "| b | 0.75 s | - |" in block
    assert "| c / d | - | 0.50 s |" in block
    assert "| all tasks (the whole run) | 1.75 s (5.00 s) | 1.25 s (4.00 s) |" in block
