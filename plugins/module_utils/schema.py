# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""The ``.nspawn`` key catalogue (systemd.nspawn(5)) as one table.

Every option is ``snake_case option -> Key(section, key, kind, privileged,
since, check, choices)``. ``kind`` picks the emitter; ``check`` validates one
value (or one list item) and returns the allowed form when it is wrong.
``privileged`` keys are ignored by systemd-nspawn in untrusted files (next to
the image in /var/lib/machines); ``since`` is the systemd version that added
the key. Pure data and pure functions: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from ansible_collections.corral.nspawn.plugins.module_utils.names import ifname_error, zone_name_error

SECTIONS = ("Exec", "Files", "Network")
KINDS = ("bool", "int", "str", "path", "enum", "list_repeated", "list_joined")

Check = Callable[[str], Optional[str]]


@dataclass(frozen=True)
class Key:
    """One catalogue entry."""

    section: str
    key: str
    kind: str
    privileged: bool = False
    since: int = 226
    check: Optional[Check] = None
    choices: Tuple[str, ...] = ()
    bools: bool = False      # enum/str that also takes a boolean (written yes/no)
    quote: bool = False      # list items are words systemd splits on whitespace: quote them
    minimum: Optional[int] = None
    maximum: Optional[int] = None


# ---------------------------------------------------------------- item validators
# Each returns None when the value is fine, else the allowed form (the caller
# names the option and the value).

_SIGNALS = ("HUP INT QUIT ILL TRAP ABRT BUS FPE KILL USR1 SEGV USR2 PIPE ALRM TERM STKFLT CHLD CONT STOP "
            "TSTP TTIN TTOU URG XCPU XFSZ VTALRM PROF WINCH IO PWR SYS").split()
_SIGNAL_RT = re.compile(r"^SIGRT(MIN|MAX)([+-]\d{1,2})?$")
_CAP = re.compile(r"^CAP_[A-Z0-9_]+$")
_CAP_OR_ALL = re.compile(r"^(all|CAP_[A-Z0-9_]+)$")
_SYSCALL = re.compile(r"^~?@?[a-z0-9_-]+(:[A-Za-z0-9_]+)?$")
_RLIMIT_VALUE = r"(infinity|\d+(\.\d+)?[A-Za-z]*)"
_RLIMIT = re.compile(rf"^{_RLIMIT_VALUE}(:{_RLIMIT_VALUE})?$")
_MACHINE_ID = re.compile(r"^([0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")
_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$|^\d+$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=[^\n]*\Z")
_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_PORT = re.compile(r"^(?:(tcp|udp):)?(\d{1,5})(?::(\d{1,5}))?$")
_CPUS = re.compile(r"^\s*(numa|\d+(-\d+)?([,\s]+\d+(-\d+)?)*)\s*$")
_PRIVATE_USERS = re.compile(r"^(yes|no|true|false|on|off|pick|identity|managed|\d+(:\d+)?)$")
_BIND_OPTIONS = ("rbind", "norbind", "idmap", "noidmap", "rootidmap", "owneridmap")


def split_colons(value: str) -> list:
    """Split on ':' that is not escaped as '\\:' (systemd's escaping in mount specs)."""
    return [part.replace("\\:", ":") for part in re.split(r"(?<!\\):", value)]


def _absolute(path: str) -> bool:
    return path.startswith("/") and "\n" not in path


def _source(path: str) -> bool:
    # '+PATH' is relative to the container's root directory (systemd-nspawn(1)).
    return _absolute(path) or (path.startswith("+") and len(path) > 1)


def check_path(value: str) -> Optional[str]:
    return None if _absolute(value) else "must be an absolute path"


def check_bind(value: str) -> Optional[str]:
    form = ("must be SOURCE[:DEST[:OPTIONS]] with SOURCE absolute (or +PATH, relative to the container root), "
            f"DEST absolute and OPTIONS a comma list of {', '.join(_BIND_OPTIONS)}")
    parts = split_colons(value)
    if len(parts) > 3 or not _source(parts[0]):
        return form
    if len(parts) > 1 and not _absolute(parts[1]):
        return form
    if len(parts) == 3 and not all(opt in _BIND_OPTIONS for opt in parts[2].split(",")):
        return form
    return None


