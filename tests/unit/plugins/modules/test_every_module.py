# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every module's main(): argument spec validation and the failure paths through errors.run_module.

Bad input fails naming the option (and the value) before anything is read; an error raised once the
module works on the host (here: at the host lock, the first step of every module that reads or changes
the host) reaches the user through run_module as ONE clean fail_json: a CorralError with its message and
details, anything else naming the module and the exception type, never a traceback in the message.
The host lock is replaced by one that raises, and no command runs: nothing here touches the host.
"""

import importlib

import pytest
from ansible.module_utils import basic

from ansible_collections.corral.nspawn.plugins.module_utils import errors, lock, systemd
from ansible_collections.corral.nspawn.tests.unit.module_main import run_main, stop_at_exit


def minimal(tmp_path) -> dict:
    """Per module: the fewest arguments that pass validation (dirs in tmp, absent where that is shortest)."""
    return {
        "bridge": {"name": "v16br", "state": "absent"},
        "fleet": {"machines": []},
        "host_prepare": {},
        "image": {"name": "v16img", "state": "absent", "machines_dir": str(tmp_path)},
        "machine": {"name": "v16m", "state": "stopped"},
        "machine_info": {"settings_dir": str(tmp_path), "units_dir": str(tmp_path)},
        "nat": {"state": "absent"},
        "network_prune": {},
        "networks": {},
        "resources": {"name": "v16m", "state": "absent", "units_dir": str(tmp_path)},
        "settings": {"name": "v16m", "state": "absent", "settings_dir": str(tmp_path)},
        "zone": {"name": "v16z", "state": "absent"},
    }


MODULES = sorted(minimal("/").keys())


def load(name):
    return importlib.import_module(f"ansible_collections.corral.nspawn.plugins.modules.{name}")


class Captured(BaseException):
    """Stops AnsibleModule.__init__ to take the argument spec main() builds."""


def spec_of(name, monkeypatch) -> dict:
    def capture(self, **kwargs):
        raise Captured(kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(basic.AnsibleModule, "__init__", capture)
        with pytest.raises(Captured) as info:
            load(name).main()
    return info.value.args[0]["argument_spec"]


def options(kind):
    """(module, option[, extra]) for every option of ``kind`` in every module's argument spec."""
    from _pytest.monkeypatch import MonkeyPatch
    patch = MonkeyPatch()
    try:
        found = []
        for name in MODULES:
            for option, spec in spec_of(name, patch).items():
                if kind == "required" and spec.get("required"):
                    found.append((name, option))
                elif kind == "choices" and spec.get("choices"):
                    found.append((name, option))
                elif kind == "int" and spec.get("type") == "int":
                    found.append((name, option))
        return found
    finally:
        patch.undo()


@pytest.fixture
def host(monkeypatch):
    """No command runs (each is recorded and refused) and the host lock is the seam a failure is injected at."""
    stop_at_exit(monkeypatch)
    calls = []

    def refuse(self, argv, **kwargs):
        calls.append(list(argv))
        return 127, "", "v16 unit test: no commands on the host"
    monkeypatch.setattr(basic.AnsibleModule, "run_command", refuse)
    return calls


def run(name, args, **kw):
    return run_main(load(name), dict(args, _ansible_module_name=f"corral.nspawn.{name}"), **kw)


@pytest.mark.parametrize("name", MODULES)
def test_an_unknown_option_is_refused_naming_it(name, host, tmp_path):
    result = run(name, dict(minimal(tmp_path)[name], v16_no_such_option=1))
    assert result["failed"] and "v16_no_such_option" in result["msg"] and "Unsupported parameters" in result["msg"]
    assert host == []


@pytest.mark.parametrize("name, option", options("required"))
def test_a_missing_required_option_is_named(name, option, host, tmp_path):
    args = {k: v for k, v in minimal(tmp_path)[name].items() if k != option}
    result = run(name, args)
    assert result["failed"] and "missing required arguments" in result["msg"] and option in result["msg"]


