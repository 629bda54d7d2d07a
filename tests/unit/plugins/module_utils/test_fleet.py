# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the fleet planner: merging, validation, per-machine plans, batching."""

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from ansible_collections.corral.nspawn.tests.unit import fakes
from ansible_collections.corral.nspawn.plugins.module_utils import fleet, fleet_io, fleet_plan, images_io, machine as machine_utils, machine_io
from ansible_collections.corral.nspawn.plugins.module_utils import resources
from ansible_collections.corral.nspawn.plugins.module_utils.files import ensure_file, plan_file, read_text


# ---------------------------------------------------------------- merging and validation

def test_deep_merge_recurses_into_dicts_replaces_lists_and_inherits_none():
    base = {"resources": {"memory_max": "512M", "cpu_quota": "50%"}, "settings": {"bind": ["/a"]}, "zone": "z"}
    over = {"resources": {"memory_max": "1G"}, "settings": {"bind": ["/b"]}, "zone": None}
    merged = fleet.deep_merge(base, over)
    assert merged == {"resources": {"memory_max": "1G", "cpu_quota": "50%"}, "settings": {"bind": ["/b"]},
                      "zone": "z"}
    assert base["resources"]["memory_max"] == "512M"  # inputs are not mutated


def test_machine_overrides_defaults_which_override_builtin_defaults():
    machine = fleet.merge_machine({"state": "stopped", "resources": {"tasks_max": 10}},
                                  {"name": "web", "resources": {"memory_max": "1G"}, "enabled": False})
    assert (machine.state, machine.enabled) == ("stopped", False)
    assert machine.resources == {"tasks_max": 10, "memory_max": "1G"}
    assert fleet.merge_machine({}, {"name": "x"}).state == "running"


@pytest.mark.parametrize("items, defaults, templates, message", [
    ([{"name": "a"}, {"name": "a"}], {}, [], "'a' is declared twice"),
    ([{"name": "bad name"}], {}, [], "machines[].name: 'bad name' is not a valid machine name"),
    ([{"name": "a", "template": "nope"}], {}, [{"name": "t"}], "machines[a].template: 'nope' is not in templates (declared: t)"),
    ([{"name": "a", "template": "t", "image": {"source": "tar"}}], {}, [{"name": "t"}], "either template or image.source"),
    ([{"name": "a", "zone": "z", "bridge": "br0"}], {}, [], "zone and bridge are given in the same layer"),
    ([{"name": "a", "zone": "much-too-long-zone"}], {}, [], "machines[a].zone:"),
    ([{"name": "a", "bridge": "x" * 16}], {}, [], "machines[a].bridge:"),
    ([{"name": "a", "gateway": "10.0.0.1"}], {}, [], "gateway: needs address"),
    ([{"name": "a", "state": "sleeping"}], {}, [], "state: 'sleeping' is not one of running, stopped, present"),
    ([{"name": "a", "restart": "sometimes"}], {}, [], "restart: 'sometimes' is not one of"),
    ([{"name": "a", "settings": ["x"]}], {}, [], "settings: must be a dictionary"),
    ([{"name": "a", "colour": "red"}], {}, [], "unknown key(s) colour"),
    ([{"name": "a"}], {"name": "b"}, [], "'name' cannot have a default"),
    ([{"name": "a"}], {"memory": "1G"}, [], "defaults: unknown key(s) memory"),
    ([{"name": "t"}], {}, [{"name": "t"}], "'t' is also a template name"),
    ([{"name": "a"}], {}, [{"name": "bad/tmpl"}], "templates[0].name"),
])
def test_invalid_fleets_fail_with_option_value_and_allowed_form(items, defaults, templates, message):
    with pytest.raises(fleet.FleetError) as info:
        fleet.desired_machines(items, defaults, templates)
    assert message in str(info.value)


def test_all_problems_are_reported_at_once():
    with pytest.raises(fleet.FleetError) as info:
        fleet.desired_machines([{"name": "a", "state": "x"}, {"name": "b", "zone": "z", "bridge": "b"}], {}, [])
    assert len(info.value.details["errors"]) == 2


def test_machine_spec_matches_machine_keys():
    assert set(fleet.machine_spec()) == set(fleet.MACHINE_KEYS)
    assert all("default" not in spec for spec in fleet.machine_spec().values())  # unset keys must inherit


# ---------------------------------------------------------------- state reading helpers

def test_fleet_settings_carry_the_fleet_header(tmp_path):
    ctx = fleet_io.Context(None, str(tmp_path), str(tmp_path), str(tmp_path), False, "on_change")
    text, warnings = fleet_io.render_settings(ctx, fleet.Machine("web", zone="apps", settings={"boot": True}),
                                              "machines[web]")
    assert text.startswith(fleet.FLEET_HEADER) and text.count("Managed by corral.nspawn") == 1
    assert "[Exec]\nBoot=yes\n" in text and "[Network]\nZone=apps\n" in text and warnings == []
    assert fleet_plan.is_fleet_managed(text)
    assert not fleet_plan.is_fleet_managed("# Managed by corral.nspawn. Do not edit.\n[Exec]\n")
    assert not fleet_plan.is_fleet_managed(None)


