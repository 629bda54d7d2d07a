# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Two runs against one host: the host-wide lock (prefix "cnc").

- A process on the test host holds /run/corral-nspawn.lock: a module with a short
  lock_timeout fails naming that process; one with a longer timeout waits and succeeds.
- Two ``ansible-playbook playbooks/site.yml`` runs of the example inventory started
  together against one fresh test host: both end with a clear outcome (success, or the
  lock message), the host ends converged, and a third run reports changed=0.
"""

import json
import os
import shutil
import subprocess
import time

import pytest

import harness

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SITE = os.path.join(ROOT, "playbooks", "site.yml")
EXAMPLES = os.path.join(ROOT, "examples", "inventory")
HOLDER = ("import fcntl, os, time; fd = os.open('/run/corral-nspawn.lock', os.O_RDWR | os.O_CREAT, 0o600); "
          "fcntl.flock(fd, fcntl.LOCK_EX); os.ftruncate(fd, 0); "
          "os.pwrite(fd, ('%d %.3f' % (os.getpid(), time.time())).encode(), 0); time.sleep(12)")


@pytest.fixture(scope="module")
def host(make_host):
    return make_host("cnc1")


@pytest.fixture(scope="module")
def inventory(host, tmp_path_factory):
    directory = tmp_path_factory.mktemp("cnc-inventory")
    shutil.copytree(os.path.join(EXAMPLES, "group_vars"), directory / "group_vars")
    data = json.loads(harness._write_inventory([host]))  # pylint: disable=protected-access
    data["all"]["children"] = {"nspawn_hosts": {"hosts": data["all"]["children"]["test_hosts"]["hosts"]}}
    (directory / "hosts.yml").write_text(json.dumps(data))
    return str(directory / "hosts.yml")


def holder_pid(host):
    host.ssh("systemd-run --unit=cnc-holder --collect python3 -c " + harness.shlex_quote(HOLDER))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = host.ssh("cat /run/corral-nspawn.lock", check=False).stdout.split()
        if text:
            return int(text[0])
        time.sleep(0.2)
    raise AssertionError("the lock holder on the test host never took the lock")


def test_a_held_lock_makes_a_run_wait_or_fail_naming_the_holder(host):
    pid = holder_pid(host)
    args = {"name": "cnclock", "boot": True, "settings_dir": "/run", "lock_timeout": 2}
    failed = host.module("settings", args)
    assert failed.get("failed"), failed
    assert f"another corral.nspawn run (pid {pid}, since " in failed["msg"] and "holds the lock" in failed["msg"], failed
    assert host.ssh("test -e /run/cnclock.nspawn", check=False).returncode != 0, "it changed the host while locked out"
    started = time.monotonic()
    waited = host.run("settings", dict(args, lock_timeout=120))
    assert waited["changed"] and time.monotonic() - started > 2, waited
    host.ssh("rm -f /run/cnclock.nspawn")


def _site(inventory):
    return subprocess.Popen(["ansible-playbook", "-i", inventory, SITE], cwd=ROOT, env=harness.ansible_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)


def test_two_site_runs_at_once_end_clearly_and_converge(host, inventory):
    runs = [_site(inventory), _site(inventory)]
    outputs = [run.communicate(timeout=1800)[0] for run in runs]
    for run, out in zip(runs, outputs):
        recap = harness.parse_recap(out)
        assert "Traceback" not in out, out[-6000:]
        if run.returncode != 0:
            # the only acceptable failure is the lock's own message
            assert "another corral.nspawn run (pid" in out, out[-6000:]
        else:
            assert recap[host.name]["failed"] == 0 and recap[host.name]["unreachable"] == 0, recap
    assert any(run.returncode == 0 for run in runs), "neither concurrent run converged:\n" + outputs[0][-4000:]
    third = harness.run_playbook(SITE, inventory)
    assert third.rc == 0, third.stdout[-6000:]
    assert third.recap[host.name]["changed"] == 0 and third.recap[host.name]["failed"] == 0, third.stdout[-6000:]
    running = host.ssh("machinectl list --no-legend | awk '{print $1}' | sort").stdout.split()
    assert {"web", "app", "db"} <= set(running), running
