# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""corral.nspawn.image for real.

On the controller (test hosts have no network): one debootstrap of bookworm minbase
into a temporary machines_dir under /var/tmp, killed with SIGKILL mid-way (while
debootstrap has proc mounted in the staging root), then re-run to a clean, complete
root; check -> apply -> check -> apply around it.

In a test host (prefix "img"): a tar import through machinectl (systemd-importd), a
clone of that template into 5 containers with distinct hostnames and machine-ids,
each booting with ``machinectl start``; state=absent refused while running, then
forced; bad input fails before any change.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import harness
from harness import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = os.path.join(ROOT, "plugins", "modules", "image.py")
COLLECTIONS = os.path.join(ROOT, ".collections")


# ---------------------------------------------------------------- running the module on the controller

_ARGS_DIRS = []


@pytest.fixture(scope="module", autouse=True)
def _remove_args_files():
    """The JSON args files of direct module runs live in one directory, removed at the end."""
    yield
    while _ARGS_DIRS:
        shutil.rmtree(_ARGS_DIRS.pop(), ignore_errors=True)


def _module_process(args: dict, check: bool = False, diff: bool = False, workdir: str = "/tmp"):
    """Start the module's code directly (AnsibleModule reads its args from a JSON file)."""
    if not _ARGS_DIRS:
        _ARGS_DIRS.append(tempfile.mkdtemp(prefix="img-args-"))
    payload = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    handle, path = tempfile.mkstemp(prefix="args-", suffix=".json", dir=_ARGS_DIRS[0])
    with os.fdopen(handle, "w") as out:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, out)
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    return subprocess.Popen([sys.executable, MODULE, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=workdir)


def run_local(args: dict, check: bool = False, diff: bool = False, timeout: int = 600) -> dict:
    proc = _module_process(args, check, diff)
    out, err = proc.communicate(timeout=timeout)
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(f"module printed no JSON (rc={proc.returncode}):\n{out[-3000:]}\n{err[-3000:]}")


def tree_fingerprint(path: str) -> list:
    """Names, modes, sizes and mtimes (ns) below path (to prove check mode wrote nothing)."""
    entries = []
    for base, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(base, d))]
        for name in sorted(dirs + files):
            full = os.path.join(base, name)
            info = os.lstat(full)
            entries.append((os.path.relpath(full, path), info.st_mode, info.st_size, info.st_mtime_ns))
    return sorted(entries)


def mounts_below(path: str) -> list:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return [line.split()[4] for line in handle if line.split()[4].startswith(path)]


@pytest.fixture(scope="module")
def machines_dir():
    path = tempfile.mkdtemp(prefix="img-machines-", dir="/var/tmp")
    yield path
    for point in sorted(mounts_below(path), reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False)
    shutil.rmtree(path, ignore_errors=True)


def test_debootstrap_killed_midway_then_rerun_gives_complete_root(machines_dir):
    debs = os.path.join(harness.CACHE_DIR, "debs")
    os.makedirs(debs, exist_ok=True)
    args = {"name": "boot1", "machines_dir": machines_dir, "source": "debootstrap", "suite": "bookworm",
            "variant": "minbase", "include": ["systemd", "dbus"], "mirror": harness.apt_mirror(),
            "extra_args": [f"--cache-dir={debs}"], "hostname": "boot1", "address": "10.77.0.5/24"}
    root, staging = os.path.join(machines_dir, "boot1"), os.path.join(machines_dir, ".corral", "staging", "boot1")

    first = harness.succeeded(run_local(args, check=True, diff=True), "debootstrap check")
    assert first["changed"] and first["created"], first
    assert os.listdir(machines_dir) == [], "check mode wrote into machines_dir"
    assert "create" in first["diff"][0]["after"] and first["diff"][0]["before"].endswith("absent\n")

    # Apply, killed with SIGKILL once debootstrap has mounted proc inside the staging root.
    proc = _module_process(args)
    try:
        wait_until(lambda: mounts_below(staging + "/") or proc.poll() is not None, 180, "debootstrap to mount proc", 0.2)
        assert proc.poll() is None, f"module ended before it could be killed: {proc.communicate()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert not os.path.exists(root), "an interrupted build left something at the final path"
    assert os.path.isdir(staging)

    # Processes debootstrap started may still run in the staging root (they are orphans now):
    # check mode must leave them and the leftovers alone; the real run stops them.
    predicted = harness.succeeded(run_local(args, check=True), "check after kill")
    assert predicted["changed"] and any("leftovers" in c for c in predicted["changes"]), predicted
    assert os.listdir(machines_dir) == [".corral"] and os.path.isdir(os.path.join(staging, "root"))
    orphans = subprocess.run(["pgrep", "-f", staging], capture_output=True, text=True, check=False).stdout.split()
    print(f"\nprocesses still working in staging after kill -9: {len(orphans)}; mounts: {mounts_below(staging)}")

    applied = harness.succeeded(run_local(args), "apply after kill")
    assert applied["changed"] and applied["created"], applied
    assert sorted(os.listdir(machines_dir)) == [".corral", "boot1"], os.listdir(machines_dir)
    assert os.listdir(os.path.dirname(staging)) == [], "the staging dir outlived the build"
    assert mounts_below(machines_dir) == []
    with open(os.path.join(root, "var/lib/dpkg/status"), encoding="utf-8") as handle:
        status = handle.read()
    assert "Package: systemd\n" in status and "Package: dbus\n" in status
    assert os.path.isfile(os.path.join(root, "lib/systemd/systemd"))
    assert open(os.path.join(root, "etc/hostname"), encoding="utf-8").read() == "boot1\n"
    assert open(os.path.join(root, "etc/machine-id"), encoding="utf-8").read() == ""
    assert "Address=10.77.0.5/24" in open(os.path.join(root, "etc/systemd/network/10-corral-host0.network"),
                                          encoding="utf-8").read()
    assert os.path.islink(os.path.join(root, "etc/systemd/system/multi-user.target.wants/systemd-networkd.service"))
    print(f"\ndebootstrap (after kill -9 and cleanup): elapsed {applied['elapsed']} s, timings {applied['timings']}")

    before = tree_fingerprint(machines_dir)
    assert harness.succeeded(run_local(args, check=True), "check on a complete root")["changed"] is False
    harness.assert_same(before, tree_fingerprint(machines_dir), "check on a complete root")
    again = harness.succeeded(run_local(args), "apply on a complete root")
    assert again["changed"] is False, again
    harness.assert_same(before, tree_fingerprint(machines_dir), "apply on a complete root")

    # Drift: another suite is a warning, not a rebuild.
    drift = harness.succeeded(run_local(dict(args, suite="trixie")), "suite drift")
    assert drift["changed"] is False and "trixie" in json.dumps(drift.get("warnings", [])), drift


