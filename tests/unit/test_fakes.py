# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared fakes behave like what they stand for (a fake that lies makes every test using it lie)."""

import shutil
import threading

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import errors, systemd
from ansible_collections.corral.nspawn.tests.unit.fakes import Exit, exit_result

UNIT = "systemd-nspawn@web.service"


def test_fake_module_records_answers_and_exits_like_ansible(fake_module):
    module = fake_module({"name": "web"}, check_mode=True, answers={("tool",): (0, "any", ""),
                                                                    ("tool", "x"): lambda argv: (3, argv[-1], "")})
    assert module.run_command(["tool", "x", "y"], expand_user_and_vars=False) == (3, "y", "")
    assert module.run_command(["tool", "z"], expand_user_and_vars=False) == (0, "any", "")
    assert module.run_command(["other"], expand_user_and_vars=False) == (0, "", "")
    assert module.calls == [["tool", "x", "y"], ["tool", "z"], ["other"]] and module.commands("tool") == module.calls[:2]
    module.warn("careful")
    assert module.warnings == ["careful"] and module.params == {"name": "web"} and module.check_mode
    assert module.failed is None
    with pytest.raises(SystemExit) as info:
        module.fail_json(msg="bad", rc=1)
    assert info.value.result == {"msg": "bad", "rc": 1, "failed": True} and info.value.failed
    assert module.failed == info.value.result


def test_fake_module_refuses_shell_strings_and_expansion(fake_module):
    with pytest.raises(AssertionError, match="argv lists"):
        fake_module().run_command("rm -rf /", expand_user_and_vars=False)
    with pytest.raises(AssertionError, match="expanded"):
        fake_module().run_command(["echo", "$HOME"])


def test_fake_module_bins(fake_module):
    assert fake_module().get_bin_path("machinectl") == "/usr/bin/machinectl"
    assert fake_module(bins=()).get_bin_path("machinectl") is None


def test_run_module_lets_the_fake_exit_through(fake_module, finished):
    with pytest.raises(finished) as info:
        errors.run_module(fake_module(), lambda module: module.fail_json(msg="name: bad"))
    assert info.value.result == {"msg": "name: bad", "failed": True}


def test_simulator_answers_show_through_the_real_parser(fake_module, systemd_sim):
    systemd_sim.add(UNIT, ActiveState="active", UnitFileState="enabled", ActiveEnterTimestamp="@1")
    module = fake_module(systemd=systemd_sim)
    shown = systemd.show(module, [UNIT, "ghost.service"], ["ActiveState", "UnitFileState"])
    assert shown == {UNIT: {"Id": UNIT, "ActiveState": "active", "UnitFileState": "enabled"},
                     "ghost.service": {"Id": "ghost.service", "ActiveState": "inactive", "UnitFileState": ""}}
    assert systemd.is_running(shown[UNIT]) and not systemd.is_running(shown["ghost.service"])


def test_simulator_verbs_change_the_units(fake_module, systemd_sim):
    systemd_sim.add(UNIT)
    module = fake_module(systemd=systemd_sim)
    assert systemd.enable_and_start(module, UNIT, systemd_sim.props(UNIT)) == ["enable", "start"]
    assert systemd_sim.props(UNIT)["UnitFileState"] == "enabled" and systemd_sim.running(UNIT)
    assert systemd.enable_and_start(module, UNIT, systemd_sim.props(UNIT)) == []
    systemd.systemctl(module, "stop", [UNIT])
    assert not systemd_sim.running(UNIT)
    assert module.run_command(["systemctl", "is-active", UNIT], expand_user_and_vars=False) == (3, "inactive\n", "")
    module.run_command(["machinectl", "start", "web"], expand_user_and_vars=False)
    assert systemd_sim.running(UNIT)
    module.run_command(["machinectl", "poweroff", "web"], expand_user_and_vars=False)
    assert not systemd_sim.running(UNIT)
    module.run_command(["systemctl", "daemon-reload"], expand_user_and_vars=False)
    assert systemd_sim.reloads == 1


def test_simulator_fails_like_systemctl(fake_module, systemd_sim):
    systemd_sim.add(UNIT)
    systemd_sim.failing[("start", UNIT)] = (1, "", "Job for web failed")
    module = fake_module(systemd=systemd_sim)
    with pytest.raises(errors.CorralError, match="Job for web failed"):
        systemd.systemctl(module, "start", [UNIT])
    assert module.run_command(["systemctl", "start", "nope.service"], expand_user_and_vars=False)[0] == 5


def test_run_main_fixture_uses_the_same_exit(run_main):
    from ansible_collections.corral.nspawn.tests.unit import module_main
    assert module_main.Done is Exit and callable(run_main)


def test_fake_module_gives_a_list_of_answers_in_turn_the_last_repeating(fake_module):
    module = fake_module(answers={("systemctl", "show"): [(0, "first", ""), (0, "second", "")]})
    outs = [module.run_command(["systemctl", "show", "x"], expand_user_and_vars=False)[1] for _call in range(3)]
    assert outs == ["first", "second", "second"]
    module.run_command(["machinectl", "list"], expand_user_and_vars=False)
    assert module.verbs() == ["show", "show", "show", "machinectl"]


def test_fake_module_answers_threads_each_once(fake_module):
    answers = [(0, str(i), "") for i in range(200)] + [(0, "last", "")]
    module = fake_module(answers={("tool",): list(answers)})
    seen = []
    workers = [threading.Thread(target=lambda: seen.extend(
        module.run_command(["tool"], expand_user_and_vars=False)[1] for _call in range(50))) for _worker in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(seen, key=int) == [str(i) for i in range(200)] and len(module.calls) == 200


def test_exit_reads_as_the_modules_message_and_exit_result_returns_the_result(fake_module, finished):
    def refuse(module):
        raise errors.CorralError("settings_dir: 'x' is not allowed", path="x")

    assert str(finished({"msg": "name: bad", "failed": True})) == "name: bad"
    assert exit_result(fake_module(), lambda module: {"changed": True}) == {"changed": True}
    with pytest.raises(finished, match="^settings_dir: 'x' is not allowed") as info:
        exit_result(fake_module(), refuse)
    assert info.value.result == {"msg": "settings_dir: 'x' is not allowed", "path": "x", "failed": True}


def test_fake_module_real_runs_what_no_answer_names_and_finds_real_tools(fake_module, tmp_path):
    module = fake_module(real=True, answers={("cp",): (0, "answered", "")}, bins=("cat", "cp", "no-such-tool-here"))
    assert module.run_command(["cat"], data="fed to stdin\n", expand_user_and_vars=False) == (0, "fed to stdin\n", "")
    assert module.run_command(["cp", str(tmp_path / "nope"), str(tmp_path / "x")], expand_user_and_vars=False)[1] == "answered"
    assert module.run_command(["false"], expand_user_and_vars=False)[0] == 1 and module.calls[-1] == ["false"]
    assert module.get_bin_path("cat") == shutil.which("cat") and module.get_bin_path("false") is None  # not in bins
    assert module.get_bin_path("no-such-tool-here") is None and fake_module().get_bin_path("x") == "/usr/bin/x"