@pytest.mark.parametrize("machine, message", [
    (fleet.Machine("a", settings={"bot": True}), "machines[a].settings: bot: unknown option; did you mean boot?"),
    (fleet.Machine("a", zone="z1", settings={"zone": "z2"}), "zone='z1' and settings.zone='z2' disagree"),
    (fleet.Machine("a", resources={"memory_max": "lots"}), "machines[a].resources.memory_max: invalid value"),
])
def test_settings_and_resources_are_validated_by_their_own_logic(tmp_path, machine, message):
    ctx = fleet_io.Context(None, str(tmp_path), str(tmp_path), str(tmp_path), False, "on_change")
    with pytest.raises(fleet.FleetError) as info:
        fleet_io.render_all(ctx, [machine])
    assert message in str(info.value)


def test_settings_file_next_to_the_image_is_warned_about(tmp_path):
    ctx = fleet_io.Context(None, str(tmp_path), str(tmp_path / "etc"), str(tmp_path), False, "on_change")
    (tmp_path / "web.nspawn").write_text("[Network]\nPrivate=no\n")
    _text, warnings = fleet_io.render_settings(ctx, fleet.Machine("web"), "machines[web]")
    assert "web.nspawn exists next to the image" in warnings[0]


def test_managed_machines_lists_only_fleet_files(tmp_path):
    (tmp_path / "ours.nspawn").write_text(fleet.FLEET_HEADER + "[Exec]\n")
    (tmp_path / "single.nspawn").write_text("# Managed by corral.nspawn. Do not edit.\n[Exec]\n")
    (tmp_path / "hand.nspawn").write_text("[Exec]\nBoot=yes\n")
    (tmp_path / "notes.txt").write_text(fleet.FLEET_HEADER)
    assert fleet_io.managed_machines(str(tmp_path)) == ["ours"]
    assert fleet_io.managed_machines(str(tmp_path / "missing")) == []


# ---------------------------------------------------------------- per-machine plan

def _files(settings_changed=False, dropin_changed=False):
    settings = plan_file("/s", "old" if settings_changed else "same", "same")
    dropin = plan_file("/d", "old" if dropin_changed else "same", "same")
    return settings, dropin


RUNNING = fleet_plan.Current(root_exists=True, active="active", enabled=True)
STOPPED = fleet_plan.Current(root_exists=True, active="inactive", enabled=True)


@pytest.mark.parametrize("state, current, settings_changed, policy, runtime, pending", [
    ("running", RUNNING, False, "on_change", "none", False),       # converged: nothing
    ("running", RUNNING, True, "on_change", "restart", False),     # settings change restarts
    ("running", RUNNING, True, "never", "none", True),             # ... or waits for a restart
    ("running", RUNNING, False, "always", "restart", False),       # always restarts
    ("running", STOPPED, True, "on_change", "start", False),       # a start picks the change up
    ("running", STOPPED, False, "never", "start", False),
    ("stopped", RUNNING, False, "on_change", "stop", False),
    ("stopped", STOPPED, True, "on_change", "none", False),        # stopped: config only
    ("present", RUNNING, True, "never", "none", True),
    ("present", STOPPED, False, "always", "none", False),          # present never starts
])
def test_runtime_plan(state, current, settings_changed, policy, runtime, pending):
    machine = fleet.Machine("m", state=state, enabled=True)
    plan = fleet_plan.plan_machine(machine, current, *_files(settings_changed), None, policy)
    assert (plan.runtime, plan.pending_restart) == (runtime, pending)
    assert plan.changed is bool(settings_changed or runtime != "none")


def test_resource_change_is_applied_live_without_restart():
    machine = fleet.Machine("m")
    live = resources.plan_live({"MemoryMax": "1G"}, {"MemoryMax": "512M"}, {"MemoryMax": str(512 * 1024 ** 2)})
    plan = fleet_plan.plan_machine(machine, RUNNING, *_files(dropin_changed=True), None, "on_change", live=live)
    assert plan.live.assignments == ["MemoryMax=1G"] and plan.runtime == "none" and not plan.pending_restart
    assert plan.changes == ["resources: update /d"]


def test_live_drift_without_file_change_is_repaired_and_reported():
    live = resources.plan_live({"MemoryMax": "1G"}, {"MemoryMax": "1G"}, {"MemoryMax": "infinity"})
    plan = fleet_plan.plan_machine(fleet.Machine("m"), RUNNING, *_files(), None, "on_change", live=live)
    assert plan.live.assignments == ["MemoryMax=1G"]
    assert plan.changes == ["resources live: MemoryMax: infinity -> 1G"]


def test_limit_that_only_applies_at_start_needs_a_restart():
    live = resources.plan_live({"DeviceAllow": ["/dev/fuse rwm"]}, {}, {})
    plan = fleet_plan.plan_machine(fleet.Machine("m"), RUNNING, *_files(dropin_changed=True), None, "never", live=live)
    assert plan.pending_restart and plan.live is None


def test_settings_change_that_needs_no_restart_does_not_restart():
    plan = fleet_plan.plan_machine(fleet.Machine("m"), RUNNING, *_files(settings_changed=True), None, "on_change",
                                   settings_restart=False)
    assert plan.runtime == "none" and not plan.pending_restart and plan.changed


@pytest.mark.parametrize("enabled, current_enabled, expected", [
    (True, False, True), (False, True, False), (True, True, None),
])
def test_enablement(enabled, current_enabled, expected):
    current = fleet_plan.Current(root_exists=True, active="active", enabled=current_enabled)
    plan = fleet_plan.plan_machine(fleet.Machine("m", enabled=enabled), current, *_files(), None, "on_change")
    assert plan.enable is expected


