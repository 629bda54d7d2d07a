# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A hostile running container cannot make the host write outside its root (issue: roots are untrusted).

On a test host (prefix "sec"): a container boots from a tar import; inside it a
process keeps exchanging its own /etc and /root/.ssh with symlinks whose text is
"/etc" and "/root/.ssh" (on the host, resolved by name, those are the HOST's
directories). Meanwhile the image module re-prepares the running root 20 times
with a changing hostname and authorized key (setup_running=apply: it writes), and
the fleet re-runs with changing values (restart=never: first-boot changes are
deferred for a running machine). The host's /etc/shadow, /root/.ssh/authorized_keys
and /etc/hostname must be byte-identical afterwards, every run must end either
converged or with a clean refusal (never a traceback), and the swapper must have
really run all along.

The same fleet runs also declare a second tenant's machine (``secok``) whose memory
limit changes in every run: a refusal in the swapper's root is confined to that
machine (named with the refused path in its ``machines.secvic`` entry, nothing of
it written, the task failed), and ``secok`` converges in every one of the runs.
"""

import json
import os
import tempfile

import pytest

import harness

NAME = "secvic"
OTHER = "secok"   # another tenant's machine on the same host
OTHER_IMAGE = {"source": "directory", "path": "/srv/corral/images/debian12"}
HOST_FILES = "/etc/shadow /root/.ssh/authorized_keys /etc/hostname /etc/machine-id"
SWAPPER = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
os.makedirs("/root/.ssh", exist_ok=True)
for real in ("/etc", "/root/.ssh"):
    if not os.path.lexists(real + ".evil"):
        os.symlink(real, real + ".evil")
count = 0
while True:
    for real in (b"/etc", b"/root/.ssh"):
        if libc.renameat2(-100, real, -100, real + b".evil", 2) == 0:
            count += 1
    if count % 5000 == 0:
        with open("/swaps", "w") as out:
            out.write(str(count))
"""


def host_hashes(host):
    return host.ssh(f"sha256sum {HOST_FILES}").stdout


def in_container(host, cmd, check=True):
    return host.ssh(f"systemd-run --machine={NAME} --quiet --wait --pipe --collect -- {cmd}", check=check)


@pytest.fixture(scope="module")
def host(make_host):
    host = make_host("sec1")
    host.prepare()
    harness.succeeded(host.module("image", {"name": NAME, "source": "tar", "path": "/srv/corral/images/debian12.tar"}),
                      "tar import")
    harness.succeeded(host.module("machine", {"name": NAME, "state": "running", "wait": True}), "start")
    yield host
    host.ssh(f"machinectl terminate {NAME} {OTHER}; sleep 1; rm -rf /var/lib/machines/{NAME} /var/lib/machines/{OTHER}",
             check=False)


def _loop_play(host, out, task):
    play = [{"hosts": host.name, "gather_facts": False,
             "tasks": [dict(task, register="r", ignore_errors=True, loop="{{ range(20) | list }}"),
                       {"name": "results", "ansible.builtin.copy": {"content": "{{ r | to_json }}", "dest": out},
                        "delegate_to": "localhost", "check_mode": False, "diff": False}]}]
    with tempfile.TemporaryDirectory() as tmp:
        book = os.path.join(tmp, "play.yml")
        with open(book, "w", encoding="utf-8") as handle:
            json.dump(play, handle)
        run = host.playbook(book, timeout=1800)
    assert os.path.exists(out), f"the playbook produced no results:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}"
    with open(out, encoding="utf-8") as handle:
        return json.load(handle)["results"]


def _outcomes(results):
    """(converged runs, clean refusals); raises on anything that is neither."""
    ok = refused = 0
    for item in results:
        text = json.dumps(item)
        assert "Traceback" not in text and "MODULE FAILURE" not in text, f"a run crashed instead of refusing: {text[-3000:]}"
        if item.get("failed"):
            assert "root" in item.get("msg", ""), item.get("msg")
            refused += 1
            print("refused:", item.get("msg", "")[:300])
        else:
            ok += 1
    return ok, refused


