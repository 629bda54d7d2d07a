# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for host preparation in one call (corral.nspawn.host_prepare, the host role)."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import hostprep, hostprep_io

DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'


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


# ---------------------------------------------------------------- the whole call against a fake host

class FakeHost:
    """dpkg, busctl, machinectl and sysctl of a Debian host, as state; its units are the shared Systemd simulator's."""

    def __init__(self, proc, fake_module, systemd_sim):
        self.installed = {"systemd-container", "nftables", "python3-nftables", "python3-pyroute2", "debootstrap"}
        self.systemd, self.fake_module = systemd_sim, fake_module
        for unit in (hostprep.NETWORKD, "machines.target"):
            systemd_sim.add(unit)      # disabled, inactive
        self.bus_ok, self.machined_ok, self.calls, self.proc = True, True, [], proc

    @property
    def units(self):
        """{unit: [UnitFileState, ActiveState]}"""
        return {unit: [props["UnitFileState"], props["ActiveState"]] for unit, props in self.systemd.units.items()}

    def run(self, argv):
        self.calls.append(list(argv))
        if argv[0] == "dpkg-query":
            return 0, "".join(f"ii {p}\n" for p in argv[3:] if p in self.installed), ""
        if argv[0] == "busctl":
            return (0, "", "") if self.bus_ok and self.systemd.running(hostprep.NETWORKD) else (1, "", "no")
        if argv[0] == "machinectl":
            return (0, "", "") if self.machined_ok else (1, "", "Failed to connect to bus")
        if argv[0] == "sysctl":
            key, _sep, value = argv[2].partition("=")
            with open(self.proc[key], "w", encoding="utf-8") as handle:
                handle.write(value + "\n")
            return 0, "", ""
        if argv[1] == "restart":
            self.bus_ok = True
        return self.systemd.run(argv)

    def module(self, params, check_mode=False, diff=True):
        """The shared fake module with host_prepare's defaults; every command goes to this host."""
        params = dict({k: v.get("default") for k, v in hostprep.OPTION_SPEC.items()}, **params)
        tools = ("dpkg-query", "busctl", "machinectl", "sysctl", "systemctl")
        return self.fake_module(params, check_mode=check_mode, diff=diff, answers={(t,): self.run for t in tools})


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