def check_tmpfs(value: str) -> Optional[str]:
    parts = split_colons(value)
    if not _absolute(parts[0]) or len(parts) > 2:
        return "must be PATH[:OPTIONS] with PATH absolute (inside the container), e.g. /tmp:mode=1777,size=64M"
    return None


def check_overlay(value: str) -> Optional[str]:
    form = ("must be at least two colon-separated paths LOWER[:LOWER...]:UPPER:DEST, each absolute "
            "(or +PATH relative to the container root; UPPER may be empty for a temporary one)")
    parts = split_colons(value)
    if len(parts) < 2 or not _absolute(parts[-1]):
        return form
    for index, part in enumerate(parts[:-1]):
        if not (_source(part) or (part == "" and index == len(parts) - 2 and len(parts) > 2)):
            return form
    return None


def check_pivot_root(value: str) -> Optional[str]:
    parts = split_colons(value)
    if len(parts) > 2 or not all(_absolute(p) for p in parts):
        return "must be PATH or PATH:PATH, both absolute paths inside the container"
    return None


def check_port(value: str) -> Optional[str]:
    form = "must be [tcp|udp:]HOSTPORT[:CONTAINERPORT] with ports 1-65535, e.g. tcp:8080:80"
    match = _PORT.match(value)
    if not match:
        return form
    ports = [int(p) for p in match.groups()[1:] if p is not None]
    return None if all(1 <= p <= 65535 for p in ports) else form


def _matching(pattern: re.Pattern, form: str) -> Callable[[str], Optional[str]]:
    """A validator that accepts what ``pattern`` matches and otherwise answers the allowed ``form``."""
    return lambda value: None if pattern.match(value) else form


check_capability = _matching(_CAP_OR_ALL, "must be a capability name like CAP_NET_ADMIN (see capabilities(7)) or 'all'")
check_ambient_capability = _matching(_CAP, "must be a capability name like CAP_NET_BIND_SERVICE ('all' is not "
                                           "supported here)")
check_syscall = _matching(_SYSCALL, "must be a system call name or @group, optionally prefixed with ~ to deny it, "
                                    "e.g. @system-service")


def check_signal(value: str) -> Optional[str]:
    name = value.upper()
    if (name.isdigit() and 1 <= int(name) <= 64) or _SIGNAL_RT.match(name):
        return None
    if name.removeprefix("SIG") in _SIGNALS:
        return None
    return "must be a signal name like SIGTERM or SIGRTMIN+3, or a number 1-64"


check_machine_id = _matching(_MACHINE_ID, "must be a 128-bit ID: 32 hex digits or a UUID")
check_user = _matching(_USER, "must be a UNIX user name (letters, digits, '_', '.', '-') or a UID")


check_environment = _matching(_ENV, "must be NAME=VALUE with NAME of letters, digits and '_' (not starting with a "
                                    "digit)")


def check_hostname(value: str) -> Optional[str]:
    labels = value.rstrip(".").split(".")
    if len(value) <= 64 and all(_HOST_LABEL.match(label) for label in labels):
        return None
    return "must be a hostname: dot-separated labels of letters, digits and '-', at most 64 characters"


check_rlimit = _matching(_RLIMIT, "must be LIMIT or SOFT:HARD, each a number (with an optional unit such as 64K "
                                  "or 10s) or 'infinity'")
check_cpus = _matching(_CPUS, "must be CPU numbers and ranges such as 0-3,6, or 'numa'")


