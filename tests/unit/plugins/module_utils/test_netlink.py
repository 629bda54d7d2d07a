# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netlink.py: the pure snapshot helpers, and read/delete_link against a real kernel in a private
network namespace (``unshare -n``: nothing on the host is touched)."""

import ipaddress
import json
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import netlink
from ansible_collections.corral.nspawn.plugins.module_utils.netlink import HostNet, Link
from ansible_collections.corral.nspawn.tests.unit.fakes import Exit, FakeModule


def sample():
    return HostNet(links={
        "lo": Link("lo", 1, up=True, addresses=["127.0.0.1/8"]),
        "eth0": Link("eth0", 2, up=True, addresses=["192.0.2.10/24", "fe80::1/64"]),
        "br0": Link("br0", 3, kind="bridge", addresses=["10.1.0.1/24"]),
        "vb-a": Link("vb-a", 4, kind="veth", master="br0"),
        "vb-b": Link("vb-b", 5, kind="veth", master="br0"),
    }, routes=[("eth0", "0.0.0.0/0"), ("eth0", "198.51.100.0/24"), ("br0", "10.1.0.0/24"), ("", "224.0.0.0/4")])


def test_link_lookup_ports_and_as_dict():
    net = sample()
    assert net.link("nope") is None and net.link("br0").kind == "bridge"
    assert net.ports_of("br0") == ["vb-a", "vb-b"] and net.ports_of("eth0") == []
    assert net.link("eth0").as_dict() == {"name": "eth0", "kind": "", "up": True, "operstate": "",
                                          "master": None, "addresses": ["192.0.2.10/24", "fe80::1/64"]}


def test_host_subnets_leaves_out_default_link_local_loopback_and_multicast():
    found = netlink.host_subnets(sample())
    assert found == [("address 192.0.2.10/24 on eth0", ipaddress.ip_network("192.0.2.0/24")),
                     ("address 10.1.0.1/24 on br0", ipaddress.ip_network("10.1.0.0/24")),
                     ("route 198.51.100.0/24 dev eth0", ipaddress.ip_network("198.51.100.0/24")),
                     ("route 10.1.0.0/24 dev br0", ipaddress.ip_network("10.1.0.0/24"))]


def test_host_subnets_excludes_the_named_links():
    assert [found[0] for found in netlink.host_subnets(sample(), exclude_links=("br0",))] == [
        "address 192.0.2.10/24 on eth0", "route 198.51.100.0/24 dev eth0"]


def test_wait_for_returns_at_once_on_success_and_the_last_error_at_the_deadline(monkeypatch):
    reads = []
    monkeypatch.setattr(netlink, "read", lambda: reads.append(1) or sample())
    assert netlink.wait_for(lambda net: None, timeout=5) == (None, sample())
    error = netlink.wait_for(lambda net: "br0 is down", timeout=0, interval=0)[0]
    assert error == "br0 is down" and len(reads) == 2


def test_require_fails_naming_the_library_when_pyroute2_is_missing(monkeypatch):
    monkeypatch.setattr(netlink, "HAS_PYROUTE2", False)
    with pytest.raises(Exit) as info:
        netlink.require(FakeModule())
    assert info.value.failed and "pyroute2" in info.value.result["msg"]
    assert "python3-pyroute2" in info.value.result["msg"]


IN_NAMESPACE = """
import json
from ansible_collections.corral.nspawn.plugins.module_utils import netlink
before = netlink.read()
netlink.delete_link("v16port")
netlink.delete_link("not-there")
after = netlink.read()
print(json.dumps({"links": {n: l.as_dict() for n, l in before.links.items()}, "routes": before.routes,
                  "after": sorted(after.links)}))
"""
SETUP = ["ip link add v16br type bridge", "ip link add v16port type veth peer name v16peer", "ip link set v16port master v16br",
         "ip link set v16br up", "ip address add 10.99.0.1/24 dev v16br", "ip link set lo up"]


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace of its own needs root")
def test_read_and_delete_link_on_a_real_kernel_in_a_private_namespace():
    if not shutil.which("unshare") or not shutil.which("ip"):
        pytest.fail("unshare and ip (util-linux, iproute2) are needed to test netlink against a kernel")
    script = " && ".join(SETUP) + f" && {sys.executable} -c '{IN_NAMESPACE}'"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, env=env, check=False,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["links"]["v16br"]["kind"] == "bridge" and seen["links"]["v16br"]["up"] is True
    assert seen["links"]["v16br"]["addresses"][0] == "10.99.0.1/24"
    assert seen["links"]["v16port"] == {"name": "v16port", "kind": "veth", "up": False, "operstate": "down",
                                        "master": "v16br", "addresses": []}
    assert seen["links"]["v16peer"]["master"] is None
    assert ["v16br", "10.99.0.0/24"] in seen["routes"]
    assert seen["after"] == ["lo", "v16br"]   # the veth's peer went with it


def test_planning_modules_do_not_import_pyroute2():
    """The fleet plans networks through networkd and netmodel without reading netlink: pyroute2's import
    (0.1-0.3 s on every run) is paid only by a call that reads or changes links."""
    code = ("import sys\n"
            "import ansible_collections.corral.nspawn.plugins.modules.fleet\n"
            "import ansible_collections.corral.nspawn.plugins.module_utils.netlink as n\n"
            "print('pyroute2' in sys.modules, n.HAS_PYROUTE2)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout.split()
    assert out == ["False", "True"]