def test_swapping_container_never_makes_the_host_write_outside_its_root(host, tmp_path):
    before = host_hashes(host)
    # Before the swap: the other tenant's machine is cloned and running; the victim's .nspawn file is the fleet's and
    # the victim restarted onto it (a restart already pending would spare its root the fleet's read: nothing to race)
    host.run("fleet", {"machines": [{"name": NAME, "restart": "never"},
                                    {"name": OTHER, "image": OTHER_IMAGE, "resources": {"memory_max": "300M"}}]})
    host.run("machine", {"name": NAME, "state": "restarted", "wait": True})
    victim_files = host.ssh(f"stat -c '%n %y' /etc/systemd/nspawn/{NAME}.nspawn").stdout
    in_container(host, "systemd-run --unit=swapper python3 -c " + harness.shlex_quote(SWAPPER))
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOr6Zx0v3cJ2bA8h3ZgU7dQk8m8n8x3mJ2yq0p4l5a6b k"
    try:
        image_runs = _loop_play(host, str(tmp_path / "image.json"), {
            "name": "re-prepare the running root", "corral.nspawn.image": {
                "name": NAME, "setup_running": "apply", "hostname": "h{{ item }}",
                "authorized_keys": [f"{key}{{{{ item }}}}"]}})
        fleet_runs = _loop_play(host, str(tmp_path / "fleet.json"), {
            "name": "fleet re-run", "corral.nspawn.fleet": {
                "machines": [{"name": NAME, "restart": "never",
                              "image": {"hostname": "f{{ item }}", "authorized_keys": [f"{key}{{{{ item }}}}"]}},
                             {"name": OTHER, "image": OTHER_IMAGE, "resources": {"memory_max": "{{ 200 + item }}M"}}]}})
        swaps = int(in_container(host, "cat /swaps", check=False).stdout.strip() or 0)
    finally:
        in_container(host, "systemctl stop swapper", check=False)
        restore_swapped(host)
    # The fleet reads many paths of the root (its networkd units too): with the swapper at full speed on an idle
    # core every one of the 20 runs can be refused. One more run once the root is back must defer as well.
    settled = host.run("fleet", {"machines": [
        {"name": NAME, "restart": "never", "image": {"hostname": "fsettled", "authorized_keys": [f"{key}x"]}},
        {"name": OTHER, "image": OTHER_IMAGE, "resources": {"memory_max": "219M"}}]})
    assert host_hashes(host) == before, "a host file outside the container root changed"
    assert swaps >= 5000, f"the swapper made only {swaps} exchanges: the race was not exercised"
    image_ok, image_refused = _outcomes(image_runs)
    fleet_ok, fleet_refused = _outcomes(fleet_runs)
    print(f"\nimage runs: {image_ok} converged, {image_refused} refused; fleet runs: {fleet_ok} converged, "
          f"{fleet_refused} refused; swaps: {swaps}")
    assert image_ok + image_refused == 20 and fleet_ok + fleet_refused == 20
    deferred = [r for r in fleet_runs if not r.get("failed")] + [settled]
    assert deferred and all(r.get("pending_restart") == [NAME] for r in deferred), \
        [r.get("pending_restart") for r in deferred]
    hostname = host.ssh(f"cat /var/lib/machines/{NAME}/etc/hostname").stdout
    assert not hostname.startswith("f"), f"restart=never wrote {hostname!r} into the running root"
    assert_refusal_confined(host, fleet_runs, settled, victim_files)
    assert_directory_at_hostname_is_confined(host, key)


