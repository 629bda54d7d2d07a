# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Command lines of every image backend (pure builders), drift and source records."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import images
from ansible_collections.corral.nspawn.plugins.module_utils import images_backends as b

T = "/var/lib/machines/.corral-staging-web1/root"


def p(**kw):
    return images.normalize(dict({"name": "web1"}, **kw))


@pytest.mark.parametrize("params, expected", [
    (p(source="debootstrap", suite="bookworm"), [["debootstrap", "bookworm", T]]),
    (p(source="debootstrap", suite="bookworm", variant="minbase", include=["systemd", "dbus"],
       exclude=["nano"], components=["main", "contrib"], arch="arm64", keyring="/k.gpg",
       mirror="http://mirror.invalid/debian", extra_args=["--cache-dir=/c"]),
     [["debootstrap", "--variant=minbase", "--components=main,contrib", "--include=systemd,dbus",
       "--exclude=nano", "--arch=arm64", "--keyring=/k.gpg", "--cache-dir=/c", "bookworm", T,
       "http://mirror.invalid/debian"]]),
    (p(source="debootstrap", suite="noble", components=["main", "universe"]),
     [["debootstrap", "--components=main,universe", "noble", T]]),
    (p(source="pacstrap"), [["pacstrap", "-c", "-K", T, "base"]]),
    (p(source="pacstrap", packages=["base", "vim"], pacstrap_host_cache=False, pacstrap_init_keyring=False),
     [["pacstrap", T, "base", "vim"]]),
    (p(source="dnf", releasever="40", packages=["systemd", "passwd"], repos=["fedora", "updates"]),
     [["dnf", "-y", f"--installroot={T}", "--releasever=40", "--setopt=install_weak_deps=False",
       "--repo=fedora", "--repo=updates", "install", "systemd", "passwd"]]),
    (p(source="dnf", releasever="9", packages=["systemd"], arch="aarch64", extra_args=["--nogpgcheck"]),
     [["dnf", "-y", f"--installroot={T}", "--releasever=9", "--setopt=install_weak_deps=False",
       "--forcearch=aarch64", "--nogpgcheck", "install", "systemd"]]),
    (p(source="zypper", packages=["systemd"]),
     [["zypper", "--root", T, "--non-interactive", "--gpg-auto-import-keys", "install", "--no-recommends",
       "systemd"]]),
    (p(source="zypper", packages=["systemd", "openSUSE-release"], releasever="15.6",
       repos=["http://repo.invalid/oss", "http://repo.invalid/update"]),
     [["zypper", "--root", T, "--non-interactive", "--gpg-auto-import-keys", "--releasever", "15.6",
       "addrepo", "--refresh", "http://repo.invalid/oss", "corral-repo0"],
      ["zypper", "--root", T, "--non-interactive", "--gpg-auto-import-keys", "--releasever", "15.6",
       "addrepo", "--refresh", "http://repo.invalid/update", "corral-repo1"],
      ["zypper", "--root", T, "--non-interactive", "--gpg-auto-import-keys", "--releasever", "15.6",
       "install", "--no-recommends", "systemd", "openSUSE-release"]]),
    (p(source="mkosi", mkosi_directory="/srv/mkosi/web"),
     [["mkosi", "-C", "/srv/mkosi/web", "--format=directory",
       "--output-dir=/var/lib/machines/.corral-staging-web1", "--output=root", "--force", "build"]]),
])
def test_bootstrap_command_lines(params, expected):
    assert b.bootstrap_commands(params, T) == expected


def test_user_data_stays_one_argument_each():
    # No shell: spaces and metacharacters are passed through as single argv items.
    cmds = b.bootstrap_commands(p(source="pacstrap", packages=["a b; rm -rf /"]), T)
    assert cmds == [["pacstrap", "-c", "-K", T, "a b; rm -rf /"]]


@pytest.mark.parametrize("importer, kind, expected", [
    ("importctl", "tar", [["importctl", "import-tar", "--class=machine", "/x.tar", "corral-staging-web1"]]),
    ("importctl", "raw", [["importctl", "import-raw", "--class=machine", "/x.raw", "corral-staging-web1"]]),
    ("machinectl", "tar", [["machinectl", "import-tar", "/x.tar", "corral-staging-web1"]]),
    ("machinectl", "raw", [["machinectl", "import-raw", "/x.raw", "corral-staging-web1"]]),
])
def test_importer_command_lines(importer, kind, expected):
    assert b.importer_commands(importer, kind, f"/x.{kind}", "corral-staging-web1") == expected


def test_tar_extract_keeps_owners_xattrs_acls():
    argv = b.tar_extract("/i.tar.xz", T)
    assert argv[0] == "tar" and {"--numeric-owner", "--xattrs", "--acls", "-xpf"} <= set(argv)
    assert argv[-2:] == ["-C", T]


@pytest.mark.parametrize("method, expected", [
    ("snapshot", [["btrfs", "subvolume", "snapshot", "/m/tmpl", T]]),
    ("copy", [["cp", "-a", "--reflink=auto", "--no-target-directory", "/m/tmpl", T]]),
])
def test_copy_command_lines(method, expected):
    assert b.copy_commands(method, "/m/tmpl", T) == expected


def test_every_source_has_a_record_and_builder_or_importer():
    for source in b.SOURCES:
        assert source in b.SOURCE_KEYS
        assert source in b.BUILDERS or source in b.IMPORT_SOURCES or source in b.COPY_SOURCES
    for keys in b.SOURCE_KEYS.values():
        assert set(keys) <= set(images.IMAGE_OPTION_SPEC)


def test_drift_lists_changed_options_only():
    old = b.source_record(p(source="debootstrap", suite="bookworm", variant="minbase"))
    new = b.source_record(p(source="debootstrap", suite="trixie", variant="minbase"))
    assert b.drift(old, new) == ["suite: 'bookworm' -> 'trixie'"]
    assert b.drift(old, old) == []
    assert b.drift(None, new) == []


def test_record_ignores_post_setup_options():
    a = b.source_record(p(source="clone", clone_from="t", hostname="a"))
    c = b.source_record(p(source="clone", clone_from="t", hostname="c", address="10.0.0.2/24"))
    assert a == c == {"source": "clone", "clone_from": "t"}