def check_private_users(value: str) -> Optional[str]:
    if value in ("0", "1"):
        # systemd parses a boolean first: "0" is "no" (user namespacing off), not "IDs from 0"
        meaning = "no (user namespacing off)" if value == "0" else "yes (IDs from the owner of the root)"
        return (f"is read by systemd as the boolean {meaning}, not as a base UID; to map the container's "
                f"IDs from {value} give \"{value}:65536\" (UID:RANGE, e.g. to undo private_users: pick with "
                "private_users_ownership: chown), to switch it off give false")
    if _PRIVATE_USERS.match(value.lower()):
        return None
    return "must be a boolean, 'pick', 'identity', 'managed', a base UID, or UID:RANGE"


def check_ifname(value: str) -> Optional[str]:
    error = ifname_error(value)
    return f"is not an interface name: {error}" if error else None


def check_ifname_pair(value: str) -> Optional[str]:
    parts = value.split(":")
    if len(parts) <= 2 and all(ifname_error(p) is None for p in parts):
        return None
    return "must be HOSTIF or HOSTIF:CONTAINERIF, each a valid interface name (at most 15 characters)"


def check_zone(value: str) -> Optional[str]:
    error = zone_name_error(value)
    return f"is not a zone name: {error}" if error else None


def check_word(value: str) -> Optional[str]:
    if "\n" in value or "\\" in value or ('"' in value and "'" in value):
        return "must be one line without backslashes and without both kinds of quotes"
    return None


# ---------------------------------------------------------------- the table

def _limit(key: str) -> Key:
    return Key("Exec", key, "str", since=239, check=check_rlimit)


RESOLV_CONF = ("off", "copy-host", "copy-static", "copy-uplink", "copy-stub", "replace-host", "replace-static",
               "replace-uplink", "replace-stub", "bind-host", "bind-static", "bind-uplink", "bind-stub",
               "delete", "auto")
LIMITS = ("CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NOFILE", "AS", "NPROC", "MEMLOCK", "LOCKS",
          "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME")

