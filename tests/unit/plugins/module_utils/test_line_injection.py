# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 9, section 2: values that break out of their line are refused before anything is written.

Each vector was accepted before the fix and, rendered, added keys or sections that systemd reads
(systemd ends a line at \\n, \\r and \\0, and joins a line that ends in a backslash with the next).
The unit-file reader must split lines where systemd does, so tests can see what systemd sees.
"""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import (
    images, nat, networkd, nspawn_settings as ns, resources, unitfile)
from ansible_collections.corral.nspawn.plugins.module_utils.names import ifname_error, machine_name_error

INJECTED = "/srv/data\r[Exec]\rPrivateUsers=no\rCapability=all"


def _keys(text):
    return [(section, key) for section, entries in unitfile.parse(text) for key, _v in entries]


# ---------------------------------------------------------------- what systemd would have read

def test_the_reader_sees_the_keys_the_issue_describes():
    """Without validation, the rendered bind adds a privileged [Exec] section (read as systemd reads it)."""
    text = unitfile.HEADER + "[Files]\nBind=" + INJECTED + "\n"
    assert _keys(text) == [("Files", "Bind"), ("Exec", "PrivateUsers"), ("Exec", "Capability")]


def test_the_reader_joins_a_trailing_backslash_with_the_next_line():
    text = "[Exec]\nWorkingDirectory=/srv\\\nDropCapability=CAP_SYS_ADMIN\n"
    assert unitfile.parse(text) == [("Exec", [("WorkingDirectory", "/srv DropCapability=CAP_SYS_ADMIN")])]


# ---------------------------------------------------------------- .nspawn settings

@pytest.mark.parametrize("params, option", [
    ({"bind": [INJECTED]}, "bind"),
    ({"bind_read_only": ["/a\n[Network]\nPrivate=no"]}, "bind_read_only"),
    ({"working_directory": "/srv\\"}, "working_directory"),
    ({"temporary_file_system": ["/tmp\0[Exec]\0PrivateUsers=no"]}, "temporary_file_system"),
    ({"environment": {"GREETING": "hi\r[Exec]\rCapability=all"}}, "environment"),
    ({"environment": ["GREETING=hi\rCapability=all"]}, "environment"),
    ({"inaccessible": ["/proc/kcore\x0b"]}, "inaccessible"),
    ({"overlay": ["/a:/b\\"]}, "overlay"),
    ({"interface": ["\0[Exec]\0Boot=1"]}, "interface"),
    ({"zone": "z\0[Exec]"}, "zone"),
    ({"pivot_root": "/sbin/init\r[Exec]\rBoot=yes"}, "pivot_root"),
])
def test_nspawn_values_that_break_out_are_refused(params, option):
    with pytest.raises(ns.SettingsError) as info:
        ns.build_settings(params)
    message = str(info.value)
    assert message.startswith(f"{option}:"), message
    assert "line break" in message or "backslash" in message or "interface name" in message or "zone" in message


@pytest.mark.parametrize("extra, label", [
    ({"Exec": {"NewKey": "x\rPrivateUsers=no"}}, "extra.Exec.NewKey"),
    ({"Files": {"NewKey": ["ok", "x\\"]}}, "extra.Files.NewKey"),
    ({"Exec": {"NewKey\n": "x"}}, "extra.Exec.NewKey\n"),
])
def test_nspawn_extra_values_and_keys_that_break_out_are_refused(extra, label):
    with pytest.raises(ns.SettingsError) as info:
        ns.build_settings({"extra": extra})
    assert label in str(info.value)


def test_all_problems_are_listed_at_once_with_option_value_and_form():
    with pytest.raises(ns.SettingsError) as info:
        ns.build_settings({"bind": ["/ok", INJECTED, "/b\\"], "working_directory": "/srv\\",
                           "environment": {"A": "x\ry"}})
    message = str(info.value)
    for fragment in ("bind: item " + repr(INJECTED), "; item '/b\\\\' ends in a backslash",
                     "working_directory: '/srv\\\\' ends in a backslash", "environment: item 'A=x\\ry'"):
        assert fragment in message, (fragment, message)
    assert "'/ok'" not in message
    assert message.count("allowed: one line of text") == 4


# ---------------------------------------------------------------- resources drop-in

@pytest.mark.parametrize("options, option", [
    ({"io_read_bandwidth_max": ["/dev/sda\rExecStartPre=/usr/sbin/reboot 10M"]}, "io_read_bandwidth_max"),
    ({"io_write_bandwidth_max": "/dev/sda\0ExecStartPre=/usr/sbin/reboot 10M"}, "io_write_bandwidth_max"),
    ({"device_allow": ["/dev/null\0ExecStartPre=/usr/sbin/reboot"]}, "device_allow"),
    ({"extra": {"Nice": "1\rExecStartPre=/usr/sbin/reboot"}}, "extra: Nice"),
    ({"extra": {"Nice": ["1", "2\\"]}}, "extra: Nice"),
    ({"extra": {"Nice\n": "1"}}, "extra: key 'Nice\\n'"),
])
def test_resource_values_that_break_out_are_refused(options, option):
    with pytest.raises(resources.ResourceError) as info:
        resources.normalize(options)
    assert option in str(info.value), str(info.value)


def test_device_allow_nul_would_have_run_a_command_as_host_root():
    """Before the fix this rendered; systemd would have read an ExecStartPre= in the drop-in."""
    rendered = "[Service]\nDeviceAllow=/dev/null\0ExecStartPre=/usr/sbin/reboot rwm\n"
    assert ("Service", "ExecStartPre") in _keys(rendered)
    with pytest.raises(resources.ResourceError):
        resources.normalize({"device_allow": ["/dev/null\0ExecStartPre=/usr/sbin/reboot"]})


# ---------------------------------------------------------------- networkd, nat, names

SCOPED = "fe80::1%x\r[Network]\rIPForward=yes"


@pytest.mark.parametrize("params, option", [
    ({"address": [SCOPED + "/64"]}, "address"),
    ({"address": ["10.0.0.1/24"], "dhcp_server": True, "dhcp_dns": [SCOPED]}, "dhcp_dns"),
    ({"address": ["10.0.0.1/24"], "dhcp_static_leases": [{"mac": "02:00:00:00:00:01\n", "address": "10.0.0.5"}]},
     "dhcp_static_leases"),
    ({"mac_address": "02:00:00:00:00:01\n"}, "mac_address"),
    ({"ports": ["eth0\x01"]}, "ports"),
])
def test_bridge_values_that_break_out_are_refused(params, option):
    errors = networkd.bridge_errors(dict({"name": "br0"}, **params))
    assert any(error.startswith(f"{option}:") for error in errors), errors


@pytest.mark.parametrize("params, option", [
    ({"table": "corral\n"}, "table"),
    ({"masquerade": ["fe80::%x\r/64"]}, "masquerade"),
    ({"forwards": [{"proto": "tcp", "host_port": 80, "address": SCOPED, "port": 80}]}, "forwards[0].address"),
    ({"uplinks": ["eth\x7f"]}, "uplinks"),
])
def test_nat_values_that_break_out_are_refused(params, option):
    result = nat.plan(dict({"table": "corral", "masquerade": ["10.0.0.0/24"]}, **params), [])
    assert any(error.startswith(f"{option}:") for error in result.errors), result.errors


@pytest.mark.parametrize("name", ["web\n", "web\r"])
def test_machine_names_with_a_line_break_are_refused(name):
    assert machine_name_error(name)


@pytest.mark.parametrize("name", ["a\0[Exec]\0Boot", "eth\x01", "eth\u00e9", "eth\x7f"])
def test_interface_names_follow_systemd_ifname_valid(name):
    assert "not allowed in an interface name" in ifname_error(name)


# ---------------------------------------------------------------- image first-boot values

IMAGE = {"name": "web", "machines_dir": "/var/lib/machines", "state": "present", "source": "clone",
         "clone_from": "base"}


@pytest.mark.parametrize("params, fragment", [
    ({"root_password_hash": "$6$x$y:0:0::\nevil::0:0:::::"}, "root_password_hash: the value (not shown"),
    ({"root_password_hash": "$6$examplesalt$..."}, "root_password_hash: the value (not shown"),
    ({"authorized_keys": ["ssh-ed25519 AAAA a@b\rssh-rsa EVIL x@y"]}, "authorized_keys[0]:"),
    ({"authorized_keys": ["ssh-ed25519 AAAA a@b\0ssh-rsa EVIL x@y"]}, "authorized_keys[0]:"),
    ({"address": "fd00::5/64", "gateway": SCOPED}, "gateway:"),
    ({"address": "fe80::5%x\r[Network]\rDHCP=yes/64"}, "address:"),
    ({"address": "fe80::5/64", "dns": [SCOPED]}, "dns:"),
    ({"hostname": "web\n"}, "hostname:"),
])
def test_image_values_that_break_out_are_refused(params, fragment):
    errors = images.validate(images.normalize(dict(IMAGE, **params)))
    assert any(error.startswith(fragment) for error in errors), errors
    assert not any("evil" in error or "examplesalt" in error for error in errors), "a secret was echoed"


def test_a_real_root_password_hash_and_keys_are_accepted():
    params = dict(IMAGE, root_password_hash="$y$j9T$F5Jx5fExrKuPp53xLKQ..1$U4SOHmDd8SvW5vCUKSMR6N835VPwFAtgYNhQ9mFFeL5",
                  authorized_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGkcXZiq3hpY7qYXmBPaZ12JW+4JMC3QJvWDx7EJrg4C admin@example\n"],
                  address="10.0.0.5/24", dns=["10.0.0.1"])
    assert images.validate(images.normalize(params)) == []


# ---------------------------------------------------------------- last guard

@pytest.mark.parametrize("doc", [
    [("Exec", [("Hostname", "a\rb")])],
    [("Exec", [("WorkingDirectory", "/srv\\")])],
    [("Exec", [("Bad Key", "x")])],
    [("Exec]\n[Files", [("Bind", "/x")])],
])
def test_render_refuses_what_validation_should_have_caught(doc):
    with pytest.raises(unitfile.UnitFileError, match="refusing to render"):
        unitfile.render(doc)
