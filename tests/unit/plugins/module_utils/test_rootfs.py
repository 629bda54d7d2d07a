# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The root-confined file API and everything that reads or writes inside a root through it.

The attacker is a running container: it owns every file in its root and can swap a
directory for a symlink to a host directory at any moment (renameat2 RENAME_EXCHANGE,
as the issue's reproducer did). Every test runs both resolvers (openat2 and the
portable O_NOFOLLOW walk). A host directory with sentinel files stands for the
host's /etc and /root/.ssh; it must be byte-identical after every attack.
"""

import ctypes
import errno
import hashlib
import os
import signal
import stat
import threading
import time

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import images, images_setup, rootfs
from ansible_collections.corral.nspawn.plugins.module_utils import images_io, machine_io
from ansible_collections.corral.nspawn.tests.unit.fakes import FakeModule

from ansible_collections.corral.nspawn.tests.unit.post_setup import ensure_post_setup

RESOLVERS = [pytest.param(True, id="openat2"), pytest.param(False, id="walk")]
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def no_commands(check_mode=False):
    """The shared fake module with no tool found and every command refused (no step here may run one)."""
    return FakeModule(check_mode=check_mode, bins=(), answers={(): (1, "", "no commands in this test")})


@pytest.fixture(params=RESOLVERS)
def use_openat2(request, monkeypatch):
    if request.param and not rootfs.openat2_usable():
        pytest.fail("this kernel has no usable openat2(RESOLVE_IN_ROOT); the openat2 resolver cannot be tested")
    monkeypatch.setattr(rootfs, "openat2_usable", lambda: request.param)
    return request.param


def fingerprint(path):
    """Names, types, modes and content hashes of everything under ``path`` (what must not change)."""
    out = {}
    for base, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(base, name)
            info = os.lstat(full)
            data = b""
            if stat.S_ISREG(info.st_mode):
                with open(full, "rb") as handle:
                    data = handle.read()
            out[os.path.relpath(full, path)] = (stat.S_IFMT(info.st_mode), info.st_mode & 0o7777,
                                                hashlib.sha256(data).hexdigest())
    return out


@pytest.fixture
def world(tmp_path):
    """(root, host): a small container root and a 'host' directory outside it with the files an attacker wants."""
    root, host = tmp_path / "machines" / "evil", tmp_path / "host"
    for rel in ("etc/ssh", "etc/systemd/network", "root/.ssh", "usr/lib", "var/lib/systemd", "var/lib/dbus"):
        (root / rel).mkdir(parents=True)
    (root / "etc/hostname").write_text("evil\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc/securetty").write_text("console\n")
    (root / "usr/lib/os-release").write_text('PRETTY_NAME="Container OS"\n')
    (root / "usr/lib/systemd/system").mkdir(parents=True)
    (root / "usr/lib/systemd/system/systemd-networkd.service").write_text("[Install]\nWantedBy=multi-user.target\n")
    host.mkdir()
    for name in ("hostname", "shadow", "authorized_keys", "securetty", "machine-id", "os-release"):
        (host / name).write_text(f"HOST {name}\n")
    (host / "os-release").write_text('PRETTY_NAME="HOST OS"\n')
    return str(root), str(host)


# ---------------------------------------------------------------- confinement without a race

@pytest.mark.parametrize("link", ["abs", "dotdot"])
def test_links_resolve_inside_the_root(world, use_openat2, link):
    root, host = world
    before = fingerprint(host)
    target = host if link == "abs" else "../" * 12 + host.lstrip("/")
    os.rename(os.path.join(root, "etc"), os.path.join(root, "etc.real"))
    os.symlink(target, os.path.join(root, "etc"))
    with rootfs.RootFS(root, use_openat2) as fs:
        assert fs.read_text("etc/shadow") is None          # not the host's shadow
        assert fs.listdir("etc") == []
        with pytest.raises((FileNotFoundError, rootfs.RootError)):
            fs.write("etc/shadow", "root:x:::\n")
        assert fs.unlink("etc/hostname") is False
    assert fingerprint(host) == before


def test_symlinked_file_is_replaced_not_followed(world, use_openat2):
    root, host = world
    os.unlink(os.path.join(root, "etc/hostname"))
    os.symlink(os.path.join(host, "hostname"), os.path.join(root, "etc/hostname"))
    before = fingerprint(host)
    with rootfs.RootFS(root, use_openat2) as fs:
        fs.write("etc/hostname", "web\n")
    assert not os.path.islink(os.path.join(root, "etc/hostname"))
    assert open(os.path.join(root, "etc/hostname"), encoding="utf-8").read() == "web\n"
    assert fingerprint(host) == before


def test_write_is_atomic_and_keeps_or_inherits_owner(world, use_openat2):
    root, _host = world
    os.chown(os.path.join(root, "etc/shadow"), 0, 42)
    os.chown(os.path.join(root, "root/.ssh"), 4242, 4343)
    with rootfs.RootFS(root, use_openat2) as fs:
        fs.write("etc/shadow", "root:$6$a$b:::\n", 0o640)
        fs.write("root/.ssh/authorized_keys", "k\n", 0o600)
    shadow = os.stat(os.path.join(root, "etc/shadow"))
    assert (shadow.st_gid, shadow.st_mode & 0o777) == (42, 0o640)
    keys = os.stat(os.path.join(root, "root/.ssh/authorized_keys"))
    assert (keys.st_uid, keys.st_gid, keys.st_mode & 0o777) == (4242, 4343, 0o600)
    assert not [n for n in os.listdir(os.path.join(root, "etc")) if n.startswith(".corral-")]


# ---------------------------------------------------------------- what is read: regular files only, bounded

def _alarm(seconds):
    def _hang(_signum, _frame):
        raise AssertionError(f"blocked for {seconds} s: a FIFO or device in the root hung the module")
    signal.signal(signal.SIGALRM, _hang)
    signal.alarm(seconds)


@pytest.mark.parametrize("kind", ["fifo", "chardev", "socketdir", "huge"])
@pytest.mark.parametrize("rel, params", [
    ("etc/hostname", {"hostname": "web"}),
    ("etc/shadow", {"root_password_hash": "$6$abc$def"}),
    ("root/.ssh/authorized_keys", {"authorized_keys": ["ssh-ed25519 AAAAC3 k"]}),
    ("etc/securetty", {"securetty_fix": True}),
    ("etc/systemd/network/10-corral-host0.network", {"address": "10.0.0.2/24", "enable_networkd": False}),
    ("etc/machine-id", {"reset_machine_id": True, "regenerate_ssh_host_keys": False}),
])
def test_special_files_at_every_prepared_path_are_refused(world, use_openat2, kind, rel, params):
    root, _host = world
    path = os.path.join(root, rel)
    if os.path.lexists(path):
        os.unlink(path)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "chardev":
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 5))   # /dev/zero: endless
    elif kind == "socketdir":
        os.mkdir(path)
    else:
        with open(path, "wb") as handle:
            handle.truncate(rootfs.READ_LIMIT + 1)
    _alarm(10)
    try:
        with pytest.raises(images_setup.SetupError) as caught:
            ensure_post_setup(no_commands(), root, params, fresh="machine-id" in rel)
    finally:
        signal.alarm(0)
    wanted = {"fifo": "a FIFO", "chardev": "a character device", "socketdir": "a directory", "huge": "bytes"}[kind]
    assert rel in str(caught.value) and wanted in str(caught.value)


def test_read_cap_and_kind_named(world, use_openat2):
    root, _host = world
    with rootfs.RootFS(root, use_openat2) as fs:
        with pytest.raises(rootfs.RootError, match="etc/ssh: it is a directory"):
            fs.read_text("etc/ssh")
        with pytest.raises(rootfs.RootError, match="more than 4"):
            fs.read_text("etc/hostname", limit=4)


def test_machine_info_os_never_follows_links_onto_the_host(world, use_openat2):
    """Regression: image_os() opened root/etc/os-release by name and reported the host's OS."""
    root, host = world
    os.symlink(os.path.join(host, "os-release"), os.path.join(root, "etc/os-release"))
    assert machine_io.image_os(root) == "Container OS"
    os.unlink(os.path.join(root, "etc/os-release"))
    os.symlink("../" * 12 + os.path.join(host, "os-release").lstrip("/"), os.path.join(root, "etc/os-release"))
    assert machine_io.image_os(root) == "Container OS"


