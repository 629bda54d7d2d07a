# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One tarball build and install per test session, shared by the packaging tests."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dist  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """{tarball, collections, installed, env}: the collection as `ansible-galaxy collection install` left it."""
    return dist.build_and_install(str(tmp_path_factory.mktemp("dist")))
