# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for fleet_io: rendering and reading the machines' files, the fleet run against a fake host
(check/apply rhythm, batching, prune/purge, waits, drift repair) and the no-op command count with the real image step."""

import os
import re
import shutil

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import fleet, fleet_io, fleet_plan, images_io, nspawn_settings
from ansible_collections.corral.nspawn.plugins.module_utils import machine as machine_utils, machine_io
from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.fleet_fakes import (
    FakeHost, FakeModule, RealAdaptersModule, _params, _snapshot, _template_root)


def _settings(ctx, machine, monkeypatch):
    """The machine's .nspawn file as the fleet plans it (through the settings resource); the test's settings_dir
    stands for /etc/systemd/nspawn, a trusted one (privileged keys outside it are warned about, as by settings)."""
    monkeypatch.setattr(nspawn_settings, "TRUSTED_DIRS", (ctx.settings_dir,))
    one = fleet_io.plan_settings(ctx, [fleet_io.settings_item(ctx, machine)]).items[0]
    return one.content, one.warnings


def test_fleet_settings_carry_the_fleet_header(tmp_path, monkeypatch):
    ctx = fleet_io.Context(None, str(tmp_path), str(tmp_path), str(tmp_path), False, "on_change")
    text, warnings = _settings(ctx, fleet.Machine("web", zone="apps", settings={"boot": True}), monkeypatch)
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


def test_settings_file_next_to_the_image_is_warned_about(tmp_path, monkeypatch):
    ctx = fleet_io.Context(None, str(tmp_path), str(tmp_path / "etc"), str(tmp_path), False, "on_change")
    (tmp_path / "web.nspawn").write_text("[Network]\nPrivate=no\n")
    _text, warnings = _settings(ctx, fleet.Machine("web"), monkeypatch)
    assert "web.nspawn exists next to the image" in warnings[0]


def test_privileged_keys_outside_the_trusted_dirs_are_warned_about_as_by_the_settings_module(tmp_path):
    """Regression (issue 16: the fleet planned its .nspawn files on its own and never said what the settings
    module says): systemd-nspawn ignores Zone= in a file outside /etc or /run/systemd/nspawn."""
    ctx = fleet_io.Context(None, str(tmp_path), str(tmp_path / "nspawn"), str(tmp_path), True, "on_change")
    [one] = fleet_io.render_all(ctx, [fleet.Machine("web", zone="apps", state="stopped")])
    assert any(w.startswith("machines[web]: settings: ") and "ignores the privileged keys Network.Zone" in w
               for w in one.warnings), one.warnings


def test_managed_machines_lists_only_fleet_files(tmp_path):
    (tmp_path / "ours.nspawn").write_text(fleet.FLEET_HEADER + "[Exec]\n")
    (tmp_path / "single.nspawn").write_text("# Managed by corral.nspawn. Do not edit.\n[Exec]\n")
    (tmp_path / "hand.nspawn").write_text("[Exec]\nBoot=yes\n")
    (tmp_path / "notes.txt").write_text(fleet.FLEET_HEADER)
    assert fleet_io.managed_machines(str(tmp_path)) == ["ours"]
    assert fleet_io.managed_machines(str(tmp_path / "missing")) == []


def test_need_daemon_reload_is_read_in_the_one_show_call():
    host = FakeHost()
    fleet_io.read_units(FakeModule(host, {}), ["a", "b"])
    assert len(host.calls) == 1 and "NeedDaemonReload" in " ".join(host.calls[0])


def test_an_unexpected_error_names_the_machine_and_step():
    def broken(*_args):
        raise KeyError("ActiveState")
    with pytest.raises(fleet.FleetError, match=r"machines\[web\]: image and plan: unexpected KeyError: 'ActiveState'"):
        fleet_io.in_step("machines[web]: image and plan", broken)

    def ours():
        raise fleet.FleetError("mine")
    with pytest.raises(fleet.FleetError, match="^mine$"):
        fleet_io.in_step("x", ours)


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
        fleet_io.render_all(ctx, [machine])


@pytest.fixture
def fake_images(monkeypatch, tmp_path):
    """Stand-ins for the single-purpose modules' logic: settings/resources render plain INI."""
    def ensure_image(ctx, options):
        root = ctx.layout.root(options["name"])
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
    monkeypatch.setattr(fleet_io, "images_step", lambda ctx, items, confine=frozenset(): {
        i["name"]: ensure_image(ctx, i) for i in items})
    monkeypatch.setattr(images_io, "purge_built", purge_built)
    return live


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
        host.run_command(["systemctl", "start", *(f"systemd-nspawn@{n}.service" for n in names)])
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
