# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures every unit test may use: the one fake AnsibleModule, the systemctl/machinectl simulator
(both in tests/unit/fakes.py) and the main() runner (tests/unit/module_main.py)."""

import pytest

from ansible_collections.corral.nspawn.tests.unit import module_main
from ansible_collections.corral.nspawn.tests.unit.fakes import Exit, FakeModule, Systemd


@pytest.fixture
def fake_module():
    """Factory: ``fake_module(params, check_mode=False, diff=False, answers=None, systemd=None, bins=None)``."""
    return FakeModule


@pytest.fixture
def systemd_sim():
    """An empty Systemd simulator; ``systemd_sim.add(unit, **props)`` to give it units."""
    return Systemd()


@pytest.fixture
def finished():
    """The exception type the fake module's exit_json/fail_json raise (``pytest.raises(finished)``)."""
    return Exit


@pytest.fixture
def run_main(monkeypatch):
    """``run_main(module, args, check=False, diff=False)``: a module's main() in-process -> its result."""
    module_main.stop_at_exit(monkeypatch)
    return module_main.run_main
