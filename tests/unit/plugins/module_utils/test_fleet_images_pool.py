# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet's image step applies the roots' plans through a bounded pool (issue 15: first converge at scale).

``images_io.apply_one`` is replaced by a recorder, so these tests see only the order and the overlap
of the calls, the results and the failures: clones overlap up to the bound, never before their template
is ready, a build from another source runs alone, and a failure is reported as a sequential run would.
"""

import threading

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import fleet_io, images, images_io, images_setup_io
from ansible_collections.corral.nspawn.plugins.module_utils.fleet import FleetError

from ansible_collections.corral.nspawn.tests.unit.fakes import FakeModule

TIMEOUT = 10   # seconds a blocked fake waits before it fails the test (never reached when the code is right)


def item(name, action="create", source="clone", clone_from="tmpl"):
    return images.ItemPlan(params={"name": name, "source": source, "clone_from": clone_from}, action=action)


def plans(*items):
    return {i.params["name"]: i for i in items}


class Recorder:
    """Stands in for images_io.apply_one: records starts and ends, runs a per-name behaviour."""

    def __init__(self, behaviour=None):
        self.lock = threading.Lock()
        self.events, self.active, self.most = [], 0, 0
        self.behaviour = behaviour or {}

    def __call__(self, module, todo):  # pylint: disable=unused-argument
        name = todo.params["name"]
        with self.lock:
            self.events.append(("start", name))
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            self.behaviour.get(name, lambda: None)()
            return {"timings": {}, "setup_words": [], "warnings": [], "name": name}
        finally:
            with self.lock:
                self.active -= 1
                self.events.append(("end", name))

    def started(self):
        return [n for kind, n in self.events if kind == "start"]

    def index(self, kind, name):
        return self.events.index((kind, name))


def run(monkeypatch, todo, workers, recorder, check_mode=False, confine=frozenset()):
    monkeypatch.setattr(images_io, "apply_one", recorder)
    ctx = fleet_io.Context(FakeModule(check_mode=check_mode), "/m", "/s", "/u", check_mode, "on_change")
    return fleet_io.apply_images(ctx, todo, workers, confine)


def test_clones_overlap_up_to_the_bound_and_results_keep_item_order(monkeypatch):
    both = threading.Barrier(2, timeout=TIMEOUT)   # breaks (and fails the run) unless two clones run at once
    names = [f"m{i}" for i in range(6)]
    recorder = Recorder({n: both.wait for n in names})
    out = run(monkeypatch, plans(item("tmpl", source="directory", clone_from=None), *map(item, names)), 2, recorder)
    assert list(out) == ["tmpl"] + names
    assert [o["name"] for o in out.values()] == ["tmpl"] + names
    assert recorder.most == 2
    assert recorder.started() == ["tmpl"] + names


def test_no_clone_starts_before_its_template_is_done(monkeypatch):
    recorder = Recorder()
    todo = plans(item("tmpl", source="directory", clone_from=None), item("child", clone_from="tmpl"),
                 item("m0"), item("m1", clone_from="child"), item("m2"))
    run(monkeypatch, todo, 4, recorder)
    assert recorder.index("end", "tmpl") < min(recorder.index("start", n) for n in ("child", "m0", "m1", "m2"))
    assert recorder.index("end", "child") < recorder.index("start", "m1")


def test_a_build_from_another_source_runs_alone(monkeypatch):
    """A debootstrap (or any non-clone build) neither overlaps what came before it nor what follows."""
    recorder = Recorder()
    todo = plans(item("m0"), item("m1"), item("boot", source="debootstrap", clone_from=None), item("m2"), item("m3"))
    run(monkeypatch, todo, 4, recorder)
    start, end = recorder.index("start", "boot"), recorder.index("end", "boot")
    assert end == start + 1
    assert {n for kind, n in recorder.events[:start] if kind == "end"} == {"m0", "m1"}


def test_after_a_failure_no_item_starts_and_the_started_ones_finish(monkeypatch):
    failed = threading.Event()

    def fail():
        failed.set()
        raise images.ImageError("cp: no space left on device")

    def slow():   # still running when m1 fails; finishes after
        assert failed.wait(TIMEOUT)

    recorder = Recorder({"m0": slow, "m1": fail})
    todo = plans(item("tmpl", source="directory", clone_from=None), *map(item, ["m0", "m1", "m2", "m3"]))
    with pytest.raises(FleetError, match=r"^image m1: cp: no space left on device$"):
        run(monkeypatch, todo, 2, recorder)
    assert recorder.started() == ["tmpl", "m0", "m1"]
    assert ("end", "m0") in recorder.events


def test_the_first_failure_in_item_order_is_reported(monkeypatch):
    """m1 fails first in time, m0 later: the error is m0's, as a run one after another would report."""
    m1_failed = threading.Event()

    def late():
        assert m1_failed.wait(TIMEOUT)
        raise images.ImageError("late failure")

    def early():
        m1_failed.set()
        raise images.ImageError("early failure")

    recorder = Recorder({"m0": late, "m1": early})
    with pytest.raises(FleetError, match=r"^image m0: late failure$"):
        run(monkeypatch, plans(item("m0"), item("m1"), item("m2")), 2, recorder)
    assert "m2" not in recorder.started()


