# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The network_prune tests' host: the bridge and zone corral.nspawn made, and the links netlink reports
(test_network_prune.py, test_network_prune_io.py)."""

from ansible_collections.corral.nspawn.plugins.module_utils import netlink

BRIDGE = {"name": "br-old", "address": ["10.77.2.1/24"], "dhcp_server": True, "ports": ["eth1"]}
ZONE = {"name": "apps", "address": ["10.77.1.1/24"]}


def host_net(**ports):
    """Links br-old, vz-apps (both bridges) and eth0; ``ports`` = {bridge: [port, ...]}."""
    net = netlink.HostNet()
    for index, name in enumerate(["eth0", "br-old", "vz-apps"], 2):
        net.links[name] = netlink.Link(name, index, kind="bridge" if name != "eth0" else "", up=True)
    for index, (bridge, names) in enumerate(ports.items(), 20):
        for offset, port in enumerate(names):
            net.links[port] = netlink.Link(port, index * 10 + offset, kind="veth", up=True, master=bridge)
    return net