# ---------------------------------------------------------------- in a test host: tar import, 5 clones

CLONES = [f"imgc{n}" for n in range(1, 6)]


@pytest.fixture(scope="module")
def host(make_host):
    host = make_host("img-a")
    yield host
    names = " ".join(["tmpl"] + CLONES)
    host.ssh(f"for m in {names}; do machinectl terminate $m 2>/dev/null; done; "
             f"for m in {names}; do for i in $(seq 1 100); do machinectl show $m >/dev/null 2>&1 || break; "
             "sleep 0.2; done; done; "
             f"for m in {names}; do rm -rf /var/lib/machines/$m; done", check=False)


def machines(host) -> list:
    """Entries of /var/lib/machines besides corral's work area .corral/ (and machined's lock files)."""
    return sorted(n for n in host.ssh("ls -A /var/lib/machines").stdout.split()
                  if n != ".corral" and not n.startswith(".#"))


def test_tar_import_with_checksum(host):
    digest = host.ssh("sha256sum /srv/corral/images/debian12.tar").stdout.split()[0]
    bad = host.module("image", {"name": "tmpl", "source": "tar", "path": "/srv/corral/images/debian12.tar",
                                "checksum": "sha256:" + "0" * 64})
    assert bad.get("failed") and "checksum" in bad["msg"], bad
    # nothing but corral's own (empty) work area: no root, no staging leftover
    assert machines(host) == [] and host.ssh("ls -A /var/lib/machines/.corral/staging", check=False).stdout == ""
    args = {"name": "tmpl", "source": "tar", "path": "/srv/corral/images/debian12.tar",
            "checksum": f"sha256:{digest}"}
    results = host.rhythm("image", args)
    assert results[0]["diff"], "check mode shows no diff"
    # systemd 252 in the test host: no importctl, so systemd-importd through machinectl.
    assert results[0]["method"] == results[1]["method"] == "machinectl import-tar", results[1]
    assert host.ssh("test -x /var/lib/machines/tmpl/lib/systemd/systemd").returncode == 0
    assert machines(host) == ["tmpl"]
    assert host.ssh("cat /var/lib/machines/tmpl/etc/machine-id").stdout == ""


def test_clone_five_containers_boot_with_distinct_identities(host):
    started = time.monotonic()
    for name in CLONES:
        args = {"name": name, "source": "clone", "clone_from": "tmpl", "hostname": name}
        results = host.rhythm("image", args)
        assert results[1]["method"] in ("cp --reflink=auto", "btrfs snapshot"), results[1]
    print(f"\n5 clones with check/apply/check/apply each: {time.monotonic() - started:.1f} s")
    for name in CLONES:
        host.ssh(f"machinectl start {name}")
    ids, hostnames = {}, {}
    for name in CLONES:
        state = host.ssh(f"for i in $(seq 1 90); do s=$(systemctl -M {name} is-system-running 2>/dev/null); "
                         "case $s in running|degraded) echo $s; exit 0;; esac; sleep 1; done; echo $s; exit 1",
                         check=False, timeout=120)
        assert state.returncode == 0, (name, state.stdout,
                                       host.ssh(f"journalctl -u systemd-nspawn@{name} -n 40 --no-pager").stdout)
        leader = host.ssh(f"machinectl show -p Leader --value {name}").stdout.strip()
        ids[name] = host.ssh(f"cat /proc/{leader}/root/etc/machine-id").stdout.strip()
        hostnames[name] = host.ssh(f"cat /proc/{leader}/root/etc/hostname").stdout.strip()
    assert all(len(i) == 32 for i in ids.values()), ids
    assert len(set(ids.values())) == 5, ids
    assert hostnames == {name: name for name in CLONES}


