# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host_prepare tests' Debian host: its os-release text and FakeHost (dpkg, busctl, machinectl, sysctl as state;
systemctl through the shared Systemd simulator) - test_hostprep.py, test_hostprep_io.py."""

from ansible_collections.corral.nspawn.plugins.module_utils import hostprep

DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'


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
