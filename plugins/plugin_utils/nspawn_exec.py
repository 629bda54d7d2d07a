# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Command lines of the corral.nspawn.nspawn connection (pure: argv in, argv out; no I/O).

Every exec, put and fetch runs one small POSIX shell script on the container host. It finds the
machine's leader with ``machinectl show``, picks the method (``systemd-run -M`` when the container
has a system bus, else ``nsenter`` into the leader) and execs it, so a task costs one process on the
host (one SSH round trip in remote mode) and the errors of the host side (not root, machine
unknown, machine stopped) come back marked, never mixed up with the command's own output.
"""

from __future__ import annotations

import re
import shlex
from typing import List, Optional

METHODS = ("auto", "systemd-run", "nsenter")
# Exit status of the host script when it refuses; with MARKER at the start of a stderr line.
REFUSED_RC = 125
MARKER = "corral.nspawn.nspawn:"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?$")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# $1 machine, $2 method, $3 user inside, then the command argv.
HOST_SCRIPT = r"""m=$1 method=$2 user=$3; shift 3
refuse() { echo "%(marker)s $*" >&2; exit %(rc)d; }
[ "$(id -u)" = 0 ] || refuse not-root "$(id -un)"
leader=$(machinectl show --property=Leader --value -- "$m" 2>/dev/null)
if [ -z "$leader" ] || [ "$leader" = 0 ]; then
  if machinectl show-image -- "$m" >/dev/null 2>&1; then refuse stopped "$m"; fi
  refuse unknown "$m"
fi
if [ "$method" = auto ]; then
  if [ -S "/proc/$leader/root/run/dbus/system_bus_socket" ]; then method=systemd-run; else method=nsenter; fi
fi
if [ "$method" = systemd-run ]; then
  exec systemd-run --machine="$m" --uid="$user" --pipe --wait --quiet --collect --service-type=exec -- "$@"
fi
command -v nsenter >/dev/null || refuse no-nsenter "$m"
exec nsenter --target="$leader" --all -- /usr/bin/env -i PATH=%(path)s LANG=C.UTF-8 runuser -u "$user" -- "$@"
""" % {"marker": MARKER, "rc": REFUSED_RC, "path": PATH}


class ExecError(ValueError):
    """Bad connection option (names the option, the value and the allowed form)."""


def check_options(machine: str, user: str, method: str) -> None:
    problems = []
    if not NAME_RE.match(machine or ""):
        problems.append(f"machine {machine!r}: use a machine name (letters, digits, '.', '_', '-', at most 64)")
    if not USER_RE.match(user or ""):
        problems.append(f"remote_user {user!r}: use a user name inside the container (letters, digits, '_', '.', '-')")
    if method not in METHODS:
        problems.append(f"nspawn_method {method!r}: use one of {', '.join(METHODS)}")
    if problems:
        raise ExecError("; ".join(problems))


def host_argv(machine: str, user: str, method: str, command: List[str], become: Optional[str] = None) -> List[str]:
    """argv run on the container host: the host script with the machine, method, user and command."""
    argv = ["/bin/sh", "-c", HOST_SCRIPT, "corral-nspawn", machine, method, user, *command]
    if become:
        argv = [*shlex.split(become), *argv]
    return argv


def shell_command(cmd: str, executable: str = "/bin/sh") -> List[str]:
    """A task's command line as argv inside the container."""
    return [executable, "-c", cmd]


def put_command(dest: str) -> List[str]:
    """argv inside the container that writes stdin to ``dest`` byte for byte, as the user it runs as."""
    return ["/bin/sh", "-c", 'exec cat > "$1"', "corral-put", dest]


def fetch_command(src: str) -> List[str]:
    """argv inside the container that writes ``src`` to stdout; fails when it is not a readable file."""
    return ["/bin/sh", "-c", '[ -f "$1" ] || { echo "$1: not a regular file" >&2; exit 1; }; exec cat -- "$1"',
            "corral-fetch", src]


def ssh_argv(host: str, command: List[str], ssh_executable: str = "ssh", user: Optional[str] = None,
             port: Optional[int] = None, private_key: Optional[str] = None, common_args: str = "",
             extra_args: str = "", control_dir: Optional[str] = None, persist: int = 60,
             timeout: int = 10) -> List[str]:
    """ssh argv running ``command`` on ``host``; multiplexed through one master per host and user."""
    argv = [ssh_executable, "-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(timeout)}"]
    if control_dir:
        # Same ControlPath form as ansible.builtin.ssh (%C), so both share one master per host and user.
        argv += ["-o", "ControlMaster=auto", "-o", f"ControlPersist={int(persist)}s",
                 "-o", f"ControlPath={control_dir}/%C"]
    if port:
        argv += ["-p", str(int(port))]
    if user:
        argv += ["-l", user]
    if private_key:
        argv += ["-i", private_key]
    argv += shlex.split(common_args or "") + shlex.split(extra_args or "")
    return [*argv, "--", host, shlex.join(command)]


def refusal(rc: int, stderr: str) -> Optional[tuple]:
    """(kind, detail) when the host script refused (stopped, unknown, not-root, no-nsenter), else None."""
    if rc != REFUSED_RC:
        return None
    for line in stderr.splitlines():
        if line.startswith(MARKER):
            kind, detail = (line[len(MARKER):].strip().split(" ", 1) + [""])[:2]
            return kind, detail
    return None


def refusal_message(kind: str, detail: str, machine: str, where: str) -> str:
    """The error shown to the user for a refusal of the host script."""
    if kind == "stopped":
        return (f"container {machine!r} on {where} exists but is not running; start it first "
                f"(corral.nspawn.machine state=running, or machinectl start {machine})")
    if kind == "unknown":
        return f"no container {machine!r} on {where}: machinectl knows no running machine and no image of that name"
    if kind == "not-root":
        return (f"the host user {detail!r} on {where} is not root: entering a container needs root on the host. "
                "Connect as root (nspawn_host_user), or set nspawn_host_become (for example 'sudo -n') with a "
                "sudo rule for that user; see the connection's notes")
    if kind == "no-nsenter":
        return f"container {machine!r} on {where} has no system bus (systemd-run -M cannot work) and nsenter is missing on the host"
    return f"container {machine!r} on {where}: {kind} {detail}"


SSH_FAILURE = re.compile(r"^(ssh: |.*(Permission denied \(|Connection (refused|timed out|closed by)|"
                         r"Could not resolve|No route to host|Host key verification failed|"
                         r"kex_exchange_identification|Control socket connect))", re.M)


def ssh_failed(rc: int, stderr: str) -> bool:
    """ssh itself failed (rc 255 with ssh's own message), as opposed to the remote command."""
    return rc == 255 and bool(SSH_FAILURE.search(stderr))
