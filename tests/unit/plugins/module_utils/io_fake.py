# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared fake module for the network_io and nat_io tests: a failure raises Failed(msg), a result is kept."""

from ansible_collections.corral.nspawn.tests.unit.fakes import FakeModule as SharedFakeModule


class Failed(Exception):
    pass


class FakeModule(SharedFakeModule):
    """What errors.run_module drives in these tests (their seam since issue 16)."""

    def __init__(self, params, check_mode=False):
        super().__init__(params, check_mode=check_mode, diff=True)

    def fail_json(self, **kw):
        raise Failed(kw["msg"])

    def exit_json(self, **kw):
        self.result = kw
