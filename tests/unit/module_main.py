# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a module's main() in-process and take the result it exits with (module-level unit tests)."""

import pytest
from ansible.module_utils import basic

from ansible_collections.corral.nspawn.tests.unit.compat import patch_module_args
from ansible_collections.corral.nspawn.tests.unit.fakes import Exit


# The fake module's Exit: a SystemExit like AnsibleModule's own, so errors.run_module's last-resort
# ``except Exception`` does not take a test's exit for a defect; ``.result`` is what the module returned.
Done = Exit


def stop_at_exit(monkeypatch) -> None:
    """exit_json and fail_json raise Done instead of printing and exiting (fail_json adds failed=True)."""
    def finish(self, **result):
        raise Done(result)

    def fail(self, **result):
        raise Done(dict(result, failed=True))

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", finish)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail)


def run_main(module, args: dict, check: bool = False, diff: bool = False) -> dict:
    """``module.main()`` with ``args`` (and check/diff mode); its result dict."""
    with patch_module_args(dict(args, _ansible_check_mode=check, _ansible_diff=diff)):
        with pytest.raises(Done) as info:
            module.main()
    return info.value.result