TABLE: Dict[str, Key] = {
    # [Exec]
    "boot": Key("Exec", "Boot", "bool"),
    "ephemeral": Key("Exec", "Ephemeral", "bool", since=240),
    "process_two": Key("Exec", "ProcessTwo", "bool", since=229),
    "parameters": Key("Exec", "Parameters", "list_joined", check=check_word, quote=True),
    "environment": Key("Exec", "Environment", "list_repeated", check=check_environment, quote=True),
    "user": Key("Exec", "User", "str", check=check_user),
    "working_directory": Key("Exec", "WorkingDirectory", "path", since=229, check=check_path),
    "pivot_root": Key("Exec", "PivotRoot", "str", since=233, check=check_pivot_root),
    "capability": Key("Exec", "Capability", "list_joined", privileged=True, check=check_capability),
    "drop_capability": Key("Exec", "DropCapability", "list_joined", check=check_capability),
    "ambient_capability": Key("Exec", "AmbientCapability", "list_joined", privileged=True, since=248,
                              check=check_ambient_capability),
    "no_new_privileges": Key("Exec", "NoNewPrivileges", "bool", since=239),
    "kill_signal": Key("Exec", "KillSignal", "str", since=230, check=check_signal),
    "personality": Key("Exec", "Personality", "enum", choices=("x86", "x86-64")),
    "machine_id": Key("Exec", "MachineID", "str", privileged=True, check=check_machine_id),
    "private_users": Key("Exec", "PrivateUsers", "str", privileged=True, since=230, check=check_private_users,
                         bools=True),
    "notify_ready": Key("Exec", "NotifyReady", "bool", since=231),
    "system_call_filter": Key("Exec", "SystemCallFilter", "list_joined", privileged=True, since=235,
                              check=check_syscall),
    **{f"limit_{name.lower()}": _limit(f"Limit{name}") for name in LIMITS},
    "oom_score_adjust": Key("Exec", "OOMScoreAdjust", "int", since=239, minimum=-1000, maximum=1000),
    "cpu_affinity": Key("Exec", "CPUAffinity", "str", since=239, check=check_cpus),
    "hostname": Key("Exec", "Hostname", "str", since=239, check=check_hostname),
    "resolv_conf": Key("Exec", "ResolvConf", "enum", since=239, choices=RESOLV_CONF),
    "timezone": Key("Exec", "Timezone", "enum", since=239, choices=("off", "copy", "bind", "symlink", "delete", "auto")),
    "link_journal": Key("Exec", "LinkJournal", "enum", since=239,
                        choices=("no", "host", "try-host", "guest", "try-guest", "auto")),
    "suppress_sync": Key("Exec", "SuppressSync", "bool", since=250),
    # [Files]
    "read_only": Key("Files", "ReadOnly", "bool"),
    "volatile": Key("Files", "Volatile", "enum", choices=("yes", "no", "state", "overlay"), bools=True),
    "bind": Key("Files", "Bind", "list_repeated", privileged=True, check=check_bind),
    "bind_read_only": Key("Files", "BindReadOnly", "list_repeated", privileged=True, check=check_bind),
    "bind_user": Key("Files", "BindUser", "list_repeated", privileged=True, since=249, check=check_user),
    "temporary_file_system": Key("Files", "TemporaryFileSystem", "list_repeated", privileged=True,
                                 check=check_tmpfs),
    "inaccessible": Key("Files", "Inaccessible", "list_repeated", privileged=True, since=242, check=check_path),
    "overlay": Key("Files", "Overlay", "list_repeated", privileged=True, since=233, check=check_overlay),
    "overlay_read_only": Key("Files", "OverlayReadOnly", "list_repeated", privileged=True, since=233,
                             check=check_overlay),
    "private_users_ownership": Key("Files", "PrivateUsersOwnership", "enum", privileged=True, since=249,
                                   choices=("off", "chown", "map", "foreign", "auto")),
    "private_users_chown": Key("Files", "PrivateUsersChown", "bool", privileged=True, since=230),
    # [Network]: systemd ignores the whole section in untrusted files
    "private_network": Key("Network", "Private", "bool", privileged=True),
    "virtual_ethernet": Key("Network", "VirtualEthernet", "bool", privileged=True),
    "virtual_ethernet_extra": Key("Network", "VirtualEthernetExtra", "list_repeated", privileged=True, since=228,
                                  check=check_ifname_pair),
    "interface": Key("Network", "Interface", "list_joined", privileged=True, check=check_ifname_pair),
    "macvlan": Key("Network", "MACVLAN", "list_joined", privileged=True, check=check_ifname_pair),
    "ipvlan": Key("Network", "IPVLAN", "list_joined", privileged=True, check=check_ifname_pair),
    "bridge": Key("Network", "Bridge", "str", privileged=True, check=check_ifname),
    "zone": Key("Network", "Zone", "str", privileged=True, since=230, check=check_zone),
    "port": Key("Network", "Port", "list_repeated", privileged=True, check=check_port),
}

# (section, Key) -> option
BY_KEY: Dict[Tuple[str, str], str] = {(spec.section, spec.key): option for option, spec in TABLE.items()}

# Options whose name is not simply the snake_case of the systemd key.
RENAMED = {"private_network": "Private"}


def snake_case(key: str) -> str:
    """'VirtualEthernetExtra' -> 'virtual_ethernet_extra', 'OOMScoreAdjust' -> 'oom_score_adjust'."""
    words = re.findall(r"[A-Z]+(?=[A-Z][a-z]|\d|\b)|[A-Z]?[a-z]+|[A-Z]+|\d+", key)
    return "_".join(word.lower() for word in words)


def argspec(spec: Key) -> dict:
    """Ansible argument spec entry for one catalogue option."""
    if spec.kind == "bool":
        return {"type": "bool"}
    if spec.kind == "int":
        return {"type": "int"}
    if spec.kind in ("list_repeated", "list_joined"):
        return {"type": "list", "elements": "str"}
    if spec.bools:
        return {"type": "raw"}
    if spec.kind == "enum":
        return {"type": "str", "choices": list(spec.choices)}
    if spec.check is check_rlimit:
        return {"type": "raw"}  # an integer or 'infinity' / 'SOFT:HARD'
    # not type=path: these are paths inside the container, never expanded on the host
    return {"type": "str"}
