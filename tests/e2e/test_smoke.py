"""Smoke scenario: the harness gives real, reachable systemd hosts that can nest containers."""

import json
import os

import harness

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_two_hosts_answer_ansible_ping_over_ssh(make_hosts, tmp_path):
    hosts = make_hosts(["smk-a", "smk-b"])
    inventory = harness.write_group_inventory(hosts, str(tmp_path / "inventory.yml"))
    run = harness.run_playbook(os.path.join(ROOT, "tests/e2e/playbooks/ping.yml"), inventory)
    assert run.rc == 0, run.stdout + run.stderr
    assert set(run.recap) == {"smk-a", "smk-b"}
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in run.recap.values())


def test_host_is_isolated_and_has_uplink(make_host):
    host = make_host("smk-a")
    routes = host.ssh("ip -4 route show").stdout
    assert "default" not in routes, routes
    assert host.uplink("ping -c1 -W2 203.0.113.1").returncode == 0


def test_nested_container_boots_with_machinectl(make_host):
    host = make_host("smk-a")
    host.prepare()  # networkd (DHCP for the container's veth) comes from the host role, not the harness
    host.ssh("rm -rf /var/lib/machines/nest1 && cp -a /srv/corral/images/debian12 /var/lib/machines/nest1")
    try:
        host.ssh("machinectl start nest1")
        state = host.ssh("for i in $(seq 1 60); do s=$(systemctl -M nest1 is-system-running 2>/dev/null); "
                         "case $s in running|degraded) echo $s; exit 0;; esac; sleep 1; done; echo $s; exit 1",
                         check=False, timeout=90)
        journal = host.ssh("journalctl -u systemd-nspawn@nest1 -n 40 --no-pager", check=False).stdout
        assert state.returncode == 0, state.stdout + journal
        info = json.loads(host.ssh("machinectl list -o json").stdout)
        assert any(m["machine"] == "nest1" for m in info)
        # The container gets its veth and a DHCP address from the host's networkd.
        addr = host.ssh("for i in $(seq 1 30); do machinectl status nest1 --no-pager | grep -E 'Address: [0-9]+\\.' "
                        "&& exit 0; sleep 1; done; exit 1", check=False, timeout=60)
        assert addr.returncode == 0, "nested container got no IPv4 address from the host's networkd"
    finally:
        host.ssh("machinectl poweroff nest1; for i in $(seq 1 50); do machinectl show nest1 >/dev/null 2>&1 || break; "
                 "sleep 0.2; done; machinectl terminate nest1; "
                 "rm -rf /var/lib/machines/nest1", check=False)
