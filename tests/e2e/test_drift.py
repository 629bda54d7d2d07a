# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drift (issue: faults, concurrency and drift), on one booted test host (prefix "dft").

A zone, a bridge and one fleet machine converge once. Then, one case at a time, something
is changed by hand the way operators do; the next run must restore it and report a change;
the run after that must report none. Every run must succeed (asserted before ``changed``).
"""

import pytest

TEMPLATE = {"name": "dtmpl", "source": "directory", "path": "/srv/corral/images/debian12"}
MACHINE = {"name": "dm1", "template": "dtmpl", "zone": "dz", "resources": {"memory_max": "256M"}}
FLEET = {"templates": [TEMPLATE], "machines": [MACHINE]}
ZONE = {"name": "dz", "address": ["10.61.0.1/24"]}
BRIDGE = {"name": "dbr0", "address": ["10.62.0.1/24"]}
SETTINGS = "/etc/systemd/nspawn/dm1.nspawn"
DROPIN = "/etc/systemd/system/systemd-nspawn@dm1.service.d/50-corral-resources.conf"


@pytest.fixture(scope="module")
def host(make_host):
    host = make_host("dft1")
    host.prepare()
    host.run("zone", ZONE)
    host.run("bridge", BRIDGE)
    host.run("fleet", FLEET)
    assert host.run("fleet", FLEET)["changed"] is False
    yield host
    host.ssh("machinectl terminate dm1; sleep 1", check=False)


def restored(host, module, args, check):
    """The run after the drift repairs and reports it; the next one changes nothing; ``check()`` holds."""
    first = host.run(module, args)
    assert first["changed"] is True, f"{module} did not report the drift: {first}"
    check()
    second = host.run(module, args)
    assert second["changed"] is False, f"{module} changed again after repairing: {second.get('changes')}"
    return first


def test_hand_edited_nspawn_file(host):
    before = host.ssh(f"cat {SETTINGS}").stdout
    host.ssh(f"echo 'PrivateUsers=no' >> {SETTINGS}")
    restored(host, "fleet", FLEET, lambda: host.ssh(f"cat {SETTINGS}").stdout == before or pytest.fail("not restored"))


def test_deleted_resource_drop_in(host):
    host.ssh(f"rm {DROPIN}")
    restored(host, "fleet", FLEET, lambda: host.existing(DROPIN) == [DROPIN] or pytest.fail("drop-in not back"))
    shown = host.ssh("systemctl show -p MemoryMax systemd-nspawn@dm1.service").stdout.strip()
    assert shown == f"MemoryMax={256 * 1024 * 1024}", shown


def test_stopped_by_hand(host):
    host.ssh("systemctl stop systemd-nspawn@dm1.service")
    restored(host, "fleet", FLEET, lambda: host.ssh("systemctl is-active systemd-nspawn@dm1.service",
                                                    check=False).stdout.strip() == "active" or pytest.fail("not running"))


def test_disabled_by_hand(host):
    host.ssh("systemctl disable systemd-nspawn@dm1.service")
    restored(host, "fleet", FLEET, lambda: host.ssh("systemctl is-enabled systemd-nspawn@dm1.service",
                                                    check=False).stdout.strip() == "enabled" or pytest.fail("not enabled"))


def test_machines_target_disabled_by_hand(host):
    """Regression (issue 16): the machine module repairs a disabled machines.target, the fleet never read it
    (no machine would start at the next boot while every run reported the fleet converged)."""
    host.ssh("systemctl disable machines.target")
    restored(host, "fleet", FLEET, lambda: host.ssh("systemctl is-enabled machines.target",
                                                    check=False).stdout.strip() == "enabled" or pytest.fail("not enabled"))


def test_managed_file_mode_changed(host):
    host.ssh(f"chmod 600 {SETTINGS}")
    restored(host, "fleet", FLEET, lambda: host.ssh(f"stat -c %a {SETTINGS}").stdout.strip() == "644"
             or pytest.fail("mode not restored"))


def test_deleted_zone_bridge_link(host):
    host.ssh("ip link del vz-dz")
    restored(host, "zone", ZONE, lambda: "10.61.0.1/24" in host.ssh("ip -br addr show vz-dz", check=False).stdout
             or pytest.fail("vz-dz not back with its address"))


def test_deleted_bridge_networkd_file(host):
    netdev = host.ssh("grep -l 'Name=dbr0' /etc/systemd/network/*.netdev").stdout.split()
    assert len(netdev) == 1, netdev
    host.ssh(f"rm {netdev[0]}")
    restored(host, "bridge", BRIDGE, lambda: host.existing(netdev[0]) == netdev or pytest.fail("netdev not back"))