def test_new_image_starts_but_prepared_image_restarts():
    created = {"changed": True, "created": True, "changes": ["image: clone of t"]}
    plan = fleet_plan.plan_machine(fleet.Machine("m"), fleet_plan.Current(), *_files(), created, "on_change")
    assert plan.runtime == "start" and plan.changes == ["image: clone of t", "enable", "start"]
    prepared = {"changed": True, "created": False, "changes": ["image: host0 address"]}
    plan = fleet_plan.plan_machine(fleet.Machine("m"), RUNNING, *_files(), prepared, "on_change")
    assert plan.runtime == "restart"


def test_plan_prune_only_undeclared_sorted():
    expected = [{"name": "a", "purge": True}, {"name": "c", "purge": True}]
    assert fleet_plan.plan_prune(["c", "a", "b"], ["b"], purge=True) == expected


def test_machine_diff_shows_runtime_before_after():
    plan = fleet_plan.plan_machine(fleet.Machine("m"), STOPPED, *_files(settings_changed=True), None, "on_change")
    diffs = fleet_plan.machine_diff(plan, STOPPED)
    assert diffs[0]["before_header"] == "/s"
    assert diffs[-1]["before"] == "root: present\nenabled: True\nstate: stopped\n"
    assert diffs[-1]["after"] == "root: present\nenabled: True\nstate: running\n"


# ---------------------------------------------------------------- orchestration with a fake host

systemd_target = "machines.target"


class FakeHost:
    """systemctl state of a host, driven by the argv lists the fleet runs.

    A started unit takes its MemoryMax from the drop-in on disk, set-property
    --runtime changes it live; ``show`` reports it in bytes like systemd.
    """

    def __init__(self, units_dir=None):
        self.active, self.enabled, self.calls, self.memory = {}, set(), [], {}
        self.units_dir = units_dir
        self.since = None  # ActiveEnterTimestamp (unix seconds) reported for active units; None: now
        self.leases = True  # running machines list addresses (False: their DHCP never answers)
        self.target_enabled = True  # machines.target

    def _memory_from_dropin(self, name):
        text = read_text(resources.dropin_path(name, self.units_dir)) if self.units_dir else None
        value = resources.parse_dropin(text).get("MemoryMax")
        return str(resources.parse_size(value)) if value else "infinity"

    def run_command(self, argv, **_kw):
        self.calls.append(list(argv))
        if os.path.basename(argv[0]) == "machinectl" and argv[-1] == "list":
            # running machines with the addresses their DHCP lease and router advertisement gave them
            # (without them, every start of a DHCP-attached machine waited out the 20 s lease timeout)
            rows = [{"machine": n, "class": "container", "service": "systemd-nspawn",
                     "addresses": f"10.0.0.{i + 2}\nfd00::{i + 2}" if self.leases else None}
                    for i, n in enumerate(sorted(n for n, up in self.active.items() if up))]
            return 0, json.dumps(rows), ""
        if argv[1] == "--machine":  # the container's own systemd
            return (0, "running\n", "") if self.active.get(argv[2]) else (1, "", "Failed to connect to bus")
        verb, units = argv[1], [a for a in argv[2:] if a.startswith("systemd-nspawn@")]
        names = [u[len("systemd-nspawn@"):-len(".service")] for u in units]
        if verb == "show":
            out = "".join(f"Id={u}\nActiveState={'active' if self.active.get(n) else 'inactive'}\n"
                          f"UnitFileState={'enabled' if n in self.enabled else 'disabled'}\n"
                          f"MemoryMax={self.memory.get(n, 'infinity')}\n"
                          f"ActiveEnterTimestamp=@{self.since or int(time.time()) + 5}\n\n"
                          for u, n in zip(units, names))
            if systemd_target in argv:
                out += f"Id={systemd_target}\nUnitFileState={'enabled' if self.target_enabled else 'disabled'}\n\n"
            return 0, out, ""
        if verb == "set-property":
            name = argv[3][len("systemd-nspawn@"):-len(".service")]
            for assignment in argv[4:]:
                key, _sep, value = assignment.partition("=")
                if key == "MemoryMax":
                    self.memory[name] = str(resources.parse_size(value)) if value != "infinity" else value
            return 0, "", ""
        for name in names:
            if verb in ("start", "restart"):
                self.active[name] = True
                self.since = None
                self.memory[name] = self._memory_from_dropin(name)
            elif verb == "stop":
                self.active[name] = False
            elif verb == "enable":
                self.enabled.add(name)
                self.target_enabled = self.target_enabled or systemd_target in argv
            elif verb == "disable":
                self.enabled.discard(name)
        return 0, "", ""


class FakeModule(fakes.FakeModule):
    """The shared fake module; systemctl and machinectl are answered by the FakeHost."""

    def __init__(self, host, params, check_mode=False, diff=False):
        super().__init__(params, check_mode, diff)
        self.host = host

    def run_command(self, argv, **kw):
        super().run_command(argv, **kw)   # records the call, checks it is an argv list without expansion
        return self.host.run_command(argv, **kw)


