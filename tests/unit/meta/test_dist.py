# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What users install: the tarball's contents, the installed copy's docs, its playbook by FQCN,
and examples/ as a starter project copied out of the repository (issue 13)."""

import json
import os
import shutil
import tarfile

import dist
import yaml

ROOT = dist.ROOT
MODULES = sorted(n[:-3] for n in os.listdir(os.path.join(ROOT, "plugins", "modules"))
                 if n.endswith(".py") and not n.startswith("_"))
ROLES = sorted(os.listdir(os.path.join(ROOT, "roles")))
# Must be in the tarball: what a user or ansible-builder reads.
REQUIRED = ("COPYING", "README.md", "MANIFEST.json", "FILES.json", "meta/runtime.yml",
            "meta/execution-environment.yml", "meta/ee-requirements.txt", "meta/ee-bindep.txt",
            "playbooks/site.yml", "requirements.txt", "examples/site.yml", "examples/ansible.cfg",
            "examples/requirements.yml", "examples/execution-environment.yml",
            "docs/docsite/links.yml", "docs/docsite/extra-docs.yml", "docs/docsite/rst/user_guide.rst",
            "changelogs/changelog.yaml")
# Must not be: development pins and configuration of this checkout.
FORBIDDEN_FILES = ("requirements-dev.txt", "ansible.cfg", "Makefile", ".gitignore")
DEV_TOOLS = ("ansible-lint", "pytest", "hypothesis", "pyroute2", "antsibull", "ansible-builder", "sphinx")


def tarball_names(path):
    with tarfile.open(path) as tar:
        return {m.name for m in tar.getmembers()}


def test_tarball_has_what_users_need(installed):
    names = tarball_names(installed["tarball"])
    missing = [n for n in REQUIRED if n not in names]
    assert not missing, missing
    assert {f"plugins/modules/{m}.py" for m in MODULES} <= names
    assert {f"roles/{r}/meta/argument_specs.yml" for r in ROLES} <= names


def test_tarball_leaves_out_caches_ide_folders_and_development_pins(installed):
    names = tarball_names(installed["tarball"])
    leaked = sorted(n for n in names for decoy in dist.DECOYS
                    if n == decoy or decoy.startswith(n.rstrip("/") + "/") and n.split("/")[-1].startswith("."))
    leaked += sorted(n for n in names if "__pycache__" in n or ".pytest_cache" in n or n.endswith(".pyc"))
    leaked += [n for n in FORBIDDEN_FILES if n in names]
    assert not leaked, leaked
    for decoy in dist.DECOYS:
        assert decoy not in names


def test_collection_requirements_hold_no_development_pins():
    """ansible-builder pins what the collection declares into every EE that includes it."""
    for rel in ("requirements.txt", "meta/ee-requirements.txt"):
        with open(os.path.join(ROOT, rel), encoding="utf-8") as handle:
            lines = [line.split("#")[0].strip() for line in handle]
        pins = [line for line in lines if line]
        assert not [p for p in pins if p.lower().startswith(DEV_TOOLS)], (rel, pins)
    with open(os.path.join(ROOT, "meta", "execution-environment.yml"), encoding="utf-8") as handle:
        meta = yaml.safe_load(handle)
    assert meta["dependencies"] == {"python": "meta/ee-requirements.txt", "system": "meta/ee-bindep.txt"}


def plugins_of_the_checkout():
    """{ansible-doc type: [names]} of every plugin directory of the collection (modules, connection, ...)."""
    found = {}
    for kind in sorted(os.listdir(os.path.join(ROOT, "plugins"))):
        if kind in ("module_utils", "doc_fragments", "plugin_utils") or kind.startswith(("_", ".")):
            continue
        names = sorted(n[:-3] for n in os.listdir(os.path.join(ROOT, "plugins", kind))
                       if n.endswith(".py") and not n.startswith("_"))
        if names:
            found["module" if kind == "modules" else kind] = names
    return found


def test_installed_copy_lists_and_documents_every_plugin(installed):
    env = installed["env"]
    plugins = plugins_of_the_checkout()
    assert plugins["module"] == MODULES
    for kind, names in plugins.items():
        listed = json.loads(dist.run([dist.tool("ansible-doc"), "-t", kind, "-l", "corral.nspawn", "--json"],
                                     ".", env).stdout)
        assert sorted(listed) == [f"corral.nspawn.{n}" for n in names], kind
        docs = json.loads(dist.run([dist.tool("ansible-doc"), "--json", "-t", kind]
                                   + [f"corral.nspawn.{n}" for n in names], ".", env).stdout)
        for name in names:
            doc = docs[f"corral.nspawn.{name}"]
            assert doc["doc"]["short_description"] and doc["doc"].get("description"), (kind, name)
            if kind == "module":
                assert doc["examples"] and doc["doc"]["options"], name
    roles = json.loads(dist.run([dist.tool("ansible-doc"), "--json", "-t", "role"]
                                + [f"corral.nspawn.{r}" for r in ROLES], ".", env).stdout)
    for role in ROLES:
        assert roles[f"corral.nspawn.{role}"]["entry_points"]["main"]["options"], role


def test_installed_playbook_runs_by_its_fqcn(installed, tmp_path):
    """The README's first command for installed use: ansible-playbook -i inventory.yml corral.nspawn.site."""
    shutil.copytree(os.path.join(ROOT, "examples", "inventory"), tmp_path / "inventory")
    for args in (["--syntax-check"], ["--list-tasks"]):
        done = dist.run([dist.tool("ansible-playbook"), "-i", "inventory/hosts.yml", "corral.nspawn.site"] + args,
                        tmp_path, installed["env"])
        assert "ERROR" not in done.stderr, done.stderr
    assert "corral.nspawn.fleet : " in done.stdout and "corral.nspawn.host : " in done.stdout, done.stdout


