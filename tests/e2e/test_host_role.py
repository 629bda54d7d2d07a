# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host and network roles on test hosts that start as a fresh Debian install would.

"tst-bare" boots from the harness's bare root: none of the packages the host role installs
(read from roles/host/vars), systemd-networkd and machines.target not enabled, no route out,
and one apt source: a local repository (file:, read-only bind mount) the harness built from
.debs fetched once on the controller. The host role installs the packages from it
(check -> apply -> check -> apply), enables what it promises, and that survives a reboot.

"tst-net" (the normal test-host root, networkd not enabled) gets only the network role with
one zone: the role must bring systemd-networkd up itself.
"""

import pytest

import harness

ROLE_PACKAGES = set(harness.host_role_packages())


def installed(host, packages) -> set:
    out = host.ssh("dpkg-query -W -f='${db:Status-Abbrev}${Package}\\n' " + " ".join(sorted(packages)),
                   check=False).stdout
    return {line.split()[1] for line in out.splitlines() if line.startswith("ii ")}


def unit(host, name: str) -> tuple:
    """(is-enabled, is-active) of a unit."""
    enabled = host.ssh(f"systemctl is-enabled {name}", check=False).stdout.strip()
    active = host.ssh(f"systemctl is-active {name}", check=False).stdout.strip()
    return enabled, active


@pytest.fixture(scope="module")
def bare(make_host):
    return make_host("tst-bare", root="bare")


def test_bare_host_starts_without_anything_the_host_role_provides(bare):
    assert installed(bare, ROLE_PACKAGES) == set(), "the bare root already has role packages"
    assert unit(bare, "systemd-networkd.service") == ("disabled", "inactive")
    assert unit(bare, "machines.target")[0] in ("disabled", ""), "machines.target enabled (or installed: '')"
    sources = bare.ssh("cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources "
                       "2>/dev/null | grep -v '^#' | grep .", check=False).stdout
    assert sources == harness.APT_SOURCE, f"apt sources other than the local repository: {sources!r}"
    assert bare.ssh("ip route show default").stdout.strip() == "", "the test host has a route out"
    assert bare.ssh("test -s /srv/corral/apt/Packages && ! touch /srv/corral/apt/x", check=False).returncode == 0, \
        "the local repository is missing its index or is writable"


def test_host_role_installs_packages_from_the_local_repository(bare):
    def one(check):
        run = bare.role("corral.nspawn.host", check=check, diff=check)  # role() asserts success
        return {"changed": run.recap[bare.name]["changed"] > 0}
    harness.rhythm(one, fingerprint=bare.fingerprint, what="[tst-bare] host role")
    assert installed(bare, ROLE_PACKAGES) == ROLE_PACKAGES
    assert unit(bare, "systemd-networkd.service") == ("enabled", "active")
    assert unit(bare, "machines.target")[0] == "enabled"
    assert unit(bare, "systemd-machined.service")[1] == "active"
    assert bare.ssh("sysctl -n net.ipv4.ip_forward").stdout.strip() == "1"
    assert bare.ssh("test -x /usr/sbin/debootstrap && machinectl --version >/dev/null && "
                    "python3 -c 'import nftables, pyroute2'", check=False).returncode == 0


def test_what_the_host_role_enabled_survives_a_reboot(bare):
    bare.reboot()
    assert unit(bare, "systemd-networkd.service") == ("enabled", "active")
    assert unit(bare, "machines.target") == ("enabled", "active")
    assert bare.ssh("sysctl -n net.ipv4.ip_forward").stdout.strip() == "1"
    assert bare.role("corral.nspawn.host").recap[bare.name]["changed"] == 0


def test_network_role_alone_brings_up_networkd_for_its_zone(make_host):
    host = make_host("tst-net")
    assert unit(host, "systemd-networkd.service") == ("disabled", "inactive")
    role_vars = {"corral_network_zones": [{"name": "tz", "address": ["10.99.1.1/24"]}], "corral_network_nat": False}
    host.role("corral.nspawn.network", role_vars)
    assert unit(host, "systemd-networkd.service") == ("enabled", "active")
    assert "10.99.1.1/24" in host.ssh("ip -br addr show vz-tz").stdout
    assert host.role("corral.nspawn.network", role_vars).recap[host.name]["changed"] == 0


NETWORK_VARS = {"corral_network_zones": [{"name": "tz2", "address": ["10.99.2.1/24"]}],
                "corral_network_bridges": [{"name": "br-t", "address": ["10.99.3.1/24"], "dhcp_server": True}],
                "corral_network_nat": True,
                "corral_network_port_forwards": [{"proto": "tcp", "host_port": 8089, "address": "10.99.2.10",
                                                  "port": 80}]}


def test_network_role_zone_bridge_nat_in_one_invocation_rhythm(make_host):
    """issue 15: the role's zones, bridges and NAT are one corral.nspawn.networks call, check -> apply -> check ->
    apply from outside (fingerprint unchanged by check mode and the no-op runs)."""
    host = make_host("tst-net")

    def one(check):
        run = host.role("corral.nspawn.network", NETWORK_VARS, check=check, diff=check)
        return {"changed": run.recap[host.name]["changed"] > 0}
    harness.rhythm(one, fingerprint=host.fingerprint, what="[tst-net] network role, zone+bridge+NAT")
    assert "10.99.2.1/24" in host.ssh("ip -br addr show vz-tz2").stdout
    assert "10.99.3.1/24" in host.ssh("ip -br addr show br-t").stdout
    rules = host.ssh("nft list table inet corral").stdout
    assert "8089" in rules and "10.99.2.10" in rules and "masquerade" in rules
    # the no-op is one module invocation: ok=2 is the role's argument validation (on the controller) and the one
    # networks call; the prune steps are skipped; no loop over zones or bridges
    run = host.role("corral.nspawn.network", NETWORK_VARS)
    assert run.recap[host.name]["changed"] == 0 and run.recap[host.name]["ok"] == 2, run.stdout[-3000:]
    assert "TASK [corral.nspawn.network : Zones, bridges, NAT and port forwards]" in run.stdout
    assert "(item=" not in run.stdout, run.stdout[-3000:]
