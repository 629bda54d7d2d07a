# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real systemd test hosts for corral.nspawn end-to-end tests and ``make demo``.

A test host is a Debian 12 (or, with ``suite="trixie"``, Debian 13) root booted with
``systemd-nspawn --boot`` in its own
network namespace. The controller (this machine) reaches it over a veth
point-to-point link from 198.18.0.0/15 and SSH, exactly as Ansible users reach
their hosts. Inside each host a simulated uplink namespace ("the internet",
203.0.113.0/24) makes NAT and port forwards testable without leaving the
namespaces created here.

Roots are debootstrapped once and cached under CACHE_DIR, keyed by a hash of the
package list, so a warm start copies instead of bootstrapping. Container images
for nested containers are built the same way and bind-mounted read-only into
every test host at /srv/corral/images.

Usage as a CLI (used by ``make demo``):
    python tests/e2e/harness.py build [--suite trixie]            # build/refresh cached roots
    python tests/e2e/harness.py up [--suite trixie] NAME [NAME..] # boot hosts, print inventory path
    python tests/e2e/harness.py down NAME [..]   # stop hosts
    python tests/e2e/harness.py clean [--all]    # remove leftovers of dead runs
    python tests/e2e/harness.py demo [--keep]    # sandbox host + playbooks/site.yml
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE_DIR = os.environ.get("CORRAL_TEST_CACHE", "/var/cache/corral-nspawn-test")
STATE_DIR = os.environ.get("CORRAL_TEST_STATE", "/run/corral-nspawn-test")
HOSTS_DIR = os.environ.get("CORRAL_TEST_HOSTS", "/var/lib/corral-nspawn-test/hosts")
IMAGES_DIR = os.path.join(CACHE_DIR, "images")
SUITE = "bookworm"            # the default generation: Debian 12, systemd 252, Python 3.11
# Generations a test host or container image can be built from (``suite=`` on boot/cached_root/make_host
# and ``--suite`` on the CLI): Debian release name -> the name of its container image directory.
SUITES = {"bookworm": "debian12", "trixie": "debian13"}
LINK_NET = "198.18"           # 198.18.<index>.0/30 per host, 198.18.0.0/15 is for testing
UPLINK_HOST = "203.0.113.1"   # host side of the simulated uplink
UPLINK_PEER = "203.0.113.2"   # "the internet"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,10}$")
RHYTHM = (True, True, False, False)  # changed of check -> apply -> check -> apply

HOST_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "systemd-container", "nftables", "python3",
    "python3-nftables", "python3-pyroute2", "openssh-server", "iproute2", "iputils-ping",
    "procps", "libpam-systemd", "rsync",
)
IMAGE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "iproute2", "iputils-ping")


class HarnessError(RuntimeError):
    """A test host could not be built, booted or reached; the message says why."""


def log(msg: str) -> None:
    print(f"[harness {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(argv, check=True, timeout=None, **kw) -> subprocess.CompletedProcess:
    """Run a local command (argv list), text mode, capturing output."""
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and res.returncode != 0:
        raise HarnessError(f"{' '.join(argv)} failed (rc={res.returncode}):\n{res.stdout[-2000:]}{res.stderr[-3000:]}")
    return res


# ---------------------------------------------------------------- requirements

REQUIRED_TOOLS = {
    "systemd-nspawn": "apt-get install systemd-container",
    "debootstrap": "apt-get install debootstrap",
    "ssh": "apt-get install openssh-client",
    "ssh-keygen": "apt-get install openssh-client",
    "ip": "apt-get install iproute2",
}


# Every test host runs systemd, journald, networkd, logind, a user manager per SSH login...
# as the controller's real root, and each holds inotify instances counted against root.
# The kernel default (128) runs out with several hosts plus nested containers; systemd then
# fails in odd places (units that never stop, hung reboots). Raised, never lowered.
KERNEL_MINIMUMS = {"fs/inotify/max_user_instances": 8192, "fs/inotify/max_user_watches": 524288}


def tune_kernel() -> None:
    for key, minimum in KERNEL_MINIMUMS.items():
        path = os.path.join("/proc/sys", key)
        with open(path, encoding="utf-8") as handle:
            current = int(handle.read().split()[0])
        if current < minimum:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(f"{minimum}\n")


def check_requirements() -> None:
    """Fail with a message naming what is missing (never skip silently)."""
    missing = [f"{tool} ({fix})" for tool, fix in REQUIRED_TOOLS.items() if not shutil.which(tool)]
    if os.geteuid() != 0:
        missing.append("root privileges (run as root)")
    if not os.path.isdir("/sys/fs/cgroup") or not os.path.exists("/proc/self/ns/net"):
        missing.append("cgroups and network namespaces in the kernel")
    if missing:
        raise HarnessError("test hosts cannot be booted; missing: " + "; ".join(missing))


# ---------------------------------------------------------------- mirror

def apt_mirror(sources_dir: str = "/etc/apt/sources.list.d", sources_list: str = "/etc/apt/sources.list") -> str:
    """The Debian mirror this machine's apt uses (read at run time), or $CORRAL_MIRROR."""
    if os.environ.get("CORRAL_MIRROR"):
        return os.environ["CORRAL_MIRROR"]
    for path in sorted(glob.glob(os.path.join(sources_dir, "*.sources"))):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        for stanza in text.split("\n\n"):
            if re.search(r"^Suites:.*\b" + SUITE + r"\b", stanza, re.M) and "security" not in stanza:
                match = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                if match:
                    return match.group(1)
    with contextlib.suppress(FileNotFoundError):
        with open(sources_list, encoding="utf-8") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb" and "security" not in line:
                    return parts[1] if not parts[1].startswith("[") else parts[2]
    raise HarnessError("no Debian mirror found in /etc/apt/sources.list(.d); set CORRAL_MIRROR")


# ---------------------------------------------------------------- root cache

# Bumped when a kind's preparation steps change, so cached roots of the old recipe are not reused.
ROOT_REVISIONS = {"host": "v4", "image": "v3"}


def _key(kind: str, packages, suite: str = SUITE) -> str:
    revision = ROOT_REVISIONS.get(kind, "v1")
    digest = hashlib.sha256(("\n".join([suite, kind] + sorted(packages)) + f"\n{revision}").encode()).hexdigest()
    return f"{kind}-{suite}-{digest[:12]}"


def check_suite(suite: str) -> str:
    """``suite`` when the harness can build it, else a HarnessError naming the allowed ones."""
    if suite not in SUITES:
        raise HarnessError(f"suite {suite!r}: use one of {', '.join(SUITES)}")
    return suite


@contextlib.contextmanager
def _lock(name: str):
    os.makedirs(STATE_DIR, exist_ok=True)
    with open(os.path.join(STATE_DIR, f"{name}.lock"), "w", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _debootstrap(dest: str, packages, suite: str = SUITE) -> None:
    # One .deb cache per suite: both releases ship packages with the same name and other versions.
    debs = os.path.join(CACHE_DIR, "debs" if suite == SUITE else f"debs-{suite}")
    os.makedirs(debs, exist_ok=True)
    if not os.path.exists(os.path.join("/usr/share/debootstrap/scripts", suite)):
        raise HarnessError(f"debootstrap on this machine has no script for {suite} "
                           f"(/usr/share/debootstrap/scripts/{suite}); install a newer debootstrap")
    # The newer release comes from the same mirror this machine's apt uses for its own release.
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
            f"--cache-dir={debs}", suite, dest, apt_mirror()]
    log(f"debootstrap {suite} with {len(packages)} packages into {dest} (cold build, ~1-2 min)")
    res = sh(argv, check=False)
    if res.returncode != 0:
        raise HarnessError(f"debootstrap failed (rc={res.returncode}):\n{res.stdout[-3000:]}{res.stderr[-2000:]}")


def _write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, mode)