def test_build_record_read_through_the_root(world, use_openat2):
    root, host = world
    os.symlink(os.path.join(host, "shadow"), os.path.join(root, images.RECORD))
    assert images_io.read_record(root) is None
    os.unlink(os.path.join(root, images.RECORD))
    os.mkfifo(os.path.join(root, images.RECORD))
    _alarm(10)
    try:
        assert images_io.read_record(root) is None
    finally:
        signal.alarm(0)


# ---------------------------------------------------------------- the race: directories swapped for links

def _exchange(libc, a, b):
    if libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Swapper(threading.Thread):
    """Keeps exchanging ``root/<rel>`` (a real directory) with a symlink to ``target`` (a host directory)."""

    def __init__(self, root, rels, target):
        super().__init__(daemon=True)
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.pairs = []
        for rel in rels:
            real = os.path.join(root, rel)
            link = real + ".swap"
            os.symlink(target, link)
            self.pairs.append((real, link))
        self.stop = threading.Event()
        self.swaps = 0

    def run(self):
        while not self.stop.is_set():
            for real, link in self.pairs:
                _exchange(self.libc, real, link)
                self.swaps += 1


def _attack(root, host, rels, action, rounds):
    """Run ``action()`` ``rounds`` times while the swapper races; (successes, clean refusals)."""
    if not hasattr(ctypes.CDLL(None), "renameat2"):
        pytest.fail("libc has no renameat2(); the racing-swap attack cannot be run")
    before = fingerprint(host)
    swapper = Swapper(root, rels, host)
    swapper.start()
    ok = refused = done = 0
    deadline = time.monotonic() + 60
    try:
        # At least ``rounds`` attempts, and on until the swapper has really raced (the GIL may starve it)
        # and at least one attempt got through (under load every early attempt may be refused).
        while done < rounds or ((swapper.swaps < rounds // 10 or not ok) and time.monotonic() < deadline):
            done += 1
            try:
                action()
                ok += 1
            except (OSError, rootfs.RootError, images_setup.SetupError):
                refused += 1
    finally:
        swapper.stop.set()
        swapper.join()
    assert fingerprint(host) == before, "the host directory changed: a write escaped the root"
    assert swapper.swaps >= rounds // 10, "the swapper barely ran; the race was not exercised"
    return ok, refused


@pytest.mark.parametrize("operation", ["write", "read", "makedirs", "unlink", "listdir", "stat"])
def test_racing_swap_never_escapes_the_api(world, use_openat2, operation):
    root, host = world
    fs = rootfs.RootFS(root, use_openat2)
    actions = {
        "write": lambda: fs.write("etc/hostname", "web\n"),
        "read": lambda: fs.read_text("etc/shadow"),
        "makedirs": lambda: fs.makedirs("etc/ssh/sub/dir"),
        "unlink": lambda: fs.unlink("etc/machine-id"),
        "listdir": lambda: fs.listdir("etc"),
        "stat": lambda: fs.stat("etc/shadow"),
    }
    reads = []
    if operation == "read":
        actions["read"] = lambda: reads.append(fs.read_text("etc/shadow"))
    try:
        ok, _refused = _attack(root, host, ["etc"], actions[operation], 3000)
    finally:
        fs.close()
    assert ok > 0, "no operation ever succeeded: the test exercised only refusals"
    assert "HOST shadow\n" not in reads, "a read returned the host's file"


@pytest.mark.parametrize("params", [
    {"hostname": "web"},
    {"authorized_keys": ["ssh-ed25519 AAAAC3 k"]},
    {"root_password_hash": "$6$abc$def"},
    {"securetty_fix": True},
    {"enable_networkd": True},
], ids=["hostname", "authorized_keys", "shadow", "securetty", "enable"])
def test_racing_swap_against_post_setup(world, use_openat2, params):
    """Regression: the issue's reproducer overwrote host files through ensure_post_setup on the first attempts."""
    root, host = world
    counter = iter(range(10 ** 6))

    def prepare():
        value = next(counter)
        step = dict(params)
        if "hostname" in step:
            step["hostname"] = f"web{value}"
        if "authorized_keys" in step:
            step["authorized_keys"] = [f"ssh-ed25519 AAAAC3 k{value}"]
        if "root_password_hash" in step:
            step["root_password_hash"] = f"$6$abc$def{value % 7}"
        if "enable_networkd" in step:   # undo the link (confined, so no evidence of an escape is removed)
            with rootfs.RootFS(root) as fs:
                fs.unlink("etc/systemd/system/multi-user.target.wants/systemd-networkd.service")
        ensure_post_setup(no_commands(), root, step)

    ok, _refused = _attack(root, host, ["etc", "root/.ssh"] if "authorized_keys" in params else ["etc"],
                           prepare, 600)
    assert ok > 0


def test_refusals_are_clean_errors_not_tracebacks(world, use_openat2):
    root, _host = world
    os.rename(os.path.join(root, "etc"), os.path.join(root, "etc.real"))
    os.symlink("/nonexistent", os.path.join(root, "etc"))
    with pytest.raises(images_setup.SetupError, match="evil/etc.* (is not a directory|nothing outside)"):
        ensure_post_setup(no_commands(), root, {"hostname": "web"})


def test_loops_end_with_eloop(world, use_openat2):
    root, _host = world
    os.symlink("loop2", os.path.join(root, "loop1"))
    os.symlink("loop1", os.path.join(root, "loop2"))
    with rootfs.RootFS(root, use_openat2) as fs:
        with pytest.raises(OSError) as caught:
            fs.read_text("loop1/x")
    assert caught.value.errno == errno.ELOOP


def test_clone_identity_files_are_reset_on_fresh_roots(world, use_openat2):
    root, _host = world
    for rel in images_setup.IDENTITY_FILES:
        with open(os.path.join(root, rel), "w", encoding="utf-8") as handle:
            handle.write("template secret\n")
    opts = {"reset_machine_id": True, "regenerate_ssh_host_keys": False}
    assert ensure_post_setup(no_commands(), root, opts) == (False, [])   # a booted root keeps them
    changed, actions = ensure_post_setup(no_commands(), root, opts, fresh=True)
    assert changed and sum("clone identity" in a for a in actions) == 2
    assert not any(os.path.lexists(os.path.join(root, rel)) for rel in images_setup.IDENTITY_FILES)