def assert_refusal_confined(host, fleet_runs, settled, victim_files):
    """The other tenant's machine converged in every run; a refused run names the victim and the path, and
    leaves the victim as it was (no file of its own written, not changed)."""
    other = [r.get("machines", {}).get(OTHER, {}) for r in fleet_runs]
    assert all(o.get("changed") is True and not o.get("refused") for o in other), \
        [(r.get("msg", "")[:200], r.get("machines", {}).get(OTHER)) for r in fleet_runs]
    dropin = f"/etc/systemd/system/systemd-nspawn@{OTHER}.service.d/50-corral-resources.conf"
    assert all(o.get("changes") == [f"resources: update {dropin}"] for o in other), [o.get("changes") for o in other]
    shown = host.ssh(f"systemctl show -p MemoryMax --value systemd-nspawn@{OTHER}.service").stdout.strip()
    assert shown == str(219 * 1024 * 1024), shown
    assert settled["machines"][OTHER]["changed"] is False, settled["machines"][OTHER]
    for run in (r for r in fleet_runs if r.get("failed")):
        victim = run["machines"][NAME]
        assert victim["failed"] is True and victim["changed"] is False and victim["changes"] == [], victim
        assert f"/var/lib/machines/{NAME}" in victim["refused"] and NAME in run["msg"], (run["msg"], victim)
    assert host.ssh(f"stat -c '%n %y' /etc/systemd/nspawn/{NAME}.nspawn").stdout == victim_files


def assert_directory_at_hostname_is_confined(host, key):
    """The same without a race: the tenant puts a directory where its /etc/hostname belongs. The fleet run fails
    naming it and that path, its root is not written, and the other machine's new limit is applied."""
    in_container(host, "sh -c 'mv /etc/hostname /etc/hostname.away && mkdir /etc/hostname'")
    try:
        result = host.module("fleet", {"machines": [
            {"name": NAME, "restart": "never", "image": {"hostname": "fdir", "authorized_keys": [f"{key}d"]}},
            {"name": OTHER, "image": OTHER_IMAGE, "resources": {"memory_max": "150M"}}]})
        names = host.ssh(f"ls -A /var/lib/machines/{NAME}/etc/hostname").stdout
    finally:
        in_container(host, "sh -c 'rmdir /etc/hostname; mv /etc/hostname.away /etc/hostname'", check=False)
    victim = result.get("machines", {}).get(NAME, {})
    assert result.get("failed") is True and result.get("refused") == [NAME], result.get("msg")
    assert f"{NAME}: refusing to read /var/lib/machines/{NAME}/etc/hostname: it is a directory" in result["msg"]
    assert victim.get("refused", "").startswith(f"refusing to read /var/lib/machines/{NAME}/etc/hostname"), victim
    assert victim["changed"] is False and names == "", (victim, names)
    assert result["machines"][OTHER]["changed"] is True and "refused" not in result["machines"][OTHER]
    shown = host.ssh(f"systemctl show -p MemoryMax --value systemd-nspawn@{OTHER}.service").stdout.strip()
    assert shown == str(150 * 1024 * 1024), shown


def restore_swapped(host):
    """Put the container's real /etc and /root/.ssh back where they belong (the swapper may stop mid-way)."""
    for rel in ("etc", "root/.ssh"):
        path = f"/var/lib/machines/{NAME}/{rel}"
        host.ssh(f"if [ -L {path} ]; then mv {path} {path}.tmp && mv {path}.evil {path} && mv {path}.tmp {path}.evil; "
                 f"fi; rm -f {path}.evil", check=False)


def test_running_root_is_not_written_by_default_and_change_is_reported(host):
    """setup_running defaults to defer: a running machine's first-boot content waits for it to stop."""
    before = host.ssh(f"cat /var/lib/machines/{NAME}/etc/hostname", check=False).stdout
    result = host.run("image", {"name": NAME, "hostname": "deferred-name"})
    assert result["changed"] is False and result["pending_restart"] is True, result
    assert any("hostname" in change for change in result["deferred"]), result["deferred"]
    assert any("deferred" in warning for warning in result.get("warnings", [])), result
    assert host.ssh(f"cat /var/lib/machines/{NAME}/etc/hostname", check=False).stdout == before
    harness.succeeded(host.module("machine", {"name": NAME, "state": "stopped"}), "stop")
    applied = host.run("image", {"name": NAME, "hostname": "deferred-name"})
    assert applied["changed"] is True and not applied["deferred"], applied
    assert host.ssh(f"cat /var/lib/machines/{NAME}/etc/hostname").stdout == "deferred-name\n"