@pytest.fixture
def fake_images(monkeypatch, tmp_path):
    """Stand-ins for the single-purpose modules' logic: settings/resources render plain INI."""
    def ensure_image(ctx, options):
        root = ctx.root(options["name"])
        if os.path.isdir(root):
            return {"changed": False, "created": False, "changes": []}
        if not ctx.check_mode:
            os.makedirs(root)
        return {"changed": True, "created": True,
                "changes": [f"image: clone of {options.get('clone_from', options.get('path'))}"]}

    def purge_built(module, machines_dir, name):
        if not module.check_mode:
            os.rmdir(os.path.join(machines_dir, name))
        return {"kept": None, "path": os.path.join(machines_dir, name)}

    live = []
    monkeypatch.setattr(fleet_io, "images_step", lambda ctx, items: {i["name"]: ensure_image(ctx, i) for i in items})
    monkeypatch.setattr(images_io, "purge_built", purge_built)
    return live


def _params(tmp_path, machines, **extra):
    params = dict(machines=machines, defaults={"template": "tmpl", "resources": {"memory_max": "512M"}},
                  templates=[{"name": "tmpl", "source": "directory", "path": "/src"}], prune=False, purge=False,
                  restart="on_change", wait=True, timeout=10, machines_dir=str(tmp_path / "machines"),
                  settings_dir=str(tmp_path / "nspawn"), units_dir=str(tmp_path / "system"))
    params.update(extra)
    return params


def _snapshot(root):
    return sorted((str(p), p.read_text() if p.is_file() else None) for p in root.rglob("*"))


@pytest.mark.parametrize("extra, msg", [
    ({"timeout": 0}, "invalid fleet: timeout: 0 is not allowed; give a whole number of seconds, at least 1"),
    ({"units_dir": "system"}, "invalid fleet: units_dir: 'system' is not allowed; give an absolute directory path "
                              "(default /etc/systemd/system)"),
    ({"machines_dir": "m", "settings_dir": ""}, "invalid fleet: machines_dir: 'm' is not allowed; give an absolute "
     "directory path (default /var/lib/machines); settings_dir: '' is not allowed; give an absolute directory path "
     "(default /etc/systemd/nspawn)"),
])
def test_bad_shared_options_fail_before_any_change(tmp_path, fake_images, extra, msg):
    """issue 13: the shared options are checked as in every other module, before anything is read or written."""
    host = FakeHost(str(tmp_path / "system"))
    with pytest.raises(fleet.FleetError) as info:
        fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [{"name": "web"}], **extra)))
    assert str(info.value) == msg and list(tmp_path.iterdir()) == [] and host.calls == []


def test_check_apply_check_apply_rhythm(tmp_path, fake_images):
    host = FakeHost(str(tmp_path / "system"))
    machines = [{"name": n} for n in ("web", "app", "db")]
    (tmp_path / "machines").mkdir()
    changed = []
    for check in (True, False, True, False):
        before = _snapshot(tmp_path)
        result = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, machines), check_mode=check))
        changed.append(result["changed"])
        if check:
            assert _snapshot(tmp_path) == before, "check mode wrote something"
    assert changed == [True, True, False, False]
    assert all(host.active[n] for n in ("web", "app", "db")) and host.enabled == {"web", "app", "db"}


def test_machines_are_read_enabled_and_started_in_one_call_each(tmp_path, fake_images):
    host = FakeHost(str(tmp_path / "system"))
    (tmp_path / "machines").mkdir()
    fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [{"name": f"m{i}"} for i in range(20)])))
    verbs = [c[1] for c in host.calls]
    assert verbs.count("show") == 1 and verbs.count("enable") == 1 and verbs.count("start") == 1
    assert verbs.count("daemon-reload") == 1
    assert len(host.calls[verbs.index("start")]) == 2 + 20  # every machine in the one start call
    host.calls.clear()
    result = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [{"name": f"m{i}"} for i in range(20)])))
    # a no-op run is one show, plus one machinectl list for the addresses in the result
    assert not result["changed"] and [c[:2] for c in host.calls] == [["systemctl", "show"], ["machinectl", "--no-pager"]]


def test_limit_change_touches_only_that_machine_live(tmp_path, fake_images):
    host = FakeHost(str(tmp_path / "system"))
    (tmp_path / "machines").mkdir()
    machines = [{"name": "web"}, {"name": "db"}]
    fleet_io.run_fleet(FakeModule(host, _params(tmp_path, machines)))
    machines[1]["resources"] = {"memory_max": "1G"}
    result = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, machines)))
    assert not result["machines"]["web"]["changed"]
    assert result["machines"]["db"]["changes"] == [
        f"resources: update {tmp_path}/system/systemd-nspawn@db.service.d/50-corral-resources.conf"]
    assert [c[3:] for c in host.calls if c[1] == "set-property"] == [["systemd-nspawn@db.service", "MemoryMax=1G"]]
    assert "restart" not in [c[1] for c in host.calls] and host.memory["db"] == str(1024 ** 3)


def test_restart_never_reports_pending_restart(tmp_path, fake_images):
    host = FakeHost(str(tmp_path / "system"))
    (tmp_path / "machines").mkdir()
    fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [{"name": "web"}])))
    result = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [{"name": "web", "settings": {"boot": True}}],
                                                         restart="never")))
    assert result["pending_restart"] == ["web"] and result["machines"]["web"]["pending_restart"]
    assert "restart" not in [c[1] for c in host.calls[-3:]]


