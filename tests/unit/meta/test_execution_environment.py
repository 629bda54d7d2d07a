# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""examples/execution-environment.yml builds a correct ansible-builder context, and what the
installed collection contributes to an EE is its real controller needs only (issue 13).

The image build itself needs a container engine and base images that a test machine without
outside access cannot fetch; docs/execution-environments.md says so."""

import os
import shutil

import dist
import yaml


def builder_context(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(os.path.join(dist.ROOT, "examples"), project)
    dist.run([dist.tool("ansible-builder"), "create", "--file", "execution-environment.yml", "--context", "context",
              "--output-filename", "Containerfile"], project)
    return project, project / "context"


def test_builder_context_installs_the_project_collections(tmp_path):
    project, context = builder_context(tmp_path)
    containerfile = (context / "Containerfile").read_text()
    with open(project / "execution-environment.yml", encoding="utf-8") as handle:
        ee = yaml.safe_load(handle)
    assert ee["version"] == 3
    assert f'ARG EE_BASE_IMAGE="{ee["images"]["base_image"]["name"]}"' in containerfile
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2.17,<2.20 ansible-runner"' in containerfile
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" \
        in containerfile
    # The build installs exactly the project's requirements.yml, and introspects the collections.
    with open(context / "_build" / "requirements.yml", encoding="utf-8") as built, \
            open(project / "requirements.yml", encoding="utf-8") as ours:
        assert yaml.safe_load(built) == yaml.safe_load(ours)
    assert [c["name"] for c in yaml.safe_load((context / "_build" / "requirements.yml").read_text())["collections"]] \
        == ["corral.nspawn"]
    assert "introspect.py introspect" in containerfile


def test_installed_collection_adds_only_its_controller_needs_to_an_ee(installed):
    """What the build's introspect step reads from corral.nspawn: an SSH client, no Python package."""
    done = dist.run([dist.tool("ansible-builder"), "introspect", installed["collections"]], ".")
    data = yaml.safe_load(done.stdout)
    assert data["python"] == [], data
    assert [line.split("#")[0].strip() for line in data["system"]] == \
        ["openssh-client [platform:dpkg]", "openssh-clients [platform:rpm]"], data