def _enable(root: str, unit: str, target: str = "multi-user.target") -> None:
    wants = os.path.join(root, "etc/systemd/system", f"{target}.wants")
    os.makedirs(wants, exist_ok=True)
    link = os.path.join(wants, os.path.basename(unit))
    if not os.path.lexists(link):
        os.symlink(unit, link)


def _prepare_common(root: str) -> None:
    """Boot-ready: empty machine-id, no hostname, apt without network, clean caches."""
    _write(os.path.join(root, "etc/machine-id"), "")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(root, "var/lib/dbus/machine-id"))
    _write(os.path.join(root, "etc/hostname"), "localhost\n")
    shutil.rmtree(os.path.join(root, "var/cache/apt/archives"), ignore_errors=True)
    os.makedirs(os.path.join(root, "var/cache/apt/archives/partial"), exist_ok=True)


UPLINK_UNIT = """[Unit]
Description=corral test harness: simulated uplink namespace ("the internet")
After=network-pre.target
Before=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/corral-test-uplink

[Install]
WantedBy=multi-user.target
"""

UPLINK_SCRIPT = f"""#!/bin/sh
# Simulated uplink: namespace "uplink" holds {UPLINK_PEER}/24, the host has {UPLINK_HOST}/24
# on uplink0. The namespace has no route to container subnets: replies need masquerade.
set -e
ip netns list | grep -qw uplink || ip netns add uplink
ip link show uplink0 >/dev/null 2>&1 || ip link add uplink0 type veth peer name eth0 netns uplink
ip addr replace {UPLINK_HOST}/24 dev uplink0
ip link set uplink0 up
ip -n uplink link set lo up
ip -n uplink addr replace {UPLINK_PEER}/24 dev eth0
ip -n uplink link set eth0 up
"""


def _prepare_image_root(root: str) -> None:
    """A container image whose own networkd configures host0 (DHCP from the test host, or static)."""
    _prepare_common(root)
    _enable(root, "/lib/systemd/system/systemd-networkd.service")


LINK_UNIT = """[Unit]
Description=corral test harness: address of host0, the link to the controller
Before=network.target ssh.service
Wants=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/corral-test-link

[Install]
WantedBy=multi-user.target
"""


def _prepare_host_root(root: str) -> None:
    """A host as a fresh Debian install with an SSH server is: systemd-networkd and machines.target
    are NOT enabled (the collection's host role enables them; tests must see that it does). The
    link to the controller is configured by a harness unit, not by networkd."""
    _prepare_common(root)
    _enable(root, "/lib/systemd/system/ssh.service")
    _write(os.path.join(root, "etc/systemd/system/corral-test-link.service"), LINK_UNIT)
    _enable(root, "/etc/systemd/system/corral-test-link.service")
    _write(os.path.join(root, "usr/local/sbin/corral-test-uplink"), UPLINK_SCRIPT, 0o755)
    _write(os.path.join(root, "etc/systemd/system/corral-test-uplink.service"), UPLINK_UNIT)
    _enable(root, "/etc/systemd/system/corral-test-uplink.service")
    _write(os.path.join(root, "etc/ssh/sshd_config.d/corral-test.conf"),
           "PermitRootLogin prohibit-password\nUseDNS no\nMaxStartups 100\nMaxSessions 100\n")
    # The stock units nspawn would use for nested containers expect /var/lib/machines.
    os.makedirs(os.path.join(root, "var/lib/machines"), exist_ok=True)
    for suite in SUITES:
        os.makedirs(os.path.join(root, images_mount(suite).lstrip("/")), exist_ok=True)


# ---------------------------------------------------------------- bare host root + local package repository

# The "bare" host root lacks what the host role installs; the role installs it from a local
# package repository, bind-mounted read-only at APT_REPO_MOUNT, the host's only apt source
# (test hosts have no route out).
HOST_PREP = os.path.join(REPO, "plugins", "module_utils", "hostprep.py")
APT_REPO_MOUNT = "/srv/corral/apt"
APT_SOURCE = f"deb [trusted=yes] file:{APT_REPO_MOUNT} ./\n"