def test_prune_removes_only_undeclared_fleet_machines_and_keeps_roots(tmp_path, fake_images):
    host = FakeHost(str(tmp_path / "system"))
    (tmp_path / "machines").mkdir()
    fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [{"name": "web"}, {"name": "old"}])))
    (tmp_path / "nspawn" / "hand.nspawn").write_text("[Exec]\nBoot=yes\n")
    check = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [{"name": "web"}], prune=True), check_mode=True))
    assert check["pruned"] == ["old"] and (tmp_path / "nspawn" / "old.nspawn").exists()
    result = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [{"name": "web"}], prune=True)))
    assert result["pruned"] == ["old"] and result["changed"]
    assert not (tmp_path / "nspawn" / "old.nspawn").exists()
    assert not (tmp_path / "system" / "systemd-nspawn@old.service.d").exists()
    assert (tmp_path / "nspawn" / "hand.nspawn").exists() and (tmp_path / "machines" / "old").is_dir()
    assert not host.active["old"] and "old" not in host.enabled and host.active["web"]
    again = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [{"name": "web"}], prune=True)))
    assert again["pruned"] == [] and not again["changed"]


def test_purge_removes_the_root_too(tmp_path, fake_images):
    host = FakeHost(str(tmp_path / "system"))
    (tmp_path / "machines").mkdir()
    fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [{"name": "web"}, {"name": "old"}])))
    fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [{"name": "web"}], prune=True, purge=True)))
    assert not (tmp_path / "machines" / "old").exists() and (tmp_path / "machines" / "web").is_dir()


def test_bad_input_changes_nothing(tmp_path, fake_images):
    host = FakeHost(str(tmp_path / "system"))
    (tmp_path / "machines").mkdir()
    with pytest.raises(fleet.FleetError, match="declared twice"):
        fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [{"name": "web"}, {"name": "web"}])))
    assert host.calls == [] and not (tmp_path / "nspawn").exists()


def test_running_machine_without_root_or_source_is_refused(tmp_path, fake_images):
    host = FakeHost(str(tmp_path / "system"))
    (tmp_path / "machines").mkdir()
    params = _params(tmp_path, [{"name": "bare"}], defaults={})
    with pytest.raises(fleet.FleetError, match="neither template nor image.source"):
        fleet_io.run_fleet(FakeModule(host, params))
    bare = [{"name": "bare", "state": "stopped", "enabled": False}]
    stopped = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, bare, defaults={})))
    assert stopped["machines"]["bare"]["changes"] == [f"settings: create {tmp_path}/nspawn/bare.nspawn"]


def test_failed_start_names_every_failed_machine(tmp_path, fake_images, monkeypatch):
    host = FakeHost(str(tmp_path / "system"))
    (tmp_path / "machines").mkdir()
    monkeypatch.setattr(machine_io, "start_many", lambda m, names, timeout, how=None: {
        n: machine_utils.WaitResult(n, n == "ok", msg=f"{n} timed out") for n in names})
    with pytest.raises(fleet.FleetError) as info:
        fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [{"name": "ok"}, {"name": "b1"}, {"name": "b2"}])))
    assert "b1: b1 timed out" in str(info.value) and "b2: b2 timed out" in str(info.value)
    assert "ok:" not in str(info.value)


def test_diff_lists_files_and_runtime_per_machine(tmp_path, fake_images):
    host = FakeHost(str(tmp_path / "system"))
    (tmp_path / "machines").mkdir()
    result = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [{"name": "web"}]), check_mode=True, diff=True))
    headers = [d["after_header"] for d in result["diff"]]
    assert f"{tmp_path}/nspawn/web.nspawn" in headers and "machine web" in headers


@pytest.mark.parametrize("policy, runtime, pending, changed", [
    ("never", "none", True, False),        # still pending on the next run, nothing to change
    ("on_change", "restart", False, True),  # the next on_change run applies it
])
def test_pending_restart_survives_the_run_that_caused_it(policy, runtime, pending, changed):
    stale = fleet_plan.Current(root_exists=True, active="active", enabled=True, stale=True)
    plan = fleet_plan.plan_machine(fleet.Machine("m"), stale, *_files(), None, policy)
    assert (plan.runtime, plan.pending_restart, plan.changed) == (runtime, pending, changed)


def test_restart_never_is_still_reported_on_the_following_run(tmp_path, fake_images):
    host = FakeHost(str(tmp_path / "system"))
    (tmp_path / "machines").mkdir()
    fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [{"name": "web"}])))
    host.since = 1  # the container started long before the settings below are written
    machines = [{"name": "web", "settings": {"boot": True}}]
    first = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, machines, restart="never")))
    second = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, machines, restart="never")))
    assert first["pending_restart"] == second["pending_restart"] == ["web"] and not second["changed"]
    third = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, machines)))
    assert third["machines"]["web"]["changes"] == ["restart"]


@pytest.mark.parametrize("machine, templates, message", [
    ({"name": "a", "image": {"source": "debootstrap"}}, [], "machines[a].image: "),
    ({"name": "a", "image": {"source": "clone", "clone_from": "a"}}, [], "cannot be cloned from itself"),
    ({"name": "a", "image": {"colour": "red"}}, [], "machines[a].image: unknown option(s) colour"),
    ({"name": "a", "template": "t"}, [{"name": "t", "source": "tar"}], "templates[t]: "),
    ({"name": "a", "template": "t"}, [{"name": "t"}], "templates[t].source: required"),
])
def test_image_options_are_validated_by_the_image_logic_before_any_change(tmp_path, machine, templates, message):
    host = FakeHost()
    params = _params(tmp_path, [machine], defaults={}, templates=templates)
    with pytest.raises(fleet.FleetError) as info:
        fleet_io.run_fleet(FakeModule(host, params))
    assert message in str(info.value)
    assert host.calls == [] and not (tmp_path / "nspawn").exists()


