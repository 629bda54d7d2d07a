# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""errors.run_module: the one place that turns a module body's result or exception into exit/fail."""

import importlib
import inspect
import pkgutil

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import errors, lock, runner, systemd, unitfile
from ansible_collections.corral.nspawn.tests.unit.fakes import Exit, FakeModule


def outcome(body):
    with pytest.raises(Exit) as info:
        errors.run_module(FakeModule(name="corral.nspawn.demo"), body)
    return info.value.result


def test_result_dict_is_exited():
    assert outcome(lambda module: {"changed": True, "changes": ["x"]}) == {"changed": True, "changes": ["x"]}


def test_corral_error_fails_with_its_message_and_details():
    def body(module):
        raise errors.CorralError("name: 'a b' is not allowed", machine="a b", step="settings")
    assert outcome(body) == {"msg": "name: 'a b' is not allowed", "machine": "a b", "step": "settings",
                             "failed": True}


def test_command_error_is_a_corral_error_with_rc_stdout_stderr():
    def body(module):
        raise runner.CommandError(["systemctl", "start", "x"], 5, "out", "boom\n")
    result = outcome(body)
    assert result == {"msg": "systemctl start x failed (rc=5): boom", "rc": 5, "stdout": "out", "stderr": "boom\n",
                      "failed": True}


def test_unexpected_exception_names_module_and_type_without_traceback_in_msg():
    def body(module):
        return {}["missing"]
    result = outcome(body)
    assert result["failed"] is True
    assert result["msg"].startswith("corral.nspawn.demo: unexpected KeyError: 'missing'; nothing after this point")
    assert "Traceback" not in result["msg"]
    assert "Traceback" in result["exception"]   # for -vvv only


def test_fail_json_inside_body_is_not_swallowed():
    def body(module):
        module.fail_json(msg="bad option")
    assert outcome(body) == {"msg": "bad option", "failed": True}


@pytest.mark.parametrize("cls", [runner.CommandError, systemd.SystemdError, unitfile.UnitFileError, lock.LockError])
def test_exception_classes_are_corral_errors(cls):
    assert issubclass(cls, errors.CorralError)


def _module_utils_exceptions():
    package = importlib.import_module("ansible_collections.corral.nspawn.plugins.module_utils")
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__:
                yield f"{info.name}.{name}", value


def test_every_exception_class_of_module_utils_is_a_corral_error():
    """The contract: every exception the collection raises on purpose is a CorralError (rootfs.RootError was not)."""
    found = dict(_module_utils_exceptions())
    assert "rootfs.RootError" in found and "errors.CorralError" in found
    assert [name for name, cls in found.items() if not issubclass(cls, errors.CorralError)] == []


def test_unitfile_error_stays_a_value_error():
    assert issubclass(unitfile.UnitFileError, ValueError)


def test_corral_error_msg_and_empty_details():
    exc = errors.CorralError("plain")
    assert (exc.msg, exc.details, str(exc)) == ("plain", {}, "plain")
