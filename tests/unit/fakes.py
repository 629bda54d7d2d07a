# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The unit tests' one fake AnsibleModule and one systemctl/machinectl simulator.

``FakeModule(params, check_mode=..., diff=..., answers=..., systemd=..., real=...)`` records every command and
warning, answers commands from a table of argv prefixes (longest prefix first; a list of answers is given
in turn, its last one repeating), hands systemctl/machinectl to a ``Systemd`` simulator when one is given,
runs the rest on this machine with ``real=True`` (else answers rc 0), and ends like the real module:
``exit_json``/``fail_json`` raise ``Exit`` (a SystemExit, as AnsibleModule's sys.exit does, so
errors.run_module never takes it for a defect) carrying the result, its text the module's msg.
``exit_result(module, body)`` runs a body through errors.run_module and returns what it exited with.
tests/unit/conftest.py offers them as fixtures; module_main.py runs a main().
"""

import os
import shutil
import subprocess
import threading
from typing import Callable, Dict, List, Optional

from ansible_collections.corral.nspawn.plugins.module_utils import errors

DEFAULT_PROPS = {"LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead", "UnitFileState": ""}


class Exit(SystemExit):
    """exit_json/fail_json of the fake: ``result`` is what the module returned (failed=True on failure)."""

    def __init__(self, result: dict):
        super().__init__(0)
        self.result = result

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))

    def __str__(self) -> str:
        return str(self.result.get("msg", ""))


class FakeModule:
    """What module_utils use of AnsibleModule: params, check_mode, _diff, run_command, warn, exits, bins."""

    def __init__(self, params: Optional[dict] = None, check_mode: bool = False, diff: bool = False,
                 answers: Optional[dict] = None, systemd: Optional["Systemd"] = None,
                 bins=None, name: str = "corral.nspawn.test", real: bool = False):
        self.params = dict(params or {})
        self.check_mode, self._diff, self._name = check_mode, diff, name
        self.answers = {k: list(v) if isinstance(v, list) else v for k, v in (answers or {}).items()}
        self.systemd = systemd
        self.bins = bins           # None: every tool is there; else the names get_bin_path finds
        self.real = real           # True: tools are looked up and unanswered commands run on this machine
        self.calls: List[List[str]] = []
        self.options: List[dict] = []      # the keyword arguments of each run_command, in order
        self.moves: List[str] = []         # the destinations of atomic_move
        self.warnings: List[str] = []
        self.failed: Optional[dict] = None     # what fail_json was given (with failed=True); None until then
        self._lock = threading.Lock()      # code under test may run commands from several threads

    def run_command(self, argv, **kwargs):
        assert isinstance(argv, list), "commands are argv lists, never a shell string"
        assert kwargs.get("expand_user_and_vars") is False, "user data must not be expanded"
        with self._lock:
            self.calls.append(list(argv))
            self.options.append(dict(kwargs))
            answer = self._answer(argv)
        if answer is not None:
            return answer(argv) if callable(answer) else answer
        if self.systemd is not None and os.path.basename(argv[0]) in ("systemctl", "machinectl"):
            return self.systemd.run(argv)
        return self.run_real(argv, kwargs.get("data")) if self.real else (0, "", "")

    @staticmethod
    def run_real(argv: List[str], data: Optional[str] = None):
        """``argv`` run on this machine (stdin ``data``) -> (rc, stdout, stderr)."""
        proc = subprocess.run(argv, input=data, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def _answer(self, argv):
        for prefix in sorted(self.answers, key=len, reverse=True):
            if tuple(argv[:len(prefix)]) == tuple(prefix):
                answer = self.answers[prefix]
                if isinstance(answer, list):
                    return answer.pop(0) if len(answer) > 1 else answer[0]
                return answer
        return None

    def commands(self, tool: Optional[str] = None) -> List[List[str]]:
        """The recorded argvs (only those of ``tool``)."""
        return [c for c in self.calls if tool is None or os.path.basename(c[0]) == tool]

    def verbs(self) -> List[str]:
        """What each recorded command did: systemctl's first argument, else the tool."""
        return [c[1] if c[0] == "systemctl" else c[0] for c in self.calls]

    def warn(self, text: str) -> None:
        self.warnings.append(text)

    def exit_json(self, **result):
        raise Exit(dict(result))

    def fail_json(self, **result):
        self.failed = dict(result, failed=True)
        raise Exit(self.failed)

    def get_bin_path(self, name, required=False, opt_dirs=None):  # pylint: disable=unused-argument
        if self.bins is not None and name not in self.bins:
            return None
        return shutil.which(name) if self.real else f"/usr/bin/{name}"

    def atomic_move(self, src, dest, unsafe_writes=False):  # pylint: disable=unused-argument
        self.moves.append(dest)
        shutil.move(src, dest)


