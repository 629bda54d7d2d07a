# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The network_io and nat_io tests' module: the shared fake in diff mode; a failure is its Exit (``Failed``)."""

from ansible_collections.corral.nspawn.tests.unit.fakes import Exit as Failed, FakeModule as SharedFakeModule

__all__ = ["Failed", "FakeModule"]


class FakeModule(SharedFakeModule):
    """``FakeModule(params, check_mode=False)``: what errors.run_module drives in these tests."""

    def __init__(self, params, check_mode=False):
        super().__init__(params, check_mode=check_mode, diff=True)
