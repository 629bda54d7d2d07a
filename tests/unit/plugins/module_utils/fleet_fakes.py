# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet tests' host: FakeHost (systemctl/machinectl state driven by the fleet's argv lists), the shared fake
module answering through it, the fleet's parameters and a snapshot of a temp tree (test_fleet_io, test_fleet_plan,
test_deletion)."""

import json
import os
import time

from ansible_collections.corral.nspawn.tests.unit import fakes
from ansible_collections.corral.nspawn.plugins.module_utils import resources
from ansible_collections.corral.nspawn.plugins.module_utils.files import read_text


systemd_target = "machines.target"


class FakeHost:
    """systemctl state of a host, driven by the argv lists the fleet runs.

    A started unit takes its MemoryMax from the drop-in on disk, set-property
    --runtime changes it live; ``show`` reports it in bytes like systemd.
    """

    def __init__(self, units_dir=None):
        self.active, self.enabled, self.calls, self.memory = {}, set(), [], {}
        self.units_dir = units_dir
        self.since = None  # ActiveEnterTimestamp (unix seconds) reported for active units; None: now
        self.leases = True  # running machines list addresses (False: their DHCP never answers)
        self.target_enabled = True  # machines.target

    def _memory_from_dropin(self, name):
        text = read_text(resources.dropin_path(name, self.units_dir)) if self.units_dir else None
        value = resources.parse_dropin(text).get("MemoryMax")
        return str(resources.parse_size(value)) if value else "infinity"

    def run_command(self, argv, **_kw):
        self.calls.append(list(argv))
        if os.path.basename(argv[0]) == "machinectl" and argv[-1] == "list":
            # running machines with the addresses their DHCP lease and router advertisement gave them
            # (without them, every start of a DHCP-attached machine waited out the 20 s lease timeout)
            rows = [{"machine": n, "class": "container", "service": "systemd-nspawn",
                     "addresses": f"10.0.0.{i + 2}\nfd00::{i + 2}" if self.leases else None}
                    for i, n in enumerate(sorted(n for n, up in self.active.items() if up))]
            return 0, json.dumps(rows), ""
        if argv[1] == "--machine":  # the container's own systemd
            return (0, "running\n", "") if self.active.get(argv[2]) else (1, "", "Failed to connect to bus")
        verb, units = argv[1], [a for a in argv[2:] if a.startswith("systemd-nspawn@")]
        names = [u[len("systemd-nspawn@"):-len(".service")] for u in units]
        if verb == "show":
            out = "".join(f"Id={u}\nActiveState={'active' if self.active.get(n) else 'inactive'}\n"
                          f"UnitFileState={'enabled' if n in self.enabled else 'disabled'}\n"
                          f"MemoryMax={self.memory.get(n, 'infinity')}\n"
                          f"ActiveEnterTimestamp=@{self.since or int(time.time()) + 5}\n\n"
                          for u, n in zip(units, names))
            if systemd_target in argv:
                out += f"Id={systemd_target}\nUnitFileState={'enabled' if self.target_enabled else 'disabled'}\n\n"
            return 0, out, ""
        if verb == "set-property":
            name = argv[3][len("systemd-nspawn@"):-len(".service")]
            for assignment in argv[4:]:
                key, _sep, value = assignment.partition("=")
                if key == "MemoryMax":
                    self.memory[name] = str(resources.parse_size(value)) if value != "infinity" else value
            return 0, "", ""
        for name in names:
            if verb in ("start", "restart"):
                self.active[name] = True
                self.since = None
                self.memory[name] = self._memory_from_dropin(name)
            elif verb == "stop":
                self.active[name] = False
            elif verb == "enable":
                self.enabled.add(name)
                self.target_enabled = self.target_enabled or systemd_target in argv
            elif verb == "disable":
                self.enabled.discard(name)
        return 0, "", ""


class FakeModule(fakes.FakeModule):
    """The shared fake module; systemctl and machinectl are answered by the FakeHost."""

    def __init__(self, host, params, check_mode=False, diff=False):
        super().__init__(params, check_mode, diff)
        self.host = host

    def run_command(self, argv, **kw):
        super().run_command(argv, **kw)   # records the call, checks it is an argv list without expansion
        return self.host.run_command(argv, **kw)


def _params(tmp_path, machines, **extra):
    params = dict(machines=machines, defaults={"template": "tmpl", "resources": {"memory_max": "512M"}},
                  templates=[{"name": "tmpl", "source": "directory", "path": "/src"}], prune=False, purge=False,
                  restart="on_change", wait=True, timeout=10, machines_dir=str(tmp_path / "machines"),
                  settings_dir=str(tmp_path / "nspawn"), units_dir=str(tmp_path / "system"))
    params.update(extra)
    return params


def _snapshot(root):
    return sorted((str(p), p.read_text() if p.is_file() else None) for p in root.rglob("*"))