def exit_result(module: FakeModule, body: Callable) -> dict:
    """``body(module)`` through errors.run_module (the modules' main() seam): the result it exited with;
    a failure raises its Exit (``pytest.raises(Exit, match=msg)``)."""
    try:
        errors.run_module(module, body)
    except Exit as done:
        if done.failed:
            raise
        return done.result
    raise AssertionError("errors.run_module returned without exit_json or fail_json")


class Systemd:
    """Units with properties; ``systemctl show/is-active/start/stop/restart/enable/disable/daemon-reload``
    and ``machinectl start/poweroff/terminate/enable/disable`` read and change them like systemd would."""

    def __init__(self, units: Optional[Dict[str, dict]] = None, failing: Optional[Dict[tuple, tuple]] = None):
        self.units: Dict[str, dict] = {}
        for unit, props in (units or {}).items():
            self.add(unit, **props)
        self.failing = dict(failing or {})      # (verb, unit) -> (rc, out, err)
        self.reloads = 0

    def add(self, unit: str, **props) -> dict:
        self.units[unit] = {**DEFAULT_PROPS, "LoadState": "loaded", "UnitFileState": "disabled", "Id": unit, **props}
        return self.units[unit]

    def props(self, unit: str) -> dict:
        return self.units.get(unit, dict(DEFAULT_PROPS, Id=unit))

    def running(self, unit: str) -> bool:
        return self.props(unit)["ActiveState"] == "active"

    def run(self, argv: List[str]):
        tool, args = os.path.basename(argv[0]), [a for a in argv[1:] if not a.startswith("-")]
        flags = [a for a in argv[1:] if a.startswith("-")]
        if not args:
            return 1, "", f"{tool}: no verb"
        verb, names = args[0], args[1:]
        if tool == "machinectl":
            verb = {"poweroff": "stop", "terminate": "stop"}.get(verb, verb)
            names = [n if n.endswith(".target") else f"systemd-nspawn@{n}.service" for n in names]
        for name in names:
            if (verb, name) in self.failing:
                return self.failing[(verb, name)]
        return self._verb(verb, names, flags)

    def _verb(self, verb: str, units: List[str], flags: List[str]):
        handlers: Dict[str, Callable] = {
            "show": self._show, "is-active": self._is_active, "daemon-reload": self._reload,
            "start": lambda u, f: self._set(u, ActiveState="active", SubState="running"),
            "stop": lambda u, f: self._set(u, ActiveState="inactive", SubState="dead"),
            "restart": lambda u, f: self._set(u, ActiveState="active", SubState="running"),
            "enable": lambda u, f: self._set(u, UnitFileState="enabled",
                                             **({"ActiveState": "active"} if "--now" in f else {})),
            "disable": lambda u, f: self._set(u, UnitFileState="disabled",
                                              **({"ActiveState": "inactive"} if "--now" in f else {})),
        }
        if verb not in handlers:
            return 0, "", ""
        return handlers[verb](units, flags)

    def _show(self, units, flags):
        wanted = next((f.split("=", 1)[1].split(",") for f in flags if f.startswith("--property=")), None)
        blocks = []
        for unit in units:
            props = self.props(unit)
            keys = wanted or list(props)
            blocks.append("".join(f"{k}={props[k]}\n" for k in keys if k in props))
        return 0, "\n".join(blocks), ""

    def _is_active(self, units, flags):  # pylint: disable=unused-argument
        states = [self.props(u)["ActiveState"] for u in units]
        return (0 if all(s == "active" for s in states) else 3), "".join(f"{s}\n" for s in states), ""

    def _reload(self, units, flags):  # pylint: disable=unused-argument
        self.reloads += 1
        return 0, "", ""

    def _set(self, units, **change):
        for unit in units:
            if unit not in self.units:
                return 5, "", f"Failed: Unit {unit} not found.\n"
        for unit in units:
            self.units[unit].update(change)
        return 0, "", ""
