# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for shared.py: the specs of the options several modules share and their one check
(every module's spec against these: tests/unit/meta/test_shared_options.py)."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import shared
from ansible_collections.corral.nspawn.plugins.module_utils.errors import CorralError


def test_spec_gives_fresh_copies_of_the_named_options():
    spec = shared.spec("machines_dir", "timeout")
    assert spec == {"machines_dir": {"type": "path", "default": "/var/lib/machines"},
                    "timeout": {"type": "int", "default": 120}}
    spec["machines_dir"]["required"] = True
    spec["timeout"]["default"] = 5
    assert shared.SPECS["machines_dir"] == {"type": "path", "default": shared.MACHINES_DIR}
    assert shared.SPECS["timeout"]["default"] == shared.TIMEOUT == 120
    with pytest.raises(KeyError):
        shared.spec("path")


def test_good_absent_and_unset_values_have_no_errors():
    assert shared.errors({}) == []
    assert shared.errors({"machines_dir": None, "settings_dir": None, "units_dir": None, "timeout": None}) == []
    assert shared.errors({"machines_dir": "/srv/m", "settings_dir": "/etc/systemd/nspawn", "units_dir": "/x",
                          "timeout": 1, "wait": False}) == []


def test_every_bad_value_is_named_with_the_allowed_form():
    assert shared.errors({"machines_dir": "machines", "units_dir": "", "settings_dir": "/ok", "timeout": 0}) == [
        "machines_dir: 'machines' is not allowed; give an absolute directory path (default /var/lib/machines)",
        "units_dir: '' is not allowed; give an absolute directory path (default /etc/systemd/system)",
        "timeout: 0 is not allowed; give a whole number of seconds, at least 1"]
    assert shared.errors({"timeout": -3}) == ["timeout: -3 is not allowed; give a whole number of seconds, at least 1"]


def test_check_raises_the_given_error_class_naming_every_bad_value():
    class OwnError(CorralError):
        pass
    shared.check({"name": "web", "settings_dir": "/etc/x", "other": "ignored"}, ("name", "settings_dir"), OwnError)
    with pytest.raises(OwnError) as raised:
        shared.check({"name": ".host", "units_dir": "rel"}, ("name", "units_dir"), OwnError)
    assert str(raised.value) == "; ".join(shared.errors({"name": ".host", "units_dir": "rel"}))
    with pytest.raises(CorralError, match="units_dir: 'rel'"):
        shared.check({"units_dir": "rel"}, ("units_dir",))
