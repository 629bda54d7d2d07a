# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""names.py: machine and interface name rules, and the names systemd-nspawn derives."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import names


@pytest.mark.parametrize("name", ["web", "web-1", "a", "db_2", "a.b.c", "x" * 64, "A9"])
def test_valid_machine_names(name):
    assert names.machine_name_error(name) is None


@pytest.mark.parametrize("name, fragment", [
    ("", "non-empty"), (None, "non-empty"), (5, "non-empty"), (".host", "reserved"), (".", "reserved"),
    ("a" * 65, "longer than 64"), ("-web", "not a valid machine name"), ("web-", "not a valid machine name"),
    ("we b", "not a valid machine name"), ("web\n", "not a valid machine name"), ("a..b", "not a valid machine name"),
    ("web/1", "not a valid machine name")])
def test_invalid_machine_names_say_why(name, fragment):
    assert fragment in names.machine_name_error(name)


@pytest.mark.parametrize("name", ["eth0", "br-lan", "x" * 15, "ve-web.1", "a_b"])
def test_valid_ifnames(name):
    assert names.ifname_error(name) is None


@pytest.mark.parametrize("name, fragment", [
    ("", "non-empty"), ("x" * 16, "16 characters"), ("a b", "not allowed"), ("a/b", "not allowed"),
    ("a:b", "not allowed"), ("a%b", "not allowed"), ("a\\", "not allowed"), (".", "not allowed"),
    ("..", "not allowed"), ("é", "not allowed"), ("a\tb", "not allowed")])
def test_invalid_ifnames_say_why(name, fragment):
    assert fragment in names.ifname_error(name)


def test_zone_names_leave_room_for_the_prefix():
    assert names.zone_ifname("lab") == "vz-lab"
    assert names.zone_name_error("x" * 12) is None
    assert "at most 12" in names.zone_name_error("x" * 13)
    assert "non-empty" in names.zone_name_error("")
    assert "not allowed" in names.zone_name_error("a b")


@pytest.mark.parametrize("machine, bridged, ifname", [
    ("web", False, "ve-web"), ("web", True, "vb-web"), ("averyveryverylongname", False, "ve-averyveryver")])
def test_veth_ifname_is_what_nspawn_derives(machine, bridged, ifname):
    assert names.veth_ifname(machine, bridged) == ifname
    assert len(ifname) <= names.IFNAMSIZ