def test_absent_refused_while_running_then_forced(host):
    name = CLONES[0]
    refused = host.module("image", {"name": name, "state": "absent"})
    assert refused.get("failed") and "running" in refused["msg"], refused
    assert host.ssh(f"test -d /var/lib/machines/{name}").returncode == 0
    host.rhythm("image", {"name": name, "state": "absent", "force": True}, diff=False)
    assert host.ssh(f"test -e /var/lib/machines/{name}", check=False).returncode != 0
    # A symlink out of machines_dir: only the link goes, never its target.
    host.ssh("mkdir -p /srv/outside/keep && touch /srv/outside/keep/file && "
             "ln -sfn /srv/outside/keep /var/lib/machines/imglink")
    gone = host.run("image", {"name": "imglink", "state": "absent"})
    assert gone["changed"], gone
    assert host.ssh("test -f /srv/outside/keep/file && test ! -e /var/lib/machines/imglink").returncode == 0


@pytest.mark.parametrize("args, words", [
    ({"name": ".host", "source": "clone", "clone_from": "tmpl"}, "name"),
    ({"name": "x1", "source": "clone", "clone_from": "nosuch"}, "clone_from"),
    ({"name": "x1", "source": "pacstrap"}, "pacstrap"),
    ({"name": "x1", "source": "tar", "path": "/srv/corral/images/debian12.tar", "suite": "bookworm"}, "suite"),
    ({"name": "x1", "source": "clone", "clone_from": "tmpl", "address": "10.0.0.5"}, "address"),
])
def test_bad_input_fails_before_any_change(host, args, words):
    before = host.fingerprint()
    result = host.module("image", args)
    assert result.get("failed") and words in result["msg"], result
    harness.assert_same(before, host.fingerprint(), f"image with bad {words}")


# ---------------------------------------------------------------- btrfs machines_dir (loop device, controller)

@pytest.fixture(scope="module")
def btrfs_dir():
    if not shutil.which("mkfs.btrfs") or not shutil.which("btrfs"):
        pytest.fail("btrfs-progs is not installed on the controller: the snapshot path is not exercised "
                    "(apt-get install btrfs-progs)")
    work = tempfile.mkdtemp(prefix="img-btrfs-", dir="/var/tmp")
    image, mnt = os.path.join(work, "fs.img"), os.path.join(work, "mnt")
    os.makedirs(mnt)
    with open(image, "wb") as handle:
        handle.truncate(2 << 30)
    subprocess.run(["mkfs.btrfs", "-q", image], check=True)
    subprocess.run(["mount", "-o", "loop", image, mnt], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", mnt], check=False)
        shutil.rmtree(work, ignore_errors=True)


def test_btrfs_template_is_a_subvolume_and_clones_are_snapshots(btrfs_dir):
    images_dir = os.path.join(harness.container_images(), "debian12")
    made = harness.succeeded(run_local({"name": "tmpl", "machines_dir": btrfs_dir, "source": "directory",
                                        "path": images_dir}), "template on btrfs")
    assert made["created"], made
    assert os.stat(os.path.join(btrfs_dir, "tmpl")).st_ino == 256, "a new root on btrfs is not a subvolume"
    for name in ("s1", "s2"):
        args = {"name": name, "machines_dir": btrfs_dir, "source": "clone", "clone_from": "tmpl", "hostname": name}
        results = harness.rhythm(lambda check, a=args: run_local(a, check=check),
                                 fingerprint=lambda: tree_fingerprint(btrfs_dir), what=f"btrfs clone {name}")
        assert results[1]["method"] == "btrfs snapshot", results[1]
        print(f"\nbtrfs snapshot clone {name}: elapsed {results[1]['elapsed']} s, timings {results[1]['timings']}")
        show = subprocess.run(["btrfs", "subvolume", "show", os.path.join(btrfs_dir, name)],
                              capture_output=True, text=True, check=True).stdout
        assert re.search(r"Parent UUID:\s+[0-9a-f]{8}-", show), f"{name} is not a snapshot:\n{show}"
        assert open(os.path.join(btrfs_dir, name, "etc/hostname"), encoding="utf-8").read() == f"{name}\n"
    assert open(os.path.join(btrfs_dir, "tmpl/etc/hostname"), encoding="utf-8").read() != "s1\n"
    gone = harness.succeeded(run_local({"name": "s1", "machines_dir": btrfs_dir, "state": "absent"}), "absent")
    assert gone["removed"] and sorted(set(os.listdir(btrfs_dir)) - {".corral"}) == ["s2", "tmpl"]
