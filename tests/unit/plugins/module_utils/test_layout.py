# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""layout.Layout: where a machine's root, settings file, unit and drop-ins live."""

from ansible_collections.corral.nspawn.plugins.module_utils import shared, systemd
from ansible_collections.corral.nspawn.plugins.module_utils.layout import Layout


def test_defaults_are_the_shared_ones():
    layout = Layout()
    assert layout == Layout(shared.MACHINES_DIR, shared.SETTINGS_DIR, shared.UNITS_DIR, shared.NETWORK_DIR)
    assert layout.root("web") == "/var/lib/machines/web"
    assert layout.settings_path("web") == "/etc/systemd/nspawn/web.nspawn"
    assert layout.unit("web") == systemd.unit_name("web") == "systemd-nspawn@web.service"
    assert layout.dropin_dir("web") == "/etc/systemd/system/systemd-nspawn@web.service.d"
    assert layout.network_dir == "/etc/systemd/network"


def test_from_params_takes_the_module_dirs_and_ignores_the_rest():
    layout = Layout.from_params({"name": "x", "machines_dir": "/m", "settings_dir": "/s", "units_dir": "/u",
                                 "network_dir": "/n", "state": "present"})
    assert layout == Layout("/m", "/s", "/u", "/n")
    assert (layout.root("a"), layout.settings_path("a"), layout.dropin_dir("a")) == (
        "/m/a", "/s/a.nspawn", "/u/systemd-nspawn@a.service.d")


def test_from_params_keeps_defaults_for_missing_or_unset_options():
    assert Layout.from_params({"settings_dir": None, "units_dir": "/u"}) == Layout(units_dir="/u")
