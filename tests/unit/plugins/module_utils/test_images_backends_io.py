# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for images_backends_io: the import name and the importer chosen."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import images, images_backends_io as backends_io
from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.images_fakes import FakeModule, params


def test_import_name_is_a_valid_machine_name_for_long_names():
    from ansible_collections.corral.nspawn.plugins.module_utils.names import machine_name_error
    name = backends_io.new_import_name()
    assert machine_name_error(name) is None and name != backends_io.new_import_name()  # random per build


def test_importer_choice(machines):
    p = params(machines, source="tar", path="/x.tar")
    assert backends_io.choose_importer(FakeModule(), p, images.Paths(machines, "web1")) == "tar"
    with pytest.raises(images.ImageError, match="imports only into /var/lib/machines"):
        backends_io.choose_importer(FakeModule(), dict(p, importer="machinectl"), images.Paths(machines, "web1"))
    with pytest.raises(images.ImageError, match="source=raw needs systemd-importd"):
        backends_io.choose_importer(FakeModule(), dict(p, source="raw"), images.Paths(machines, "web1"))