def host_role_packages() -> tuple:
    """What the host role installs on Debian by default, read from the module it calls
    (``FAMILIES`` in module_utils/hostprep.py, a literal) so tests follow it."""
    import ast  # pylint: disable=import-outside-toplevel
    with open(HOST_PREP, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "FAMILIES":
            family = ast.literal_eval(node.value)["Debian"]
            return tuple(family["packages"]) + tuple(family["bootstrap"])
    raise RuntimeError(f"no FAMILIES literal in {HOST_PREP}")


def bare_packages() -> tuple:
    role = set(host_role_packages())
    return tuple(p for p in HOST_PACKAGES if p not in role)


def _prepare_bare_root(root: str) -> None:
    _prepare_host_root(root)
    _write(os.path.join(root, "etc/apt/sources.list"),
           "# corral test harness: the only package source is a local repository\n" + APT_SOURCE)
    os.makedirs(os.path.join(root, APT_REPO_MOUNT.lstrip("/")), exist_ok=True)


def package_repo() -> str:
    """A flat apt repository (``Packages`` index) holding every .deb the suite's roots and the host
    role need, with their dependencies; fetched once by ``debootstrap --download-only`` through this
    machine's configured mirror into the shared .deb cache, then indexed with dpkg-scanpackages."""
    if not shutil.which("dpkg-scanpackages"):
        raise HarnessError("dpkg-scanpackages is missing: the local package repository for the bare test "
                           "host cannot be indexed (apt-get install dpkg-dev)")
    # python3-apt: Ansible's apt module installs its own binding with apt-get when it is missing.
    wanted = sorted(set(HOST_PACKAGES) | set(host_role_packages()) | {"python3-apt"})
    path = os.path.join(CACHE_DIR, "apt-repo", _key("repo", wanted))
    with _lock("apt-repo"):
        if os.path.isfile(os.path.join(path, "Packages")):
            return path
        debs = ensure_dir(os.path.join(CACHE_DIR, "debs"))
        target = tempfile.mkdtemp(prefix="download-", dir=ensure_dir(os.path.join(CACHE_DIR, "apt-repo")))
        try:
            log(f"debootstrap --download-only of {len(wanted)} packages for the local repository")
            sh(["debootstrap", "--download-only", "--variant=minbase", f"--include={','.join(wanted)}",
                f"--cache-dir={debs}", SUITE, target, apt_mirror()])
        finally:
            shutil.rmtree(target, ignore_errors=True)
        staging = path + ".staging"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        for name in sorted(os.listdir(debs)):
            if name.endswith(".deb"):
                _link_or_copy(os.path.join(debs, name), os.path.join(staging, name))
        index = sh(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], cwd=staging)
        _write(os.path.join(staging, "Packages"), index.stdout)
        shutil.rmtree(path, ignore_errors=True)
        os.rename(staging, path)
    return path


def _link_or_copy(src: str, dest: str) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


ROOT_KINDS = {
    "host": (lambda: HOST_PACKAGES, _prepare_host_root),
    "image": (lambda: IMAGE_PACKAGES, _prepare_image_root),
    "bare": (bare_packages, _prepare_bare_root),
}


def cached_root(kind: str, suite: str = SUITE) -> str:
    """Path of the cached root of ``kind`` ('host', 'bare' or 'image') of Debian ``suite``, building
    it if needed."""
    if kind not in ROOT_KINDS:
        raise HarnessError(f"root kind {kind!r}: use one of {', '.join(ROOT_KINDS)}")
    check_suite(suite)
    if kind == "bare" and suite != SUITE:
        raise HarnessError(f"root kind 'bare' exists for {SUITE} only (its local package repository is "
                           f"built from {SUITE} packages), not for {suite!r}")
    packages_of, prepare = ROOT_KINDS[kind]
    packages = packages_of()
    path = os.path.join(CACHE_DIR, "roots", _key(kind, packages, suite))
    with _lock(f"build-{kind}" if suite == SUITE else f"build-{kind}-{suite}"):
        if os.path.isfile(os.path.join(path, ".corral-complete")):
            return path
        staging = path + ".staging"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        started = time.monotonic()
        _debootstrap(staging, packages, suite)
        prepare(staging)
        _write(os.path.join(staging, ".corral-complete"), f"{time.monotonic() - started:.1f}\n")
        shutil.rmtree(path, ignore_errors=True)
        os.rename(staging, path)
        log(f"built {kind} {suite} root in {time.monotonic() - started:.0f} s")
    return path


def images_mount(suite: str = SUITE) -> str:
    """Where a test host sees the container images of ``suite``: ``/srv/corral/images`` holds
    debian12/ and debian12.tar, ``/srv/corral/images-trixie`` debian13/ and debian13.tar."""
    check_suite(suite)
    return "/srv/corral/images" if suite == SUITE else f"/srv/corral/images-{suite}"


def image_path(suite: str = SUITE, tar: bool = False) -> str:
    """Path, on a test host, of the container image directory (or tarball) of ``suite``."""
    return os.path.join(images_mount(suite), SUITES[suite] + (".tar" if tar else ""))


def container_images(suite: str = SUITE) -> str:
    """Directory holding debian12/ and debian12.tar (debian13/... for trixie) for nested containers
    (bind-mounted read-only into test hosts at :func:`images_mount`)."""
    src = cached_root("image", suite)
    images, name = (IMAGES_DIR if suite == SUITE else f"{IMAGES_DIR}-{suite}"), SUITES[suite]
    with _lock("images" if suite == SUITE else f"images-{suite}"):
        stamp = os.path.join(images, ".source")
        if os.path.isfile(stamp) and open(stamp, encoding="utf-8").read() == src:
            return images
        shutil.rmtree(images, ignore_errors=True)
        os.makedirs(images)
        sh(["cp", "-a", "--reflink=auto", src, os.path.join(images, name)])
        os.unlink(os.path.join(images, name, ".corral-complete"))
        sh(["tar", "-C", os.path.join(images, name), "--numeric-owner", "--xattrs", "-cf",
            os.path.join(images, f"{name}.tar"), "."])
        _write(stamp, src)
    return images


# ---------------------------------------------------------------- SSH key

def ssh_key() -> str:
    key = os.path.join(CACHE_DIR, "ssh", "id_ed25519")
    with _lock("sshkey"):
        if not os.path.exists(key):
            os.makedirs(os.path.dirname(key), mode=0o700, exist_ok=True)
            sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "corral-test-harness", "-f", key])
    return key


SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes"]


# ---------------------------------------------------------------- host fingerprint

