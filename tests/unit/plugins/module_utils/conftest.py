# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the module_utils tests: ``machines``, a machines directory holding the template root ``tmpl``
(images_fakes.make_template) for the image tests and test_deletion."""

import pytest

from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.images_fakes import make_template


@pytest.fixture
def machines(tmp_path):
    mdir = tmp_path / "machines"
    mdir.mkdir()
    make_template(str(mdir / "tmpl"))
    return str(mdir)