def test_an_unexpected_error_names_the_machine(monkeypatch):
    def broken():
        raise OSError(28, "No space left on device")

    with pytest.raises(FleetError, match=r"^machines\[m0\]: image: unexpected OSError: .*No space left"):
        run(monkeypatch, plans(item("m0"), item("m1")), 2, Recorder({"m0": broken}))


def refuses():
    raise images_setup_io.RootRefused("refusing to read /m/m0/etc/hostname: it is a directory", "/m/m0")


def test_a_machine_whose_root_refuses_is_its_own_outcome_and_the_others_go_on(monkeypatch):
    recorder = Recorder({"m0": refuses})
    names = frozenset({"m0", "m1", "m2"})
    out = run(monkeypatch, plans(item("m0"), item("m1"), item("m2")), 1, recorder, confine=names)
    assert out["m0"] == {"refused": "refusing to read /m/m0/etc/hostname: it is a directory"}
    assert recorder.started() == ["m0", "m1", "m2"] and out["m2"]["name"] == "m2"


def test_a_template_whose_root_refuses_fails_the_run(monkeypatch):
    recorder = Recorder({"tmpl": refuses})
    with pytest.raises(FleetError, match=r"^image tmpl: refusing to read /m/m0/etc/hostname"):
        run(monkeypatch, plans(item("tmpl", source="directory", clone_from=None), item("m1")), 1, recorder,
            confine=frozenset({"m1"}))
    assert recorder.started() == ["tmpl"]


def test_one_worker_runs_them_one_after_another(monkeypatch):
    recorder = Recorder()
    run(monkeypatch, plans(*map(item, ["m0", "m1", "m2"])), 1, recorder)
    assert recorder.events == [(k, n) for n in ("m0", "m1", "m2") for k in ("start", "end")]


def test_check_mode_applies_nothing(monkeypatch, tmp_path):
    recorder = Recorder()
    monkeypatch.setattr(images_io, "apply_one", recorder)
    ctx = fleet_io.Context(FakeModule(check_mode=True), str(tmp_path / "m"), str(tmp_path / "s"),
                           str(tmp_path / "u"), True, "on_change")
    items = [{"name": "tmpl", "source": "directory", "path": str(tmp_path / "src"), "state": "present",
              "machines_dir": str(tmp_path / "m")}]
    (tmp_path / "src").mkdir()
    out = fleet_io.images_step(ctx, items)
    assert out["tmpl"]["changed"] is True
    assert recorder.events == []


@pytest.mark.parametrize("cpus, workers", [(1, 1), (2, 2), (3, 3), (64, fleet_io.IMAGE_WORKERS)])
def test_the_bound_follows_the_cpus_the_module_may_use(monkeypatch, cpus, workers):
    monkeypatch.setattr(fleet_io.os, "sched_getaffinity", lambda pid: set(range(cpus)))
    assert fleet_io.image_workers() == workers
