# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""runner.py: the one seam for external commands (argv lists, never a shell, rc checked)."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import errors, runner
from ansible_collections.corral.nspawn.tests.unit.fakes import FakeModule


def Module(answer=(0, "out", "")):
    return FakeModule(answers={(): answer})


def test_run_passes_a_list_never_expands_user_data_and_runs_in_the_c_locale():
    module = Module()
    assert runner.run(module, ("echo", "$HOME", "~")) == (0, "out", "")
    argv, kwargs = module.calls[0], module.options[0]
    assert argv == ["echo", "$HOME", "~"]
    assert kwargs == {"data": None, "expand_user_and_vars": False, "binary_data": False,
                      "environ_update": {"LC_ALL": "C"}}


def test_run_passes_data_and_a_given_environment():
    module = Module()
    runner.run(module, ["cat"], data="secret", environ_update={"X": "1"})
    assert module.options[0]["data"] == "secret" and module.options[0]["environ_update"] == {"X": "1"}


def test_a_failure_raises_command_error_with_details_for_fail_json():
    with pytest.raises(runner.CommandError) as info:
        runner.run(Module((3, "partial\n", "no such unit\n")), ["systemctl", "start", "x.service"])
    exc = info.value
    assert isinstance(exc, errors.CorralError)
    assert exc.msg == "systemctl start x.service failed (rc=3): no such unit"
    assert exc.details == {"rc": 3, "stdout": "partial\n", "stderr": "no such unit\n"}
    assert (exc.argv, exc.rc, exc.out, exc.err) == (["systemctl", "start", "x.service"], 3, "partial\n", "no such unit\n")


def test_the_message_falls_back_to_stdout_and_keeps_only_the_tail():
    exc = runner.CommandError(["x"], 1, "o" * 3000, "")
    assert exc.msg == "x failed (rc=1): " + "o" * 2000


def test_check_false_returns_the_failure():
    assert runner.run(Module((1, "", "err")), ["false"], check=False) == (1, "", "err")


def test_the_module_result_carries_only_the_tails_of_a_long_output():
    """The image module returned the last 4000 characters of a failed build's output before issue 16's run_module."""
    exc = runner.CommandError(["debootstrap"], 1, "a" * 10 + "o" * runner.OUTPUT_TAIL, "b" * 5 + "e" * runner.OUTPUT_TAIL)
    assert exc.details["stdout"] == "o" * runner.OUTPUT_TAIL and exc.details["stderr"] == "e" * runner.OUTPUT_TAIL
    assert exc.out.startswith("a")  # the whole output stays on the exception for callers