# Runs on a test host (python3): everything corral.nspawn manages, read so that a check-mode run
# (or a no-op run) that touched any of it shows up as a difference. Files: type, mode, mtime in
# nanoseconds and content hash; links and addresses as ip reports them (minus counters, timers
# and address lifetimes, which change by themselves); the whole ruleset without counters.
FINGERPRINT_SCRIPT = r"""
import glob, hashlib, json, os, stat, subprocess, sys
TREES = ["/etc/systemd/nspawn", "/etc/systemd/network", "/etc/nftables.d", "/run/systemd/system.control"]
TREES += glob.glob("/etc/systemd/system/systemd-nspawn@*.d") + glob.glob("/etc/systemd/system/*.wants")
TOP = ["/etc/systemd/system", "/etc/sysctl.d", "/var/lib/machines"]
FILES = ["/etc/nftables.conf"] + json.loads(sys.argv[1])
SYSCTLS = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv4.conf.all.route_localnet"]
out = {}

def entry(path):
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(info.st_mode):
        with open(path, "rb") as handle:
            kind = "file " + hashlib.sha256(handle.read()).hexdigest()[:16]
    elif stat.S_ISLNK(info.st_mode):
        kind = "link -> " + os.readlink(path)
    else:
        kind = "dir" if stat.S_ISDIR(info.st_mode) else "other"
    out["path " + path] = f"{kind} mode={oct(info.st_mode)} mtime_ns={info.st_mtime_ns}"

for top in TREES:
    for base, dirs, files in os.walk(top):
        entry(base)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(base, d))]:
            entry(os.path.join(base, name))
for top in TOP:
    entry(top)
    for name in (os.listdir(top) if os.path.isdir(top) else []):
        entry(os.path.join(top, name))
for path in FILES:
    entry(path)

def clean(value):
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()
                if not k.endswith("_timer") and k not in ("valid_life_time", "preferred_life_time", "stats64")}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value

def run(*argv):
    try:
        res = subprocess.run(argv, capture_output=True, text=True)
    except FileNotFoundError:
        return "(not installed)"  # nft on a host before the host role ran
    return res.stdout if res.returncode == 0 else f"rc={res.returncode} {res.stderr.strip()}"

for link in json.loads(run("ip", "-d", "-j", "link", "show")):
    out["link " + link["ifname"]] = json.dumps(clean(link), sort_keys=True)
for link in json.loads(run("ip", "-j", "addr", "show")):
    out["addr " + link["ifname"]] = json.dumps(clean(link.get("addr_info", [])), sort_keys=True)
out["nft ruleset"] = run("nft", "-s", "list", "ruleset")
for key in SYSCTLS:
    out["sysctl " + key] = run("sysctl", "-n", key).strip()
out["units"] = run("systemctl", "list-units", "--all", "--plain", "--no-legend", "--no-pager",
                   "systemd-nspawn@*", "machines.target", "systemd-networkd.service", "corral-*")
print(json.dumps(out, sort_keys=True))
"""


# ---------------------------------------------------------------- test hosts

WRAPPER = """#!/bin/bash
# Keeps a test host running across reboots (nspawn exits 133 on reboot) and
# configures the controller side of its point-to-point link each time it boots.
state="$1"; shift
# Each host in a cgroup of its own in the hybrid hierarchy (name=systemd and unified), else every
# host's units share one path (/payload/system.slice/ssh.service...): systemd 257 then waits, on
# every stop, for a cgroup that other hosts' processes keep non-empty (poweroff took 30-90 s).
for hierarchy in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do
  [ -e "$hierarchy/cgroup.procs" ] || continue
  mkdir -p "$hierarchy/corral-test/${state##*/}" && echo $$ > "$hierarchy/corral-test/${state##*/}/cgroup.procs" || true
done
while :; do
  "$@" &
  child=$!
  echo "$child" > "$state/nspawn.pid"
  for _ in $(seq 1 300); do
    if ip link show "$LINK" >/dev/null 2>&1; then
      ip addr replace "$LOCAL/30" dev "$LINK" && ip link set "$LINK" up && break
    fi
    kill -0 "$child" 2>/dev/null || break
    sleep 0.1
  done
  wait "$child"; rc=$?
  [ -e "$state/stop" ] && exit "$rc"
  [ "$rc" -eq 133 ] || exit "$rc"
done
"""


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    recap: dict = field(default_factory=dict)


RECAP_RE = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", re.M)


def parse_recap(stdout: str) -> dict:
    """{host: {ok, changed, unreachable, failed, skipped, rescued, ignored}} from PLAY RECAP."""
    recap = {}
    tail = stdout.split("PLAY RECAP", 1)[-1]
    for host, counts in RECAP_RE.findall(tail):
        recap[host] = {k: int(v) for k, v in (c.split("=") for c in counts.split())}
    return recap