def test_summary_has_one_line_per_changed_machine(tmp_path, fake_images):
    host = FakeHost(str(tmp_path / "system"))
    (tmp_path / "machines").mkdir()
    fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [{"name": "web"}, {"name": "db"}])))
    result = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [{"name": "web"}, {"name": "db", "enabled": False}])))
    assert result["summary"] == ["db: disable"]


def test_secrets_are_machine_options_not_image_keys():
    with pytest.raises(fleet.FleetError, match=r"machines\[a\].image.root_password: give it as machines\[\].root_password"):
        fleet.desired_machines([{"name": "a", "image": {"root_password": "x"}}], {}, [])
    assert fleet.machine_spec()["root_password"]["no_log"] and fleet.defaults_spec()["root_password_hash"]["no_log"]
    machine = fleet.merge_machine({"root_password_hash": "$6$h"}, {"name": "a", "template": "t"})
    options = fleet.image_options_for(machine)
    assert options["root_password_hash"] == "$6$h" and options["clone_from"] == "t"


def test_templates_refuse_secrets(tmp_path):
    ctx = fleet_io.Context(None, str(tmp_path), str(tmp_path), str(tmp_path), False, "on_change")
    with pytest.raises(fleet.FleetError, match="templates are never booted"):
        fleet.validate_template(ctx, {"name": "t", "source": "directory", "path": "/x", "root_password": "y"})


# ---------------------------------------------------------------- command count of a no-op run, real adapters

class RealAdaptersModule(FakeModule):
    """The fleet with the REAL image logic: copies and ``systemctl --root`` run for real on the
    controller (they only touch the temp dir); the host's service manager is the FakeHost."""

    def __init__(self, host, params, check_mode=False):
        super().__init__(host, params, check_mode)
        self.commands = []

    def get_bin_path(self, name, required=False):  # pylint: disable=unused-argument
        return shutil.which(name)

    def run_command(self, argv, **kw):
        self.commands.append(list(argv))
        if os.path.basename(argv[0]) != "systemctl" or any(a.startswith("--root=") for a in argv):
            proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  input=kw.get("data"))
            return proc.returncode, proc.stdout, proc.stderr
        return self.host.run_command(argv, **kw)


def _template_root(path):
    for rel in ("etc/systemd/system", "usr/lib/systemd/system", "root", "var/lib/systemd"):
        os.makedirs(os.path.join(path, rel))
    files = {"etc/hostname": "template\n", "etc/machine-id": "",
             "etc/shadow": "root:*:19000:0:99999:7:::\n",
             "usr/lib/systemd/system/systemd-networkd.service":
                 "[Unit]\nDescription=networkd\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"}
    for rel, text in files.items():
        with open(os.path.join(path, rel), "w", encoding="utf-8") as handle:
            handle.write(text)


@pytest.mark.parametrize("count", [1, 10, 50])
def test_noop_run_command_count_is_constant_with_real_adapters(tmp_path, count):
    """Regression: with the real image step a no-op run issued one ``systemctl --root is-enabled``
    and one ``is-active`` per machine (4, 22, 102 commands for 1, 10, 50 machines)."""
    if not shutil.which("systemctl") or not shutil.which("cp"):
        pytest.fail("systemctl and cp are needed on the controller for this test (apt-get install systemd coreutils)")
    _template_root(str(tmp_path / "src"))
    host = FakeHost(str(tmp_path / "system"))
    machines = [{"name": f"m{i}", "address": f"10.9.{i // 200}.{i % 200 + 2}/16"} for i in range(count)]
    params = _params(tmp_path, machines, templates=[{"name": "tmpl", "source": "directory", "path": str(tmp_path / "src")}],
                     defaults={"template": "tmpl"})
    first = RealAdaptersModule(host, params)
    result = fleet_io.run_fleet(first)
    assert result["changed"] and all(os.path.isdir(tmp_path / "machines" / f"m{i}") for i in range(count))
    assert os.path.islink(tmp_path / "machines" / "m0" / "etc/systemd/system/multi-user.target.wants/systemd-networkd.service")
    noop = RealAdaptersModule(host, params)
    result = fleet_io.run_fleet(noop)
    assert not result["changed"], result
    verbs = [" ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(c[:2])) for c in noop.commands]
    # one batched show for the machines, one is-active for the template, one machinectl list for the machines'
    # addresses in the result: the same for 1, 10 and 50 machines
    assert len(noop.commands) == 3, verbs


# ---------------------------------------------------------------- fleet-wide cross-checks before any change

@pytest.mark.parametrize("items, templates, message", [
    ([], [{"name": "t"}, {"name": "t"}], "templates[].name: 't' is declared twice"),
    ([], [{"name": "a", "source": "clone", "clone_from": "b"}, {"name": "b", "source": "clone", "clone_from": "a"}],
     "clone_from: cycle"),
    ([], [{"name": "a", "source": "clone", "clone_from": "a"}], "cycle a -> a"),
    ([{"name": "w1", "settings": {"port": ["tcp:8080:80"]}}, {"name": "w2", "settings": {"port": "8080:81"}}], [],
     "machines[w1, w2].settings.port: host port tcp/8080 is forwarded by 2 machines"),
])
def test_fleet_wide_conflicts_are_refused_before_any_change(items, templates, message):
    """Regression: duplicate templates, template cycles and shared host ports were accepted and failed mid-run."""
    with pytest.raises(fleet.FleetError) as info:
        fleet.desired_machines(items, {}, templates)
    assert message in str(info.value)


def test_same_port_number_on_other_protocols_is_fine():
    machines = fleet.desired_machines([{"name": "a", "settings": {"port": ["tcp:53"]}},
                                       {"name": "b", "settings": {"port": ["udp:53"]}}], {},
                                      [{"name": "t", "source": "clone", "clone_from": "base"}])
    assert [m.name for m in machines] == ["a", "b"]


def test_an_unexpected_error_names_the_machine_and_step():
    def broken(*_args):
        raise KeyError("ActiveState")
    with pytest.raises(fleet.FleetError, match=r"machines\[web\]: image and plan: unexpected KeyError: 'ActiveState'"):
        fleet_io.in_step("machines[web]: image and plan", broken)

    def ours():
        raise fleet.FleetError("mine")
    with pytest.raises(fleet.FleetError, match="^mine$"):
        fleet_io.in_step("x", ours)


def test_a_managed_file_whose_mode_was_changed_by_hand_is_rewritten(tmp_path, fake_images):
    """Regression (drift): a chmod of the .nspawn file was never noticed (content compared only)."""
    host = FakeHost(str(tmp_path / "system"))
    (tmp_path / "machines").mkdir()
    machines = [{"name": "web"}]
    fleet_io.run_fleet(FakeModule(host, _params(tmp_path, machines)))
    path = tmp_path / "nspawn" / "web.nspawn"
    text = path.read_text()
    os.chmod(path, 0o600)
    check = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, machines), check_mode=True))
    assert check["changed"] and (path.stat().st_mode & 0o777) == 0o600
    result = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, machines)))
    assert result["changed"] and (path.stat().st_mode & 0o777) == 0o644 and path.read_text() == text
    assert fleet_io.run_fleet(FakeModule(host, _params(tmp_path, machines)))["changed"] is False


