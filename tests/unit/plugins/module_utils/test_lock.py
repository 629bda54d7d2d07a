# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host-wide lock, with real processes holding a real flock."""

import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import lock
from ansible_collections.corral.nspawn.tests.unit.fakes import FakeModule

HOLDER = """
import sys, time
from ansible_collections.corral.nspawn.plugins.module_utils import lock
with lock.host_lock(0, path=sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold(path, seconds):
    """A separate process that takes the lock and keeps it ``seconds``; returns once it holds it."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, path, str(seconds)], stdout=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout.readline().strip() == "held", "the holder process could not take the lock"
    return proc


def test_second_run_fails_after_timeout_naming_the_holder(tmp_path):
    path = str(tmp_path / "run" / "corral.lock")
    holder = hold(path, 30)
    try:
        started = time.monotonic()
        with pytest.raises(lock.LockError) as caught:
            with lock.host_lock(1, path=path):
                pytest.fail("got the lock while another process held it")
        assert 1 <= time.monotonic() - started < 10
        message = str(caught.value)
        assert f"another corral.nspawn run (pid {holder.pid}, since " in message and "holds the lock" in message
        assert "lock_timeout" in message
    finally:
        holder.kill()
        holder.wait()


def test_second_run_waits_and_then_proceeds(tmp_path):
    path = str(tmp_path / "corral.lock")
    holder = hold(path, 2)
    try:
        with lock.host_lock(60, path=path) as waited:
            assert waited >= 1, "the lock was granted while the holder still held it"
            assert open(path, encoding="ascii").read().split()[0] == str(os.getpid())
    finally:
        holder.wait()


def test_a_killed_holder_releases_at_once(tmp_path):
    path = str(tmp_path / "corral.lock")
    holder = hold(path, 300)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with lock.host_lock(0, path=path) as waited:
        assert waited < 1


def test_negative_timeout_is_refused(tmp_path):
    with pytest.raises(lock.LockError, match="lock_timeout: -1 is negative"):
        with lock.host_lock(-1, path=str(tmp_path / "l")):
            pass


def test_the_lock_file_is_not_followed_through_a_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(str(victim), str(tmp_path / "corral.lock"))
    with pytest.raises(OSError):
        with lock.host_lock(0, path=str(tmp_path / "corral.lock")):
            pass
    assert victim.read_text() == "precious\n"


def _module():
    """The shared fake module of a module named corral.nspawn.demo (fail_json records module.failed)."""
    return FakeModule({"lock_timeout": 0}, name="corral.nspawn.demo")


def test_an_unexpected_exception_is_a_clean_failure_not_a_traceback(monkeypatch, tmp_path):
    monkeypatch.setattr(lock, "LOCK_PATH", str(tmp_path / "l"))
    module = _module()
    with pytest.raises(SystemExit):
        with lock.module_lock(module):
            {}["missing"]  # pylint: disable=pointless-statement
    assert module.failed["msg"].startswith("corral.nspawn.demo: unexpected KeyError: 'missing'")
    assert "Traceback" in module.failed["exception"] and "Traceback" not in module.failed["msg"]


def test_our_own_errors_pass_through_to_the_module_handlers(monkeypatch, tmp_path):
    monkeypatch.setattr(lock, "LOCK_PATH", str(tmp_path / "l"))
    module = _module()
    with pytest.raises(lock.LockError):
        with lock.module_lock(module):
            raise lock.LockError("handled by the module")
    assert module.failed is None


def test_readers_share_the_lock_and_wait_only_for_a_run_that_changes_the_host(tmp_path):
    """machine_info's hold: readers at once; a reader waits for a writer and a writer for a reader."""
    path = str(tmp_path / "corral.lock")
    with lock.host_lock(0, path=path, shared=True):
        with lock.host_lock(0, path=path, shared=True) as waited:
            assert waited < 1
        with pytest.raises(lock.LockError, match="holds the lock"):
            with lock.host_lock(0, path=path):
                pass
    with lock.host_lock(0, path=path):
        with pytest.raises(lock.LockError, match="holds the lock"):
            with lock.host_lock(0, path=path, shared=True):
                pass
