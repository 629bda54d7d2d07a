# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet tests' host: FakeHost (the shared Systemd simulator driven by the fleet's argv lists, with what only
the fleet asks), the shared fake module answering through it (RealAdaptersModule: with the real image logic and
a template root for it), the fleet's parameters and a snapshot of a temp tree (test_fleet_io, test_fleet_plan,
test_fleet_refused, test_deletion)."""

import json
import os
import time

from ansible_collections.corral.nspawn.tests.unit import fakes
from ansible_collections.corral.nspawn.plugins.module_utils import resources
from ansible_collections.corral.nspawn.plugins.module_utils.files import read_text


systemd_target = "machines.target"


class FakeHost(fakes.Systemd):
    """A host's service manager as the fleet drives it: the shared Systemd simulator (every
    systemd-nspawn@ unit exists, as the template unit makes it so), plus what only the fleet asks.

    A started unit takes its MemoryMax from the drop-in on disk, set-property --runtime changes it
    live; ``show`` reports it in bytes like systemd. ``machinectl list`` gives the running machines
    with addresses, ``systemctl --machine`` answers for a running container's own systemd.
    """

    PREFIX, SUFFIX = "systemd-nspawn@", ".service"

    def __init__(self, units_dir=None):
        super().__init__({systemd_target: {"UnitFileState": "enabled"}})   # machines.target
        self.calls, self.units_dir = [], units_dir
        self.since = None  # ActiveEnterTimestamp (unix seconds) reported for active units; None: now
        self.leases = True  # running machines list addresses (False: their DHCP never answers)

    def _names(self, state):
        return {unit[len(self.PREFIX):-len(self.SUFFIX)]: props[state] for unit, props in self.units.items()
                if unit.startswith(self.PREFIX)}

    @property
    def active(self):
        """{machine: running}"""
        return {name: state == "active" for name, state in self._names("ActiveState").items()}

    @property
    def enabled(self):
        return {name for name, state in self._names("UnitFileState").items() if state == "enabled"}

    @property
    def memory(self):
        return self._names("MemoryMax")

    @property
    def target_enabled(self):
        return self.props(systemd_target)["UnitFileState"] == "enabled"

    @target_enabled.setter
    def target_enabled(self, enabled):
        self.units[systemd_target]["UnitFileState"] = "enabled" if enabled else "disabled"

    def props(self, unit):
        props = super().props(unit)
        if unit.startswith(self.PREFIX):
            props = dict(props, ActiveEnterTimestamp=f"@{self.since or int(time.time()) + 5}")
        return props

    def _memory_from_dropin(self, unit):
        name = unit[len(self.PREFIX):-len(self.SUFFIX)]
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
        if os.path.basename(argv[0]) not in ("systemctl", "machinectl"):
            return 0, "", ""   # another tool: it did its job
        if argv[1] == "--machine":  # the container's own systemd
            return (0, "running\n", "") if self.active.get(argv[2]) else (1, "", "Failed to connect to bus")
        units = [a for a in argv[2:] if a.startswith(self.PREFIX)]
        for unit in units:
            if unit not in self.units:
                self.add(unit, MemoryMax="infinity")
        if argv[1] == "set-property":
            for assignment in argv[4:]:
                key, _sep, value = assignment.partition("=")
                if key == "MemoryMax":
                    self.units[argv[3]][key] = str(resources.parse_size(value)) if value != "infinity" else value
            return 0, "", ""
        if argv[1] in ("start", "restart"):
            self.since = None
            for unit in units:
                self.units[unit]["MemoryMax"] = self._memory_from_dropin(unit)
        return self.run(argv)


class FakeModule(fakes.FakeModule):
    """The shared fake module; systemctl and machinectl are answered by the FakeHost."""

    def __init__(self, host, params, check_mode=False, diff=False):
        super().__init__(params, check_mode, diff)
        self.host = host

    def run_command(self, argv, **kw):
        super().run_command(argv, **kw)   # records the call, checks it is an argv list without expansion
        return self.host.run_command(argv, **kw)


class RealAdaptersModule(FakeModule):
    """The fleet with the REAL image logic: copies and ``systemctl --root`` run for real on the
    controller (they only touch the temp dir); the host's service manager is the FakeHost."""

    def __init__(self, host, params, check_mode=False):
        super().__init__(host, params, check_mode)
        self.commands, self.real = [], True   # real: tools found with shutil.which

    def run_command(self, argv, **kw):
        self.commands.append(list(argv))
        if os.path.basename(argv[0]) != "systemctl" or any(a.startswith("--root=") for a in argv):
            return self.run_real(argv, kw.get("data"))
        return self.host.run_command(argv, **kw)


def _template_root(path):
    for rel in ("etc/systemd/system", "usr/lib/systemd/system", "root", "var/lib/systemd"):
        os.makedirs(os.path.join(path, rel))
    files = {"etc/hostname": "template\n", "etc/machine-id": "",
             "etc/shadow": "root:*:19000:0:99999:7:::\n",
             "usr/lib/systemd/system/systemd-networkd.service":
                 "[Unit]\nDescription=networkd\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"}
    for rel, text in files.items():
        with open(os.path.join(path, rel), "w", encoding="utf-8") as handle:
            handle.write(text)


def _params(tmp_path, machines, **extra):
    params = dict(machines=machines, defaults={"template": "tmpl", "resources": {"memory_max": "512M"}},
                  templates=[{"name": "tmpl", "source": "directory", "path": "/src"}], prune=False, purge=False,
                  restart="on_change", wait=True, timeout=10, machines_dir=str(tmp_path / "machines"),
                  settings_dir=str(tmp_path / "nspawn"), units_dir=str(tmp_path / "system"))
    params.update(extra)
    return params


def _snapshot(root):
    return sorted((str(p), p.read_text() if p.is_file() else None) for p in root.rglob("*"))
