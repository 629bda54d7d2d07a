# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netlink.read over rtnetlink without pyroute2 (issue 15: a no-op networks run should not pay pyroute2's import).

Against a real kernel in a private network namespace (``unshare -n``: nothing on the host is touched), the
snapshot read() takes equals the one pyroute2's own dumps give (the reader netlink.read used before), for
bridges (one down), veths, IPv4 and IPv6 addresses and routes in the main and other tables.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

IN_NAMESPACE = """
import json, sys
from ansible_collections.corral.nspawn.plugins.module_utils import netlink
ours = netlink.read()
imported = "pyroute2" in sys.modules
from pyroute2 import IPRoute
with IPRoute() as ipr:
    links, by_index = {}, {}
    for msg in ipr.get_links():
        info = msg.get_attr("IFLA_LINKINFO")
        link = {"name": msg.get_attr("IFLA_IFNAME"), "kind": (info.get_attr("IFLA_INFO_KIND") if info else None) or "",
                "up": bool(msg["flags"] & 1), "operstate": str(msg.get_attr("IFLA_OPERSTATE") or "").lower(),
                "master": msg.get_attr("IFLA_MASTER"), "addresses": []}
        links[link["name"]], by_index[msg["index"]] = link, link
    for link in links.values():
        link["master"] = by_index[link["master"]]["name"] if link["master"] in by_index else None
    for msg in ipr.get_addr():
        by_index[msg["index"]]["addresses"].append(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
    routes = []
    for family in (2, 10):
        for msg in ipr.get_routes(family=family, table=254):
            dst = msg.get_attr("RTA_DST") or ("0.0.0.0" if family == 2 else "::")
            link = by_index.get(msg.get_attr("RTA_OIF"))
            routes.append([link["name"] if link else "", f"{dst}/{msg['dst_len']}"])
print(json.dumps({"imported": imported, "ours": {"links": {n: l.as_dict() for n, l in ours.links.items()},
                                                 "routes": [list(r) for r in ours.routes]},
                  "pyroute2": {"links": links, "routes": routes}}))
"""
SETUP = ["ip link set lo up", "ip link add r15br type bridge", "ip link add r15a type veth peer name r15b",
         "ip link set r15a master r15br", "ip link set r15br up", "ip link set r15a up",
         "ip address add 10.98.0.1/24 dev r15br", "ip address add 10.98.1.1/24 dev r15br",
         "ip -6 address add fd15::1/64 dev r15br nodad", "ip link add r15d type bridge",
         "ip address add 192.0.2.5/28 dev r15d", "ip route add 198.51.100.0/24 dev r15br",
         "ip route add default via 10.98.0.254", "ip -6 route add fd16::/48 dev r15br",
         "ip route add 203.0.113.0/24 dev r15br table 100"]


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace of its own needs root")
def test_read_sees_what_pyroute2_sees_without_importing_it():
    if not shutil.which("unshare") or not shutil.which("ip"):
        pytest.fail("unshare and ip (util-linux, iproute2) are needed to test netlink against a kernel")
    script = " && ".join(SETUP) + f" && {sys.executable} -"   # the script on stdin
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run(["unshare", "-n", "sh", "-c", script], input=IN_NAMESPACE, capture_output=True, text=True,
                          env=env, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["imported"] is False
    assert seen["ours"] == seen["pyroute2"]
    links, routes = seen["ours"]["links"], seen["ours"]["routes"]
    assert links["r15br"]["addresses"][:2] == ["10.98.0.1/24", "10.98.1.1/24"] and "fd15::1/64" in links["r15br"]["addresses"]
    assert links["r15a"]["master"] == "r15br" and links["r15a"]["kind"] == "veth"
    assert links["r15d"] == {"name": "r15d", "kind": "bridge", "up": False, "operstate": "down", "master": None,
                             "addresses": ["192.0.2.5/28"]}
    assert ["r15br", "0.0.0.0/0"] in routes and ["r15br", "198.51.100.0/24"] in routes and ["r15br", "fd16::/48"] in routes
    assert not any(r[1] == "203.0.113.0/24" for r in routes)   # table 100 is not the main table