@pytest.mark.parametrize("name, option", options("choices"))
def test_a_value_outside_the_choices_names_option_and_value(name, option, host, tmp_path):
    result = run(name, dict(minimal(tmp_path)[name], **{option: "v16-not-a-choice"}))
    assert result["failed"] and option in result["msg"] and "v16-not-a-choice" in result["msg"]
    assert host == []


@pytest.mark.parametrize("name, option", options("int"))
def test_a_non_integer_names_the_option(name, option, host, tmp_path):
    result = run(name, dict(minimal(tmp_path)[name], **{option: "many"}))
    assert result["failed"] and option in result["msg"] and "int" in result["msg"]
    assert host == []


def inject(monkeypatch, exc):
    """``exc`` at the host lock; machined counts as there (machine checks it before it takes the lock)."""
    def failing_lock(*args, **kwargs):
        raise exc
    monkeypatch.setattr(lock, "host_lock", failing_lock)
    monkeypatch.setattr(systemd, "machined_error", lambda module: None)


@pytest.mark.parametrize("name", MODULES)
def test_a_corral_error_is_one_fail_json_with_its_details(name, host, tmp_path, monkeypatch):
    inject(monkeypatch, errors.CorralError("v16 injected failure", step="v16-step", machine="v16m"))
    result = run(name, minimal(tmp_path)[name])
    assert {k: result.get(k) for k in ("failed", "msg", "step", "machine")} == {
        "failed": True, "msg": "v16 injected failure", "step": "v16-step", "machine": "v16m"}
    assert "exception" not in result


@pytest.mark.parametrize("name", MODULES)
def test_an_unexpected_exception_names_module_and_type_without_a_traceback(name, host, tmp_path, monkeypatch):
    inject(monkeypatch, ZeroDivisionError("v16 boom"))
    result = run(name, minimal(tmp_path)[name])
    assert result["failed"]
    assert result["msg"].startswith(f"corral.nspawn.{name}: unexpected ZeroDivisionError: v16 boom; nothing after")
    assert "Traceback" not in result["msg"] and "Traceback" in result["exception"]


def test_machine_info_refuses_a_relative_units_dir_naming_it_before_any_read(host):
    result = run("machine_info", {"units_dir": "relative"})
    assert result["failed"] and result["msg"].startswith("units_dir: 'relative' is not allowed")
    assert host == []


def test_machine_info_names_the_missing_machined(host, tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "LOCK_PATH", str(tmp_path / "lock"))
    result = run("machine_info", minimal(tmp_path)["machine_info"])
    assert result["failed"] and "machined" in result["msg"] and "exception" not in result


# A value the argument spec lets through but the module's own checks refuse: the failure names the option
# and the value, in check mode, with no command run (nothing on the host is read through a command).
BAD_VALUES = [
    ("bridge", {"name": "bad name"}, "name"),
    ("zone", {"name": "x" * 13}, "name"),
    ("image", {"name": "a/b"}, "name"),
    ("machine", {"name": "a b"}, "name"),
    ("machine_info", {"settings_dir": "nspawn"}, "settings_dir"),
    ("resources", {"state": "present", "memory_max": "lots"}, "memory_max"),
    ("settings", {"name": "a b"}, "name"),
    ("fleet", {"machines": [{"name": "a b", "image": {"source": "directory", "path": "/srv/x"}}]}, "a b"),
    ("networks", {"zones": [{"name": "x" * 13}]}, "zones"),
    ("nat", {"state": "present", "forwards": [{"proto": "tcp", "host_port": 0, "address": "10.0.0.2"}]}, "host_port"),
    ("network_prune", {"settings_dir": "nspawn"}, "settings_dir"),
]


@pytest.mark.parametrize("name, args, option", BAD_VALUES, ids=[case[0] for case in BAD_VALUES])
def test_a_bad_value_is_refused_naming_the_option(name, args, option, host, tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "LOCK_PATH", str(tmp_path / "lock"))
    monkeypatch.setattr(systemd, "machined_error", lambda module: None)
    result = run(name, dict(minimal(tmp_path)[name], **args), check=True)
    assert result["failed"] and option in result["msg"], result
    assert "exception" not in result and "Traceback" not in result["msg"]