def test_a_mode_repair_keeps_the_mtime(tmp_path):
    """Regression (drift e2e): rewriting the file for a chmod made the fleet think the settings changed."""
    path = tmp_path / "web.nspawn"
    path.write_text("[Exec]\nBoot=yes\n")
    os.chmod(path, 0o600)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    result = ensure_file(FakeModule(None, {}), str(path), "[Exec]\nBoot=yes\n", 0o644)
    assert result.changed and (path.stat().st_mode & 0o777) == 0o644 and path.stat().st_mtime_ns == 1_000_000_000


# ---------------------------------------------------------------- a run killed between writing a drop-in and daemon-reload

def test_a_unit_systemd_has_not_reloaded_is_reloaded_before_it_starts(tmp_path):
    """Regression (issue 10, found by tests/e2e/test_faults.py): a drop-in written by a run killed before
    daemon-reload already matched, so no reload happened and the machine started with the old limits."""
    waiting = fleet_plan.Current(root_exists=True, active="inactive", enabled=True, unit={"NeedDaemonReload": "yes"})
    plan = fleet_plan.plan_machine(fleet.Machine("m"), waiting, *_files(), None, "on_change")
    assert plan.reload_needed and plan.runtime == "start"
    assert plan.changes == ["daemon-reload: the unit's files changed on disk since systemd loaded them", "start"]
    assert not fleet_plan.plan_machine(fleet.Machine("m"), STOPPED, *_files(), None, "on_change").reload_needed
    host = FakeHost()
    ctx = fleet_io.Context(FakeModule(host, {}), str(tmp_path), str(tmp_path), str(tmp_path), False, "on_change")
    fleet_io.apply_files(ctx, [plan])
    assert [c[1] for c in host.calls] == ["daemon-reload"]


def test_need_daemon_reload_is_read_in_the_one_show_call():
    host = FakeHost()
    fleet_io.read_units(FakeModule(host, {}), ["a", "b"])
    assert len(host.calls) == 1 and "NeedDaemonReload" in " ".join(host.calls[0])


def test_need_daemon_reload_left_by_set_property_does_not_reload_every_run():
    """Regression (full-suite run): systemd 252 leaves NeedDaemonReload=yes after set-property --runtime;
    reloading for it made every run after a live limit change report a change."""
    desired = fleet_plan.Desired(fleet.Machine("db"), "", "/etc/systemd/system/systemd-nspawn@db.service.d/50-corral-resources.conf",
                                 "[Service]\nMemoryMax=768M\n", None, resources={"MemoryMax": "768M"})
    loaded = {"NeedDaemonReload": "yes", "DropInPaths": desired.dropin_path, "MemoryMax": str(768 * 1024 ** 2)}
    assert fleet_plan.load_stale(desired, fleet_plan.Current(unit=loaded)) is False
    # a killed run: the drop-in on disk says 768M, systemd still runs with 512M, or never loaded the file
    assert fleet_plan.load_stale(desired, fleet_plan.Current(unit=dict(loaded, MemoryMax=str(512 * 1024 ** 2)))) is True
    assert fleet_plan.load_stale(desired, fleet_plan.Current(unit=dict(loaded, DropInPaths=""))) is True
    assert fleet_plan.load_stale(desired, fleet_plan.Current(unit=dict(loaded, NeedDaemonReload="no", DropInPaths=""))) is False


