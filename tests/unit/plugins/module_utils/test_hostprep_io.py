# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for hostprep_io: host preparation in one call (corral.nspawn.host_prepare, the host role) against a fake host."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import hostprep, hostprep_io
from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.hostprep_fakes import DEBIAN, FakeHost


@pytest.fixture
def host(tmp_path, monkeypatch, fake_module, systemd_sim):
    proc = {"net.ipv4.ip_forward": str(tmp_path / "ip_forward")}
    (tmp_path / "ip_forward").write_text("0\n")
    (tmp_path / "os-release").write_text(DEBIAN)
    monkeypatch.setattr(hostprep, "OS_RELEASE", (str(tmp_path / "missing"), str(tmp_path / "os-release")))
    monkeypatch.setattr(hostprep, "proc_path", lambda key: proc[key])
    return FakeHost(proc, fake_module, systemd_sim)


def _params(tmp_path, **extra):
    return dict({"sysctls": {"net.ipv4.ip_forward": 1}, "sysctl_file": str(tmp_path / "sysctl.d" / "60-corral.conf")},
                **extra)


def _state(tmp_path, host):
    return (sorted((str(p), p.read_text()) for p in tmp_path.rglob("*") if p.is_file()), repr(host.units))


def test_check_apply_check_apply_rhythm_and_check_mode_changes_nothing(tmp_path, host):
    changed = []
    for check in (True, False, True, False):
        before = _state(tmp_path, host)
        result = hostprep_io.run_prepare(host.module(_params(tmp_path), check_mode=check))
        changed.append(result["changed"])
        if check:
            assert _state(tmp_path, host) == before
    assert changed == [True, True, False, False]
    assert host.units == {hostprep.NETWORKD: ["enabled", "active"], "machines.target": ["enabled", "inactive"]}
    assert (tmp_path / "ip_forward").read_text() == "1\n"
    assert (tmp_path / "sysctl.d" / "60-corral.conf").read_text().endswith("net.ipv4.ip_forward = 1\n")


def test_check_mode_predicts_every_change_with_a_diff(tmp_path, host):
    result = hostprep_io.run_prepare(host.module(_params(tmp_path), check_mode=True))
    assert result["changes"] == [f"sysctl file: create {tmp_path}/sysctl.d/60-corral.conf",
                                 "sysctl net.ipv4.ip_forward: 0 -> 1",
                                 "enable and start systemd-networkd.service", "enable machines.target"]
    assert [d["after"] for d in result["diff"]] == [hostprep.sysctl_text({"net.ipv4.ip_forward": "1"}), "1\n"]
    assert not any(c[0] == "busctl" for c in host.calls), "a networkd that would only now start was asked"


def test_a_prepared_host_is_read_in_few_commands_and_left_alone(tmp_path, host):
    hostprep_io.run_prepare(host.module(_params(tmp_path)))
    host.calls.clear()
    result = hostprep_io.run_prepare(host.module(_params(tmp_path)))
    assert not result["changed"] and result["os_family"] == "Debian" and result["missing_packages"] == []
    assert [c[0] for c in host.calls] == ["dpkg-query", "systemctl", "busctl", "machinectl"]


def test_missing_packages_are_reported_and_units_left_for_after_the_install(tmp_path, host):
    host.installed -= {"debootstrap", "nftables"}
    for check in (True, False):
        host.calls.clear()
        result = hostprep_io.run_prepare(host.module(_params(tmp_path, sysctls={}), check_mode=check))
        assert result["missing_packages"] == ["nftables", "debootstrap"] and not result["changed"]
        assert result["pending"] == ["enable and start systemd-networkd", "check systemd-machined",
                                     "enable machines.target"]
        assert [c[0] for c in host.calls] == ["dpkg-query"]


def test_check_packages_false_asks_no_package_database(tmp_path, host):
    result = hostprep_io.run_prepare(host.module(_params(tmp_path, check_packages=False)))
    assert result["wanted_packages"] == [] and "dpkg-query" not in [c[0] for c in host.calls]


def test_networkd_without_its_bus_connection_is_restarted(tmp_path, host):
    hostprep_io.run_prepare(host.module(_params(tmp_path)))
    host.bus_ok = False
    check = hostprep_io.run_prepare(host.module(_params(tmp_path), check_mode=True))
    assert check["changed"] and host.bus_ok is False
    result = hostprep_io.run_prepare(host.module(_params(tmp_path)))
    assert result["changes"] == ["restart systemd-networkd.service, which is running without its D-Bus connection"]
    assert ["systemctl", "restart", hostprep.NETWORKD] in host.calls
    assert not hostprep_io.run_prepare(host.module(_params(tmp_path)))["changed"]


def test_options_false_leave_networkd_and_machines_target_alone(tmp_path, host):
    result = hostprep_io.run_prepare(host.module(_params(tmp_path, sysctls={}, networkd=False,
                                                         machines_target=False)))
    assert not result["changed"]
    assert host.units[hostprep.NETWORKD] == ["disabled", "inactive"]
    assert not (tmp_path / "sysctl.d").exists()


def test_machined_that_does_not_answer_fails_with_what_is_missing(tmp_path, host):
    host.machined_ok = False
    with pytest.raises(hostprep.PrepareError, match="systemd-machined is not available"):
        hostprep_io.run_prepare(host.module(_params(tmp_path, sysctls={})))


def test_unsupported_family_and_bad_input_fail_before_any_change(tmp_path, host):
    (tmp_path / "os-release").write_text('ID=opensuse-tumbleweed\nID_LIKE="opensuse suse"\n')
    with pytest.raises(hostprep.PrepareError, match=r"supports the OS families Debian, RedHat, Archlinux; .*"
                                                    r"ID='opensuse-tumbleweed'"):
        hostprep_io.run_prepare(host.module(_params(tmp_path)))
    (tmp_path / "os-release").write_text(DEBIAN)
    with pytest.raises(hostprep.PrepareError, match="sysctls: key 'bad key'"):
        hostprep_io.run_prepare(host.module(_params(tmp_path, sysctls={"bad key": 1})))
    assert host.calls == [] and (tmp_path / "ip_forward").read_text() == "0\n"