def test_examples_work_as_a_project_copied_out_of_the_repository(installed, tmp_path):
    project = tmp_path / "my-fleet"
    shutil.copytree(os.path.join(ROOT, "examples"), project)
    # As the project's README says: install the collection into the project (here from the tarball,
    # offline), then requirements.yml is satisfied without any server.
    env = dist.clean_env()
    dist.run([dist.tool("ansible-galaxy"), "collection", "install", installed["tarball"]], project, env)
    assert os.path.isfile(project / "collections" / "ansible_collections" / "corral" / "nspawn" / "MANIFEST.json")
    done = dist.run([dist.tool("ansible-galaxy"), "collection", "install", "--offline", "-r", "requirements.yml"],
                    project, env)
    assert "Nothing to do" in done.stdout, done.stdout
    found = json.loads(dist.run([dist.tool("ansible-galaxy"), "collection", "list", "corral.nspawn",
                                 "--format", "json"], project, env).stdout)
    assert list(found) == [str(project / "collections" / "ansible_collections")], found
    dist.run([dist.tool("ansible-playbook"), "site.yml", "--syntax-check"], project, env)
    tasks = dist.run([dist.tool("ansible-playbook"), "site.yml", "--list-tasks"], project, env).stdout
    assert "corral.nspawn.network : " in tasks, tasks
    inventory = json.loads(dist.run([dist.tool("ansible-inventory"), "--list"], project, env).stdout)
    hosts = inventory["nspawn_hosts"]["hosts"]
    assert hosts == ["node1", "node2"], inventory
    hostvars = inventory["_meta"]["hostvars"]
    machines = [m["name"] for m in hostvars["node1"]["corral_fleet_machines"]]
    assert machines == ["web", "app", "db"]
    assert hostvars["node2"]["corral_fleet_host_defaults"], hostvars["node2"]
    # inventory/machines.yml (read after hosts.yml): every container of both hosts is a host too.
    containers = sorted(inventory["nspawn_containers"]["hosts"])
    assert len(containers) == 2 * len(machines), containers
