# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inputs of the nat tests: the nat module's parameters with their defaults, and one port forward."""


def params(**kw):
    base = {"table": "corral", "state": "present", "masquerade": None, "uplinks": [], "links": [], "forwards": [],
            "localhost": True, "integrate": False, "force": False}
    base.update(kw)
    return base


def fwd(host_port=8080, address="10.88.10.2", port=80, proto="tcp"):
    return {"proto": proto, "host_port": host_port, "address": address, "port": port}