def test_a_machine_that_runs_a_command_is_waited_for_as_an_active_unit(tmp_path, fake_images):
    """Regression (issue 19, 1): boot: false + process_two ran the command as PID 2, then the fleet waited
    120 s for a systemd that does not exist in that container and failed the run."""
    host = FakeHost(str(tmp_path / "system"))
    (tmp_path / "machines").mkdir()
    job = {"name": "job", "settings": {"boot": False, "process_two": True,
                                       "parameters": "/usr/bin/python3 -m http.server 80"}}
    result = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [job, {"name": "web"}])))
    asked = [c[2] for c in host.calls if c[1] == "--machine"]
    assert "job" not in asked and "web" in asked, host.calls
    assert result["machines"]["job"]["state"] == "running"
    text = (tmp_path / "nspawn" / "job.nspawn").read_text()
    assert "Parameters=/usr/bin/python3 -m http.server 80\n" in text   # four words, not one


@pytest.mark.parametrize("machine, expected", [
    ({"name": "a"}, ("system", 10)),
    ({"name": "a", "timeout": 300}, ("system", 300)),
    ({"name": "a", "wait": False}, ("none", 10)),
    ({"name": "a", "settings": {"boot": False}}, ("unit", 10)),
    ({"name": "a", "settings": {"process_two": True}, "timeout": 5}, ("unit", 5)),
])
def test_wait_and_timeout_per_machine(tmp_path, fake_images, monkeypatch, machine, expected):
    seen, host = {}, FakeHost(str(tmp_path / "system"))

    def start(_module, names, _timeout, how=None):
        seen.update({n: how[n] for n in names})
        host.active.update(dict.fromkeys(names, True))
        return {n: machine_utils.WaitResult(n, True) for n in names}

    monkeypatch.setattr(machine_io, "start_many", start)
    (tmp_path / "machines").mkdir()
    fleet_io.run_fleet(FakeModule(host, _params(tmp_path, [machine])))
    assert seen["a"] == expected


def test_a_started_machine_without_a_lease_is_warned_about(tmp_path, fake_images, monkeypatch):
    """The fleet gives a started DHCP machine DHCP_WAIT seconds to show its lease, then warns."""
    monkeypatch.setattr(fleet_io, "DHCP_WAIT", 0.3)
    host = FakeHost(str(tmp_path / "system"))
    host.leases = False
    (tmp_path / "machines").mkdir()
    module = FakeModule(host, _params(tmp_path, [{"name": "a"}]))
    result = fleet_io.run_fleet(module)
    warnings = module.warnings + result.get("warnings", [])
    assert any(w.startswith("machines[a]: no IPv4") and "0 s after the start" in w for w in warnings), (warnings, result)
    assert result["machines"]["a"]["addresses"] == []


@pytest.mark.parametrize("machine, message", [
    ({"name": "a", "timeout": 0}, "machines[a].timeout: 0 must be a whole number of seconds, at least 1"),
    ({"name": "a", "wait": "soon"}, "machines[a].wait: 'soon' is not a boolean"),
])
def test_bad_wait_and_timeout_are_refused(machine, message):
    with pytest.raises(fleet.FleetError, match=re.escape(message)):
        fleet.desired_machines([machine], {}, [])


def test_device_allow_naming_a_directory_is_warned_about(tmp_path):
    """Issue 19, 6: DeviceAllow=/dev/dri is skipped by systemd; the device class char-drm works."""
    ctx = fleet_io.Context(None, str(tmp_path), str(tmp_path), str(tmp_path), True, "on_change")
    (tmp_path / "gpu").mkdir()
    dri = fleet.Machine("gpu", resources={"device_allow": ["/dev/dri rw"]}, state="stopped")
    warnings = fleet_io.render_machine(ctx, dri).warnings
    assert any("machines[gpu].resources.device_allow: '/dev/dri rw' names a directory" in w
               and "'char-drm rw'" in w for w in warnings), warnings
    fixed = fleet.Machine("gpu", resources={"device_allow": ["char-drm rw"]}, state="stopped")
    assert not [w for w in fleet_io.render_machine(ctx, fixed).warnings if "device_allow" in w]


def test_a_missing_bind_source_fails_the_fleet_before_any_change(tmp_path):
    ctx = fleet_io.Context(None, str(tmp_path), str(tmp_path), str(tmp_path), True, "on_change")
    machine = fleet.Machine("b", settings={"bind": [f"{tmp_path}/nope:/src:idmap"]}, state="stopped")
    with pytest.raises(fleet.FleetError, match=re.escape(f"machines[b].settings: bind: '{tmp_path}/nope:/src:idmap': "
                                                         f"the source {tmp_path}/nope does not exist on the host")):
        fleet_io.render_machine(ctx, machine)


def test_a_disabled_machines_target_is_enabled_again(tmp_path, fake_images):
    """Regression (issue 16, drift): the machine module repairs a disabled machines.target (no machine
    starts at boot without it); the fleet never read it and reported an enabled fleet as converged."""
    host = FakeHost(str(tmp_path / "system"))
    (tmp_path / "machines").mkdir()
    machines = [{"name": "web"}, {"name": "db", "enabled": False}]
    fleet_io.run_fleet(FakeModule(host, _params(tmp_path, machines)))
    host.target_enabled = False
    check = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, machines), check_mode=True))
    assert check["changed"] and check["machines"]["web"]["changes"] == ["enable"] and not host.target_enabled
    assert not check["machines"]["db"]["changed"]
    result = fleet_io.run_fleet(FakeModule(host, _params(tmp_path, machines)))
    assert result["changed"] and host.target_enabled and host.enabled == {"web"}
    assert fleet_io.run_fleet(FakeModule(host, _params(tmp_path, machines)))["changed"] is False
