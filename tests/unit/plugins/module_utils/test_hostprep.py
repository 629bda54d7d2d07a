# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for hostprep.py: OS family, package lists, the sysctl text and its checks (the call itself: test_hostprep_io.py)."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import hostprep
from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.hostprep_fakes import DEBIAN


@pytest.mark.parametrize("text, family", [
    (DEBIAN, "Debian"),
    ('ID=ubuntu\nID_LIKE=debian\n', "Debian"),
    ('ID="linuxmint"\nID_LIKE="ubuntu debian"\n', "Debian"),
    ('ID=fedora\n', "RedHat"),
    ('ID="rocky"\nID_LIKE="rhel centos fedora"\n', "RedHat"),
    ("ID=arch\n", "Archlinux"),
    ('ID=somethingnew\nID_LIKE="debian"\n', "Debian"),
    ("ID=opensuse-leap\nID_LIKE=\"suse opensuse\"\n", None),
    ("# comment\n", None),
])
def test_os_family_from_os_release(text, family):
    assert hostprep.os_family(hostprep.parse_os_release(text)) == family


def test_wanted_packages_defaults_overrides_and_order():
    assert hostprep.wanted_packages("Debian", None, None, []) == [
        "systemd-container", "nftables", "python3-nftables", "python3-pyroute2", "debootstrap"]
    assert hostprep.wanted_packages("Debian", [], [], ["htop", "nftables"]) == [
        "systemd-container", "nftables", "python3-nftables", "python3-pyroute2", "htop"]
    assert hostprep.wanted_packages("RedHat", ["a"], None, ["b"]) == ["a", "b"]
    assert hostprep.wanted_packages("Archlinux", None, ["x"], []) == ["nftables", "python-pyroute2", "x"]


def test_installed_packages_reads_each_family_query():
    assert hostprep.installed_packages("Debian", "ii nftables\nun debootstrap\nii systemd-container\n") == {
        "nftables", "systemd-container"}
    assert hostprep.installed_packages("Archlinux", "nftables 1:1.0-1\nerror: package 'x' was not found\n") == {
        "nftables"}


def test_sysctl_text_is_byte_for_byte_what_the_role_template_wrote():
    assert hostprep.sysctl_text({"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}) == (
        "# Managed by corral.nspawn. Do not edit: changes are overwritten on the next run.\n"
        "net.ipv4.ip_forward = 1\nnet.ipv6.conf.all.forwarding = 1\n")


@pytest.mark.parametrize("sysctls, message", [
    ({"net/ipv4": 1}, "sysctls: key 'net/ipv4' is not a sysctl name"),
    ({"net.ipv4.ip_forward": "1\nkernel.x = 2"}, "sysctls[net.ipv4.ip_forward]: value '1\\nkernel.x = 2'"),
    ({"net.ipv4.ip_forward": True}, "is not a sysctl value"),
])
def test_bad_sysctls_are_refused_naming_option_and_value(sysctls, message):
    assert any(message in e for e in hostprep.sysctl_errors(sysctls))
