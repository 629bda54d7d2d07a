# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Smoke test of what users install (issue 13): the collection tarball, installed into a copy of
examples/ as `ansible-galaxy collection install` leaves it, deploys a container on a test host
with the project's own `ansible-playbook site.yml`. Nothing of this checkout is on the
collections path: the run loads only the installed copy."""

import json
import os
import shutil
import sys

import harness
import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "unit", "meta"))

import dist  # noqa: E402  pylint: disable=wrong-import-position

# The example's first container only (with its zone, NAT and port forward) keeps the test short.
KEEP = ["web"]


@pytest.fixture(scope="module")
def project(tmp_path_factory, make_host):
    work = tmp_path_factory.mktemp("installed")
    built = dist.build_and_install(str(work / "build"))
    host = make_host("dst-a")
    proj = work / "my-fleet"
    shutil.copytree(os.path.join(harness.REPO, "examples"), proj)
    env = dist.clean_env(ANSIBLE_LOCAL_TEMP=os.path.join(harness.STATE_DIR, "ansible-tmp"))
    dist.run([dist.tool("ansible-galaxy"), "collection", "install", built["tarball"]], proj, env)
    found = json.loads(dist.run([dist.tool("ansible-galaxy"), "collection", "list", "corral.nspawn",
                                 "--format", "json"], proj, env).stdout)
    assert list(found) == [str(proj / "collections" / "ansible_collections")], found
    # The project's inventory with the test host as the only member of nspawn_hosts.
    data = json.loads(harness._write_inventory([host]))  # pylint: disable=protected-access
    data["all"]["children"] = {"nspawn_hosts": {"hosts": data["all"]["children"]["test_hosts"]["hosts"]}}
    (proj / "inventory" / "hosts.yml").write_text(json.dumps(data, indent=2))
    fleet = proj / "inventory" / "group_vars" / "nspawn_hosts" / "fleet.yml"
    declared = yaml.safe_load(fleet.read_text())
    declared["corral_fleet_machines"] = [m for m in declared["corral_fleet_machines"] if m["name"] in KEEP]
    fleet.write_text(yaml.safe_dump(declared))
    return {"dir": proj, "env": env, "host": host}


def playbook(project, *args):
    argv = [dist.tool("ansible-playbook"), "site.yml"] + list(args)
    done = dist.run(argv, project["dir"], project["env"], timeout=900)
    return harness.parse_recap(done.stdout), done.stdout


def test_installed_collection_deploys_the_example_project(project):
    host = project["host"]
    recap, out = playbook(project)
    assert recap[host.name]["failed"] == 0 and recap[host.name]["changed"] > 0, out[-3000:]
    state = host.ssh("systemctl is-active systemd-nspawn@web.service; systemctl is-enabled systemd-nspawn@web.service",
                     check=False).stdout.split()
    assert state == ["active", "enabled"], state
    assert host.ssh("ip -4 addr show vz-apps").stdout.count("10.88.0.1/24") == 1
    # The second look changes nothing: check mode against the deployed host.
    recap, out = playbook(project, "--check")
    assert f"web.{host.name}" in recap, out[-3000:]  # the second play reached the container
    assert all(r["failed"] == 0 and r["changed"] == 0 for r in recap.values()), out[-3000:]