def ansible_env(**extra) -> dict:
    env = dict(os.environ)
    bindir = os.path.dirname(sys.executable)
    env.update({
        "ANSIBLE_CONFIG": os.path.join(REPO, "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".collections"),
        "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
        "PATH": bindir + os.pathsep + env.get("PATH", ""),
        "ANSIBLE_LOCAL_TEMP": os.path.join(STATE_DIR, "ansible-tmp"),
        # A test host's sshd answered its banner after Ansible's default 10 s once, with the 2 cores
        # of this machine busy (test_concurrency, full run): UNREACHABLE, not a product failure.
        "ANSIBLE_TIMEOUT": "30",
    })
    env.update(extra)
    return env


def ensure_collection_link() -> None:
    link = os.path.join(REPO, ".collections", "ansible_collections", "corral", "nspawn")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another pytest worker made it just now
            os.symlink(REPO, link)


class TestHost:
    """One booted test host; see module docstring."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str, index: int):
        self.name = name
        self.index = index
        self.address = f"{LINK_NET}.{index}.2"
        self.local = f"{LINK_NET}.{index}.1"
        self.link = f"ve-{name}"
        self.state = os.path.join(STATE_DIR, "hosts", name)
        self.root = os.path.join(HOSTS_DIR, name)
        self.inventory = os.path.join(self.state, "inventory.yml")

    # -- commands
    def ssh(self, cmd: str, check: bool = True, timeout: int = 120) -> subprocess.CompletedProcess:
        argv = ["ssh", *SSH_OPTS, "-i", ssh_key(), f"root@{self.address}", cmd]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                             check=False)
        if check and res.returncode != 0:
            raise HarnessError(f"[{self.name}] {cmd!r} failed (rc={res.returncode}):\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
        return res

    def in_machine(self, machine: str, cmd: str, **kwargs) -> subprocess.CompletedProcess:
        """``cmd`` in container ``machine`` on this host (see the module-level in_machine)."""
        return in_machine(self, machine, cmd, **kwargs)

    def uplink(self, cmd: str, check: bool = False, timeout: int = 60) -> subprocess.CompletedProcess:
        """Run ``cmd`` inside the simulated internet namespace of this host."""
        return self.ssh(f"ip netns exec uplink sh -c {shlex_quote(cmd)}", check=check, timeout=timeout)

    def playbook(self, path: str, extra_vars: Optional[dict] = None, check: bool = False, diff: bool = False,
                 extra_args=(), inventory: Optional[str] = None, timeout: int = 1200) -> PlaybookRun:
        return run_playbook(path, inventory or self.inventory, extra_vars, check, diff, extra_args, timeout)

    def module(self, name: str, args: dict, check: bool = False, diff: bool = False, timeout: int = 600) -> dict:
        """Run one module on this host and return its result dict."""
        fqcn = name if "." in name else f"corral.nspawn.{name}"
        play = [{"hosts": self.name, "gather_facts": False,
                 "tasks": [{"name": "module under test", fqcn: args, "register": "r", "ignore_errors": True},
                           {"name": "result", "ansible.builtin.copy": {
                               "content": "{{ r | to_json }}", "dest": "{{ _out }}"},
                            "delegate_to": "localhost", "check_mode": False, "diff": False}]}]
        with tempfile.TemporaryDirectory(dir=ensure_dir(os.path.join(STATE_DIR, "tmp"))) as tmp:
            book, out = os.path.join(tmp, "play.yml"), os.path.join(tmp, "out.json")
            with open(book, "w", encoding="utf-8") as handle:
                json.dump(play, handle)
            run = run_playbook(book, self.inventory, {"_out": out}, check, diff, (), timeout)
            if not os.path.exists(out):
                raise HarnessError(f"module {fqcn} produced no result:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}")
            with open(out, encoding="utf-8") as handle:
                return json.load(handle)

    def fingerprint(self, extra=(), settle: float = 20) -> dict:
        """What corral.nspawn manages on this host (see FINGERPRINT_SCRIPT), plus the files ``extra``.

        Read until two reads in a row agree (links of containers that just started settle for a
        moment), at most ``settle`` seconds; then the last read.
        """
        cmd = f"python3 -c {shlex_quote(FINGERPRINT_SCRIPT)} {shlex_quote(json.dumps(list(extra)))}"
        deadline = time.monotonic() + settle
        last = json.loads(self.ssh(cmd).stdout)
        while time.monotonic() < deadline:
            current = json.loads(self.ssh(cmd).stdout)
            if current == last:
                return current
            last = current
            time.sleep(0.5)
        return last

    def existing(self, *paths: str) -> list:
        """The ones of ``paths`` that exist on the host (symlinks included), checked one by one."""
        script = "for p in \"$@\"; do if [ -e \"$p\" ] || [ -L \"$p\" ]; then echo \"$p\"; fi; done"
        return self.ssh(f"sh -c {shlex_quote(script)} - " + " ".join(shlex_quote(p) for p in paths)).stdout.split()

    def stat(self, path: str) -> Optional[tuple]:
        """(mtime in ns, mode, sha256) of a file, or None when it does not exist."""
        out = self.ssh(f"if [ -e {shlex_quote(path)} ]; then stat -c '%.9Y %a' {shlex_quote(path)}; "
                       f"sha256sum < {shlex_quote(path)}; fi").stdout.split()
        return tuple(out[:3]) if out else None

    def role(self, role: str, role_vars: Optional[dict] = None, check: bool = False, diff: bool = False,
             timeout: int = 1200) -> PlaybookRun:
        """Apply one role (``corral.nspawn.host``...) to this host; the run must succeed."""
        play = [{"hosts": self.name, "gather_facts": False, "become": True,
                 "roles": [{"role": role, "vars": dict(role_vars or {})}]}]
        with tempfile.TemporaryDirectory(dir=ensure_dir(os.path.join(STATE_DIR, "tmp"))) as tmp:
            book = os.path.join(tmp, "play.yml")
            with open(book, "w", encoding="utf-8") as handle:
                json.dump(play, handle)
            before = self.fingerprint() if check else None
            run = run_playbook(book, self.inventory, None, check, diff, (), timeout)
        counts = run.recap.get(self.name, {})
        if run.rc != 0 or counts.get("failed", 1) or counts.get("unreachable", 1):
            raise AssertionError(f"[{self.name}] role {role} ({'check' if check else 'apply'}) failed "
                                 f"(rc={run.rc}, recap {counts}):\n{run.stdout[-5000:]}\n{run.stderr[-2000:]}")
        if check:  # after the success check, so a failed run is reported as such
            assert_same(before, self.fingerprint(), f"[{self.name}] role {role} (check)")
        return run

    def prepare(self, **role_vars) -> PlaybookRun:
        """What module-level tests need first, done the way users do it: the host role (networkd,
        machined, machines.target, forwarding). This root has no debootstrap and no package source."""
        return self.role("corral.nspawn.host", dict({"corral_host_bootstrap_packages": []}, **role_vars))

    def run(self, name: str, args: dict, check: bool = False, diff: bool = False, timeout: int = 600) -> dict:
        """Run one module that must succeed: its failure state is asserted before anyone reads ``changed``.

        A check-mode run must also leave :meth:`fingerprint` as it was.
        """
        what = f"[{self.name}] {name} ({'check' if check else 'apply'})"
        before = self.fingerprint() if check else None
        result = succeeded(self.module(name, args, check, diff, timeout), what)
        if check:
            assert_same(before, self.fingerprint(), what)
        return result

    def rhythm(self, name: str, args: dict, diff: bool = True, expect=RHYTHM,
               fingerprint: Optional[Callable[[], object]] = None, after=None, timeout: int = 600) -> list:
        """check -> apply -> check -> apply of one module; see :func:`rhythm`. The fingerprint
        compared around check-mode and no-op runs is :meth:`fingerprint` unless one is given."""
        def one(check: bool) -> dict:
            return self.module(name, args, check=check, diff=diff, timeout=timeout)
        return rhythm(one, fingerprint=fingerprint or self.fingerprint, expect=expect,
                      what=f"[{self.name}] {name}", after=after)

    # -- lifecycle
    def wait_ready(self, timeout: float = 120) -> float:
        """Wait for SSH and for systemd to finish booting; return seconds waited."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            if not self.alive():
                raise HarnessError(f"test host {self.name} exited while booting:\n{self.console_tail()}")
            try:
                if self.ssh("true", check=False, timeout=10).returncode == 0:
                    break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                raise HarnessError(f"test host {self.name} not reachable over SSH after {timeout:.0f} s:\n"
                                   f"{self.console_tail()}")
            time.sleep(0.3)
        remaining = max(5, int(deadline - time.monotonic()))
        res = self.ssh(f"timeout {remaining} systemctl is-system-running --wait", check=False, timeout=remaining + 10)
        state = res.stdout.strip()
        if state not in ("running", "degraded"):
            journal = self.ssh("journalctl -b --no-pager -n 60; systemctl --failed --no-pager", check=False).stdout
            raise HarnessError(f"test host {self.name}: systemd is {state or 'unreachable'!r}, "
                               f"not running/degraded:\n{journal}")
        return time.monotonic() - started

    def alive(self) -> bool:
        return pid_alive(read_pid(os.path.join(self.state, "wrapper.pid")))

    def console_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(FileNotFoundError):
            with open(os.path.join(self.state, "console.log"), encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        return "(no console log)"

    def reboot(self, timeout: float = 420) -> float:
        """Reboot the host the way an operator would, and wait until it is back.

        A machine that lost its halt signal (started just before the reboot) holds the shutdown for
        its unit's stop timeout, 90 s; the rest of ``timeout`` is room for a loaded machine. (Runs
        that took over 240 s or never ended were the unread console, see :func:`boot` and issue 10.)"""
        old = read_pid(os.path.join(self.state, "nspawn.pid"))
        self.ssh("systemctl reboot", check=False, timeout=30)
        deadline = time.monotonic() + timeout
        while read_pid(os.path.join(self.state, "nspawn.pid")) == old or not link_has(self.link, self.local):
            if time.monotonic() > deadline or not self.alive():
                stuck = "still shutting down" if read_pid(os.path.join(self.state, "nspawn.pid")) == old \
                    else "booted again but its link has no address"
                raise HarnessError(f"test host {self.name} did not come back from reboot ({stuck}):\n"
                                   f"{self.inside('systemctl list-jobs --no-pager; journalctl -n 60 --no-pager')}"
                                   f"\n{self.console_tail()}")
            time.sleep(0.3)
        return self.wait_ready(max(30, deadline - time.monotonic()))

    def inside(self, cmd: str) -> str:
        """Run ``cmd`` in the host's namespaces without SSH (diagnostics when SSH is gone)."""
        nspawn = read_pid(os.path.join(self.state, "nspawn.pid"))
        with contextlib.suppress(FileNotFoundError, ValueError, TypeError):
            with open(f"/proc/{nspawn}/task/{nspawn}/children", encoding="utf-8") as handle:
                leader = int(handle.read().split()[0])
            try:
                res = sh(["nsenter", "-t", str(leader), "-m", "-u", "-i", "-n", "-p", "sh", "-c", cmd],
                         check=False, timeout=30)
            except subprocess.TimeoutExpired as exc:
                return f"(no answer from inside the host within 30 s: {exc.cmd[-1]!r})"
            return res.stdout[-6000:] + res.stderr[-1000:]
        return "(host has no running init to inspect)"


def shlex_quote(text: str) -> str:
    import shlex
    return shlex.quote(text)


def wait_until(predicate: Callable, timeout: float = 30.0, what: Optional[str] = None, interval: float = 0.3):
    """Poll ``predicate`` (never a fixed sleep) until it returns something true; return that value.

    At the deadline: with ``what``, fail naming what did not happen; without, return the last
    (false) value so the caller's ``assert wait_until(...), why`` says why."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            if what is not None:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            return value
        time.sleep(interval)


def in_machine(host: "TestHost", machine: str, cmd: str, check: bool = False, timeout: int = 60,
               shell: bool = False) -> subprocess.CompletedProcess:
    """Run ``cmd`` in running container ``machine`` through its systemd, output piped back.

    ``cmd`` is split by the test host's shell into the argv run in the container; ``shell``: ``cmd``
    is one shell line run by /bin/sh in the container (redirections and ``&&`` happen in there)."""
    argv = f"/bin/sh -c {shlex_quote(cmd)}" if shell else cmd
    return host.ssh(f"systemd-run --machine={machine} --quiet --wait --pipe --collect -- {argv}", check=check,
                    timeout=timeout)


def ensure_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def read_pid(path: str) -> Optional[int]:
    with contextlib.suppress(FileNotFoundError, ValueError):
        with open(path, encoding="utf-8") as handle:
            return int(handle.read().strip())
    return None


def pid_alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(FileNotFoundError):
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    return False


def link_has(link: str, address: str) -> bool:
    res = sh(["ip", "-o", "-4", "addr", "show", "dev", link], check=False)
    return res.returncode == 0 and f" {address}/" in res.stdout


def run_playbook(path, inventory, extra_vars=None, check=False, diff=False, extra_args=(), timeout=1200) -> PlaybookRun:
    ensure_collection_link()
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, path]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    argv += (["--check"] if check else []) + (["--diff"] if diff else []) + list(extra_args)
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=ansible_env(),
                         cwd=REPO, stdin=subprocess.DEVNULL, check=False)
    return PlaybookRun(res.returncode, res.stdout, res.stderr, parse_recap(res.stdout))


# ---------------------------------------------------------------- results of module runs

def succeeded(result: dict, what: str = "module run") -> dict:
    """``result`` when the run succeeded; else an AssertionError saying why.

    Ansible reports ``changed: false`` for a failed (or unreachable) task, so reading
    ``changed`` without this check lets a failed idempotence run pass as "no change".
    """
    problems = []
    if result.get("failed"):
        problems.append("failed")
    if result.get("unreachable"):
        problems.append("unreachable")
    if result.get("skipped"):
        problems.append("skipped")
    if result.get("rc") not in (None, 0):
        problems.append(f"rc={result.get('rc')}")
    if not isinstance(result.get("changed"), bool):
        problems.append("no boolean 'changed' in the result")
    if problems:
        detail = json.dumps(result, default=str)[-3000:]
        raise AssertionError(f"{what}: {', '.join(problems)}: {result.get('msg', '')}\n{detail}")
    return result


def assert_same(before, after, what: str) -> None:
    """Equal fingerprints, or an AssertionError listing the keys that differ."""
    if before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        lines = [f"  {k}: {before.get(k, '(absent)')!r} -> {after.get(k, '(absent)')!r}" for k in keys[:30]]
        raise AssertionError(f"{what} changed the host:\n" + "\n".join(lines))
    raise AssertionError(f"{what} changed the host:\n  before: {before!r}\n  after:  {after!r}")


def rhythm(run: Callable[[bool], dict], fingerprint: Optional[Callable[[], object]] = None,
           expect=RHYTHM, what: str = "module", after=None) -> list:
    """check -> apply -> check -> apply; returns the four results.

    Every run must succeed (:func:`succeeded`) before its ``changed`` is compared with
    ``expect``. With ``fingerprint``, every check-mode run and every run expected to change
    nothing must leave the fingerprint as it was. ``after(index, result)`` inspects the host
    after each run (index 0..3).
    """
    results = []
    for index, check in enumerate((True, False, True, False)):
        label = f"{what} run {index + 1}/4 ({'check' if check else 'apply'})"
        guard = fingerprint is not None and (check or not expect[index])
        before = fingerprint() if guard else None
        result = succeeded(run(check), label)
        if guard:
            assert_same(before, fingerprint(), label)
        if after:
            after(index, result)
        results.append(result)
    changed = [r["changed"] for r in results]
    assert changed == list(expect), f"{what}: changed {changed}, expected {list(expect)}: " \
                                    f"{[r.get('changes') for r in results]}"
    return results


# ---------------------------------------------------------------- host registry

def _allocate_index(name: str) -> int:
    used = set()
    for path in glob.glob(os.path.join(STATE_DIR, "hosts", "*", "index")):
        if os.path.basename(os.path.dirname(path)) != name:
            used.add(read_pid(path))
    for index in range(10, 250):
        if index not in used:
            return index
    raise HarnessError("no free test-host index left in 198.18.10-249.0/30")


def _write_inventory(hosts) -> str:
    """YAML inventory (JSON is valid YAML) for ``hosts`` in group test_hosts."""
    key = ssh_key()
    data = {"all": {"children": {"test_hosts": {"hosts": {
        h.name: {"ansible_host": h.address, "ansible_user": "root",
                 "ansible_ssh_private_key_file": key,
                 "ansible_ssh_common_args": " ".join(SSH_OPTS[:8]),
                 # Ansible's SSH master for a stopped host lingers (ControlPersist) and its default socket is
                 # keyed by address: a host booted on a reused address within that time was UNREACHABLE
                 # ("Data could not be sent"). The socket lives in the host's own state directory.
                 "ansible_control_path_dir": os.path.join(STATE_DIR, "hosts", h.name, "cp"),
                 "ansible_python_interpreter": "/usr/bin/python3"} for h in hosts}}}}}
    return json.dumps(data, indent=2)


def boot(name: str, owner: Optional[int] = None, timeout: float = 120, root: str = "host",
         suite: str = SUITE, images: Optional[tuple] = None) -> TestHost:
    """Copy the cached host root, boot it and wait until it is reachable and running.

    ``root="bare"``: a root without the packages the host role installs, with a local package
    repository as its only apt source (see :func:`package_repo`). ``suite``: the Debian release
    of the host (:data:`SUITES`). ``images``: the suites whose container images are bind-mounted
    (:func:`images_mount`); default: the host's own suite plus the default one.
    """
    if not NAME_RE.match(name):
        raise HarnessError(f"test host name {name!r}: use 1-11 characters [a-z0-9-] (it becomes ve-NAME)")
    if root not in ("host", "bare"):
        raise HarnessError(f"test host root {root!r}: use 'host' or 'bare'")
    check_suite(suite)
    images = tuple(dict.fromkeys(images if images is not None else (SUITE, suite)))
    for image_suite in images:
        check_suite(image_suite)
    check_requirements()
    tune_kernel()
    host_root = cached_root(root, suite)
    binds = [f"--bind-ro={container_images(s)}:{images_mount(s)}" for s in images]
    if root == "bare":
        binds.append(f"--bind-ro={package_repo()}:{APT_REPO_MOUNT}")
    with _lock("registry"):
        stop(name)
        index = _allocate_index(name)
        host = TestHost(name, index)
        os.makedirs(host.state, exist_ok=True)
        _write(os.path.join(host.state, "index"), f"{index}\n")
        _write(os.path.join(host.state, "owner"), f"{owner or os.getpid()}\n")
    started = time.monotonic()
    os.makedirs(HOSTS_DIR, exist_ok=True)
    sh(["cp", "-a", "--reflink=auto", host_root, host.root])
    _personalize(host)
    _write(os.path.join(host.state, "wrapper"), WRAPPER, 0o755)
    # --console=read-only: nspawn drains the host's console into console.log, as a real console (VT,
    # serial line) is always drained. With --console=passive the pty is "not connected anywhere":
    # once its few KB filled (boot and shutdown status lines, "A stop job is running..."), the
    # host's PID 1 blocked for good in write() to /dev/console and its shutdown never ended (issue 10).
    argv = ["systemd-nspawn", "-D", host.root, "-M", name, "--register=no", "--keep-unit",
            "--console=read-only", "--network-veth", "--capability=all", "--private-users=no",
            *binds, "--boot"]
    env = dict(os.environ, LINK=host.link, LOCAL=host.local, SYSTEMD_LOG_LEVEL="warning")
    with open(os.path.join(host.state, "console.log"), "w", encoding="utf-8") as console:
        proc = subprocess.Popen([os.path.join(host.state, "wrapper"), host.state, *argv], stdin=subprocess.DEVNULL,
                                stdout=console, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    _write(os.path.join(host.state, "wrapper.pid"), f"{proc.pid}\n")
    _write(host.inventory, _write_inventory([host]))
    try:
        host.wait_ready(timeout)
    except Exception:
        stop(name)
        raise
    log(f"test host {name} ({host.address}) ready in {time.monotonic() - started:.1f} s")
    return host


def _personalize(host: TestHost) -> None:
    root = host.root
    with open(ssh_key() + ".pub", encoding="utf-8") as handle:
        _write(os.path.join(root, "root/.ssh/authorized_keys"), handle.read(), 0o600)
    os.chmod(os.path.join(root, "root/.ssh"), 0o700)
    _write(os.path.join(root, "etc/hostname"), f"{host.name}\n")
    # Until the host role enables networkd, corral-test-link.service sets the address; once it
    # runs, networkd finds the same static address here (instead of the stock DHCP for host0).
    _write(os.path.join(root, "usr/local/sbin/corral-test-link"),
           f"#!/bin/sh\nset -e\nip link set host0 up\nip addr replace {host.address}/30 dev host0\n", 0o755)
    _write(os.path.join(root, "etc/systemd/network/10-host0.network"),
           f"[Match]\nName=host0\n\n[Network]\nAddress={host.address}/30\nLinkLocalAddressing=no\n"
           "IPv6AcceptRA=no\n")


def stop(name: str, timeout: float = 30) -> None:
    """Power the host off (then kill it), remove its root, link and state."""
    state = os.path.join(STATE_DIR, "hosts", name)
    if os.path.isdir(state):
        _write(os.path.join(state, "stop"), "")
        wrapper = read_pid(os.path.join(state, "wrapper.pid"))
        nspawn = read_pid(os.path.join(state, "nspawn.pid"))
        if pid_alive(nspawn):
            with contextlib.suppress(ProcessLookupError):
                os.kill(nspawn, signal.SIGTERM)  # nspawn asks the container's init to power off
        deadline = time.monotonic() + timeout
        while pid_alive(wrapper) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in (nspawn, wrapper):
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
    sh(["ip", "link", "del", f"ve-{name}"], check=False)
    _remove_cgroups(name)
    root = os.path.join(HOSTS_DIR, name)
    if os.path.isdir(root):
        _unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)


CGROUP_HIERARCHIES = ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified")


def _remove_cgroups(name: str) -> None:
    """The (now empty) cgroups the wrapper made for host ``name``, deepest first."""
    for hierarchy in CGROUP_HIERARCHIES:
        top = os.path.join(hierarchy, "corral-test", name)
        for base, _dirs, _files in sorted(os.walk(top), key=lambda entry: -entry[0].count("/")):
            with contextlib.suppress(OSError):
                os.rmdir(base)


def _unmount_below(path: str) -> None:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        mounts = [line.split()[4] for line in handle]
    for mount in sorted((m for m in mounts if m == path or m.startswith(path + "/")), reverse=True):
        sh(["umount", "-l", mount], check=False)


def clean(all_hosts: bool = False) -> list:
    """Stop hosts whose owning process is gone (or all with ``all_hosts``)."""
    stopped = []
    for state in glob.glob(os.path.join(STATE_DIR, "hosts", "*")):
        name = os.path.basename(state)
        owner = read_pid(os.path.join(state, "owner"))
        if all_hosts or not pid_alive(owner):
            stop(name)
            stopped.append(name)
    for root in glob.glob(os.path.join(HOSTS_DIR, "*")):
        if not os.path.isdir(os.path.join(STATE_DIR, "hosts", os.path.basename(root))):
            _unmount_below(root)
            shutil.rmtree(root, ignore_errors=True)
    return stopped


def boot_many(names, owner: Optional[int] = None, timeout: float = 120, suite: str = SUITE,
              images: Optional[tuple] = None, suites: Optional[dict] = None) -> list:
    """Boot ``names`` concurrently, of ``suite`` or, per name, of ``suites[name]`` (mixed generations)."""
    suites = {n: (suites or {}).get(n, suite) for n in names}
    for wanted in sorted(set(suites.values()) | set(images or ()) | {SUITE}):
        if wanted in suites.values():
            cached_root("host", wanted)
        container_images(wanted)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
        return list(pool.map(lambda n: boot(n, owner, timeout, suite=suites[n], images=images), names))


def stop_many(names) -> None:
    """:func:`stop` of several hosts at once (their poweroffs and root removals overlap)."""
    names = list(names)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
        list(pool.map(stop, names))


def write_group_inventory(hosts, path: str) -> str:
    _write(path, _write_inventory(hosts))
    return path


# ---------------------------------------------------------------- demo

def demo(keep: bool) -> int:
    """Boot a sandbox host, run playbooks/site.yml with the example inventory, print the result."""
    clean()
    host = boot("sandbox", owner=1 if keep else None)
    try:
        inventory = os.path.dirname(_demo_inventory(host))  # hosts.yml, then machines.yml (containers)
        log(f"running ansible-playbook -i {inventory} playbooks/site.yml")
        proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory,
                               "playbooks/site.yml"], cwd=REPO, env=ansible_env(), check=False)
        if proc.returncode != 0:
            return proc.returncode
        print(demo_summary(host))
        print(demo_curl(host))
        if keep:
            print(f"\nSandbox kept: ssh -i {ssh_key()} root@{host.address}   (remove: make demo-clean)")
        return 0
    finally:
        if not keep:
            stop(host.name)


def _demo_inventory(host: TestHost) -> str:
    """The example inventory's group_vars and containers source with the sandbox host as the only host."""
    examples = os.path.join(REPO, "examples", "inventory")
    inv_dir = ensure_dir(os.path.join(host.state, "demo-inventory"))
    shutil.copy(os.path.join(examples, "machines.yml"), inv_dir)
    for sub in ("group_vars", "host_vars"):
        src = os.path.join(examples, sub)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(inv_dir, sub), dirs_exist_ok=True)
    data = json.loads(_write_inventory([host]))
    data["all"]["children"] = {"nspawn_hosts": {"hosts": data["all"]["children"]["test_hosts"]["hosts"]}}
    return _dump(os.path.join(inv_dir, "hosts.yml"), data)


def _dump(path: str, data) -> str:
    _write(path, json.dumps(data, indent=2))
    return path


DEMO_SUMMARY = r"""
echo "== containers on $(hostname)"
printf '%-14s %-9s %-10s %-16s %-11s %s\n' MACHINE STATE AT-BOOT ADDRESS MEMORYMAX CPUQUOTA
machinectl list --no-legend --no-pager | while read -r m _ _ _ _ addr _; do
  unit="systemd-nspawn@$m.service"
  printf '%-14s %-9s %-10s %-16s %-11s %s\n' "$m" "$(systemctl is-active "$unit")" \
    "$(systemctl is-enabled "$unit" 2>/dev/null)" "${addr:--}" \
    "$(systemctl show -p MemoryMax --value "$unit")" "$(systemctl show -p CPUQuotaPerSecUSec --value "$unit")"
done
echo "== images"; machinectl list-images --no-legend --no-pager | awk '{print "  " $1 " (" $2 ")"}'
echo "== networks"; ip -br addr show type bridge | sed 's/^/  /'
echo "== port forwards (nft table inet corral)"
nft list chain inet corral prerouting 2>/dev/null | sed -n 's/.*comment "corral: \(.*\)"/  \1/p'
"""


def demo_summary(host: TestHost) -> str:
    """What was deployed, read back from the sandbox host (not from Ansible's output)."""
    return host.ssh(DEMO_SUMMARY, check=False).stdout


def demo_curl(host: TestHost, port: int = 8080) -> str:
    """The web container's page, fetched by curl on this machine through the host's port forward."""
    url = f"http://{host.address}:{port}/"
    res = subprocess.run(["curl", "-sS", "--max-time", "10", url], capture_output=True, text=True, check=False)
    return f"== curl {url} (port forward to the web container)\n{res.stdout or res.stderr}"


# ---------------------------------------------------------------- CLI

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    build = sub.add_parser("build")
    build.add_argument("--suite", choices=sorted(SUITES), default=SUITE)
    up = sub.add_parser("up")
    up.add_argument("--suite", choices=sorted(SUITES), default=SUITE, help="Debian release of the hosts")
    up.add_argument("names", nargs="+")
    down = sub.add_parser("down")
    down.add_argument("names", nargs="+")
    cl = sub.add_parser("clean")
    cl.add_argument("--all", action="store_true")
    dm = sub.add_parser("demo")
    dm.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "build":
            print(cached_root("host", args.suite), container_images(args.suite))
        elif args.cmd == "up":
            hosts = boot_many(args.names, owner=1, suite=args.suite)
            print(write_group_inventory(hosts, os.path.join(STATE_DIR, "inventory.yml")))
        elif args.cmd == "down":
            for name in args.names:
                stop(name)
        elif args.cmd == "clean":
            print("stopped:", " ".join(clean(args.all)) or "nothing")
        elif args.cmd == "demo":
            return demo(args.keep)
    except HarnessError as exc:
        print(f"harness error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
