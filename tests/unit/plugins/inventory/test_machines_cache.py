# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""corral.nspawn.machines discovery with the inventory cache, through the real ansible-inventory.

A container host in local mode (``ansible_connection: local``) is discovered with ``machinectl
list`` on the controller; a stand-in ``machinectl`` first in PATH answers and counts its calls.
With ``cache: true`` the second run answers from the cache (no call, even with the stand-in
failing); ``ansible-playbook --flush-cache`` asks the host again and refreshes the cache (that is
the flag every supported ansible-core has: ansible-inventory gained its own only in 2.18); without
``cache`` every run asks.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
COLLECTIONS = os.path.join(ROOT, ".collections")
ROWS = [{"machine": "web", "class": "container", "service": "systemd-nspawn", "os": "debian", "version": "12",
         "addresses": "10.88.0.10"}]


@pytest.fixture
def project(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls"
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps(ROWS))
    fake = bindir / "machinectl"
    fake.write_text(f"#!/bin/sh\necho \"$*\" >> {calls}\n[ -e {rows} ] || {{ echo 'machined is gone' >&2; exit 1; }}\n"
                    f"cat {rows}\n")
    fake.chmod(0o755)
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "hosts.yml").write_text("all:\n  children:\n    nspawn_hosts:\n      hosts:\n"
                                   "        node1: {ansible_connection: local}\n")
    (inv / "zz-containers.yml").write_text(
        "plugin: corral.nspawn.machines\nsources: [discovered]\ncache: true\ncache_plugin: ansible.builtin.jsonfile\n"
        f"cache_connection: {tmp_path / 'cache'}\ncache_timeout: 3600\n")
    return {"inv": str(inv), "calls": calls, "rows": rows, "bin": str(bindir), "tmp": tmp_path}


def run(project, program, *args):
    if not os.path.isdir(COLLECTIONS):
        pytest.fail(f"{COLLECTIONS} is missing: run 'make collection' first")
    env = dict(os.environ, PATH=f"{project['bin']}:{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}",
               ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_INVENTORY_ENABLED="yaml,corral.nspawn.machines",
               ANSIBLE_HOME=str(project["tmp"] / "home"))
    res = subprocess.run([os.path.join(os.path.dirname(sys.executable), program), "-i", project["inv"], *args],
                         capture_output=True, text=True, env=env, check=False, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def inventory(project):
    return json.loads(run(project, "ansible-inventory", "--list"))


def flush(project):
    playbook = project["tmp"] / "noop.yml"
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  tasks: []\n")
    run(project, "ansible-playbook", "--flush-cache", str(playbook))


def calls(project):
    return project["calls"].read_text().splitlines() if project["calls"].exists() else []


def test_discovery_is_cached_and_flushed(project):
    first = inventory(project)
    assert "web.node1" in first["nspawn_containers"]["hosts"], first
    assert calls(project) == ["list --output=json --no-pager"]
    project["rows"].unlink()  # the host would now fail: only the cache can answer
    second = inventory(project)
    assert "web.node1" in second["nspawn_containers"]["hosts"] and len(calls(project)) == 1
    project["rows"].write_text("[]")
    flush(project)
    assert len(calls(project)) == 2
    refreshed = inventory(project)  # from the cache the flush wrote: the host's empty answer
    assert len(calls(project)) == 2 and "web.node1" not in json.dumps(refreshed.get("nspawn_containers", {}))


def test_without_cache_every_run_asks(project):
    source = os.path.join(project["inv"], "zz-containers.yml")
    with open(source, encoding="utf-8") as handle:
        text = handle.read().replace("cache: true", "cache: false")
    with open(source, "w", encoding="utf-8") as handle:
        handle.write(text)
    inventory(project)
    inventory(project)
    assert len(calls(project)) == 2
