# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for images.py: validation and the pure plan (images_io, images_tree_io, images_backends_io,
images_setup and images_setup_io: their own test_*.py)."""

import os

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import images
from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.images_fakes import params


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("kw, fragment", [
    ({"name": ".host"}, "name: '.host' is reserved"),
    ({"name": "a" * 65}, "longer than 64"),
    ({"name": "bad/name"}, "not a valid machine name"),
    ({"source": "debootstrap"}, "suite: required with source=debootstrap"),
    ({"source": "debootstrap", "suite": "bookworm", "variant": "Min Base"}, "variant"),
    ({"source": "dnf", "packages": ["x"]}, "releasever: required"),
    ({"source": "zypper"}, "packages: required"),
    ({"source": "mkosi"}, "mkosi_directory: required"),
    ({"source": "tar"}, "path/url: give exactly one"),
    ({"source": "tar", "path": "/a", "url": "http://b/c"}, "path/url"),
    ({"source": "tar", "url": "ftp://x/y"}, "url:"),
    ({"source": "tar", "path": "/a", "checksum": "sha256"}, "checksum:"),
    ({"source": "tar", "path": "/a", "checksum": "crc32:abcd"}, "checksum:"),
    ({"source": "raw", "path": "/a", "hostname": "x"}, "source=raw: post-setup"),
    ({"source": "clone"}, "clone_from: required"),
    ({"source": "clone", "clone_from": "web1"}, "cloned from itself"),
    ({"source": "clone", "clone_from": "../etc"}, "clone_from:"),
    ({"source": "directory", "path": "rel"}, "absolute"),
    ({"source": "tar", "path": "/a", "suite": "bookworm"}, "suite: only used with source=debootstrap"),
    ({"source": "clone", "clone_from": "t", "packages": ["x"]}, "packages: only used with"),
    ({"source": "clone", "clone_from": "t", "address": "10.0.0.5"}, "address: '10.0.0.5' must be an address with prefix"),
    ({"source": "clone", "clone_from": "t", "address": "10.0.0.5/33"}, "address:"),
    ({"source": "clone", "clone_from": "t", "gateway": "10.0.0.1"}, "only used together with address"),
    ({"source": "clone", "clone_from": "t", "address": "10.0.0.5/24", "gateway": "fe80::1"}, "same IP version"),
    ({"source": "clone", "clone_from": "t", "address": "10.0.0.5/24", "dns": ["dns.example"]}, "dns:"),
    ({"source": "clone", "clone_from": "t", "hostname": "-bad"}, "hostname:"),
    ({"source": "clone", "clone_from": "t", "root_password_hash": "plain"}, "root_password_hash"),
    ({"source": "clone", "clone_from": "t", "authorized_keys": ["a\nb"]}, "one key per list item"),
])
def test_validation_names_option_and_value(kw, fragment):
    errors = images.validate(params("/var/lib/machines", **kw))
    assert any(fragment in e for e in errors), errors


def test_relative_machines_dir_is_refused():
    assert any("machines_dir" in e for e in images.validate(images.normalize({"name": "a", "machines_dir": "rel"})))


@pytest.mark.parametrize("kw", [
    {"source": "debootstrap", "suite": "bookworm", "variant": "minbase", "include": ["systemd"]},
    {"source": "tar", "url": "https://images.invalid/x.tar.xz", "checksum": "sha256:" + "ab" * 32},
    {"source": "clone", "clone_from": "tmpl", "address": "10.0.0.5/24", "gateway": "10.0.0.1", "dns": ["10.0.0.1"]},
    {"source": "raw", "path": "/x.raw"},
    {"state": "absent", "suite": "ignored"},
    {"hostname": "web1"},
])
def test_valid_options_pass(kw):
    assert images.validate(params("/var/lib/machines", **kw)) == []


# ---------------------------------------------------------------- plan (pure)

def test_plan_create_needs_source():
    with pytest.raises(images.ImageError, match="source: required to create"):
        images.plan_item(params("/m"), images.Paths("/m", "web1"), images.Current())


def test_plan_existing_root_is_never_rebuilt_without_force():
    record = {"source": "debootstrap", "suite": "bookworm"}
    cur = images.Current(exists=True, kind="directory", record=dict(record, variant=None, components=None))
    desired = params("/m", source="debootstrap", suite="trixie")
    todo = images.plan_item(desired, images.Paths("/m", "web1"), cur)
    assert todo.action == "none" and "suite: 'bookworm' -> 'trixie'" in todo.warnings[0]
    forced = images.plan_item(dict(desired, force=True), images.Paths("/m", "web1"), cur)
    assert forced.action == "rebuild" and "force" in forced.changes[0]


def test_plan_rebuild_refused_while_running():
    cur = images.Current(exists=True, kind="directory", running=True)
    with pytest.raises(images.ImageError, match="running"):
        images.plan_item(params("/m", source="clone", clone_from="t", force=True), images.Paths("/m", "web1"), cur)


def test_plan_absent_refuses_running_unless_force():
    cur = images.Current(exists=True, kind="directory", running=True)
    with pytest.raises(images.ImageError, match="is running; stop it first or set force=true"):
        images.plan_item(params("/m", state="absent"), images.Paths("/m", "web1"), cur)
    todo = images.plan_item(params("/m", state="absent", force=True), images.Paths("/m", "web1"), cur)
    assert todo.stop and todo.action == "remove"


def test_plan_leftovers_are_cleaned_in_every_state():
    cur = images.Current(leftovers=["/m/.corral-staging-web1"])
    for state in ("present", "absent"):
        todo = images.plan_item(params("/m", state=state, source="clone", clone_from="t"), images.Paths("/m", "web1"), cur)
        assert todo.cleanup == ["/m/.corral-staging-web1"] and "leftovers" in todo.changes[0]


def test_plan_symlink_out_of_machines_dir_is_refused_for_present(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(str(tmp_path / "outside"), str(tmp_path / "m" / "web1"))
    paths = images.Paths(str(tmp_path / "m"), "web1")
    cur = images.Current(exists=True, kind="symlink", target=str(tmp_path / "outside"))
    with pytest.raises(images.ImageError, match="outside machines_dir"):
        images.plan_item(params(paths.machines_dir, hostname="x"), paths, cur)
    todo = images.plan_item(params(paths.machines_dir, state="absent"), paths, cur)
    assert "its target" in todo.changes[-1]


# ---------------------------------------------------------------- processes in a path (pure)

@pytest.mark.parametrize("argv, root, cwd, uses", [
    (["debootstrap", "bookworm", "/m/.corral-staging-w/root"], "/", "/", True),
    (["dpkg", "-i", "x.deb"], "/m/.corral-staging-w/root", "/", True),
    (["sh"], "/", "/m/.corral-staging-w/root/tmp", True),
    (["sh"], "/", "/m/.corral-staging-w2", False),
    (["cat", "/m/.corral-staging-wx"], "/", "/", False),
])
def test_path_uses(argv, root, cwd, uses):
    assert images.path_uses("/m/.corral-staging-w", argv, root, cwd) is uses


def test_an_ubuntu_suite_without_a_mirror_is_refused_with_the_keyring_hint():
    """Issue 19, 8: the guide's jammy one-liner failed on a Debian host (default mirror, no keyring)."""
    errors = images.validate(images.normalize({"name": "u1", "machines_dir": "/var/lib/machines",
                                               "source": "debootstrap", "suite": "jammy"}))
    assert any(e.startswith("mirror: required for the Ubuntu suite 'jammy'") and "ubuntu-keyring" in e for e in errors)
    assert images.validate(images.normalize({"name": "u1", "machines_dir": "/var/lib/machines", "source": "debootstrap",
                                             "suite": "jammy", "mirror": "http://mirror.invalid/ubuntu"})) == []
