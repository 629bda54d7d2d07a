# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image validation, planning, staging/rename, leftovers, removal safety and post-setup."""

import os
import shutil
import subprocess

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import images, images_setup as setup
from ansible_collections.corral.nspawn.plugins.module_utils import images_backends_io as backends_io
from ansible_collections.corral.nspawn.plugins.module_utils import images_io, images_tree_io as tree
from ansible_collections.corral.nspawn.plugins.module_utils import images_setup_io as setup_io
from ansible_collections.corral.nspawn.plugins.module_utils.layout import Layout
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError
from ansible_collections.corral.nspawn.tests.unit import fakes

from ansible_collections.corral.nspawn.tests.unit.post_setup import ensure_post_setup


class FakeModule(fakes.FakeModule):
    """The shared fake, but it runs real commands (cp, tar) unless an answer names a word of the argv;
    no machined, no systemctl."""

    def __init__(self, check_mode=False, missing=(), answers=None):
        super().__init__(check_mode=check_mode)
        self.missing = set(missing) | {"systemctl", "machinectl", "importctl"}
        self.answers = answers or {}

    def get_bin_path(self, name, *args, **kwargs):
        return None if name in self.missing else shutil.which(name)

    def run_command(self, argv, data=None, **kwargs):
        assert isinstance(argv, list) and kwargs.get("expand_user_and_vars") is False
        self.calls.append(list(argv))
        for prefix, answer in self.answers.items():
            if prefix in argv or prefix in (os.path.basename(a) for a in argv):
                return answer
        proc = subprocess.run(argv, input=data, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr


def make_template(path):
    """A tiny root: hardlinks, a symlink, shadow, ssh host key, securetty, xattr-free but mode-rich."""
    for d in ("etc/ssh", "usr/lib/systemd/system", "root", "var/lib/dbus"):
        os.makedirs(os.path.join(path, d))
    files = {"etc/machine-id": "0123456789abcdef0123456789abcdef\n", "etc/hostname": "template\n",
             "etc/shadow": "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
             "etc/securetty": "console\ntty1\n", "var/lib/dbus/machine-id": "0123\n",
             "usr/lib/systemd/system/systemd-networkd.service": "[Install]\nWantedBy=multi-user.target\n"}
    for rel, text in files.items():
        with open(os.path.join(path, rel), "w", encoding="utf-8") as handle:
            handle.write(text)
    os.chmod(os.path.join(path, "etc/shadow"), 0o640)
    os.link(os.path.join(path, "etc/hostname"), os.path.join(path, "etc/hostname.hardlink"))
    os.symlink("/etc/hostname", os.path.join(path, "etc/abs-link"))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    os.path.join(path, "etc/ssh/ssh_host_ed25519_key")], check=True)
    return path


@pytest.fixture
def machines(tmp_path):
    mdir = tmp_path / "machines"
    mdir.mkdir()
    make_template(str(mdir / "tmpl"))
    return str(mdir)


def params(machines_dir, **kw):
    return images.normalize(dict({"name": "web1", "machines_dir": machines_dir}, **kw))


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


def test_read_plan_apply_for_n_images_plan_never_builds(machines):
    """Issue 16: the fleet planned by building; read and plan change nothing (a real run too), apply builds."""
    module, layout = FakeModule(), Layout(machines_dir=machines)
    items = [params(machines, name=name, source="clone", clone_from="tmpl", hostname=name) for name in ("c1", "c2")]
    todo = images.plan(items, images_io.read(module, layout, items))
    assert sorted(os.listdir(machines)) == ["tmpl"] and module.calls == []
    assert [item.action for item in todo.items.values()] == ["create", "create"] and todo.changed
    assert any("hostname" in words for words in todo.items["c1"].setup_words)
    outcomes = images_io.apply(module, layout, todo)
    assert set(outcomes) == {"c1", "c2"} and all(os.path.isdir(os.path.join(machines, n)) for n in ("c1", "c2"))
    assert images.result(todo.items["c2"], outcomes["c2"])["changes"] == images.result(todo.items["c2"])["changes"]
    again = images.plan(items, images_io.read(module, layout, items))
    assert not again.changed and [item.action for item in again.items.values()] == ["none", "none"]


def test_a_clone_of_a_template_planned_in_the_same_run_is_built_after_it(machines):
    """The fleet reads and plans every image before it builds any: a planned template need not exist at read."""
    module, layout = FakeModule(), Layout(machines_dir=machines)
    template = params(machines, name="t2", source="clone", clone_from="tmpl")
    clone = params(machines, name="c1", source="clone", clone_from="t2", _source_planned=True)
    todo = images.plan([template, clone], images_io.read(module, layout, [template, clone]))
    assert [item.action for item in todo.items.values()] == ["create", "create"]
    alone = images.plan([clone], images_io.read(module, layout, [clone]))
    with pytest.raises(images.ImageError, match="clone_from: .*t2 is not an existing directory"):
        images_io.apply(module, layout, alone)   # built without its template: refused before any copy
    images_io.apply(module, layout, todo)
    assert os.path.isfile(os.path.join(machines, "c1", "etc/shadow"))


def test_import_name_is_a_valid_machine_name_for_long_names():
    from ansible_collections.corral.nspawn.plugins.module_utils.names import machine_name_error
    name = backends_io.new_import_name()
    assert machine_name_error(name) is None and name != backends_io.new_import_name()  # random per build


# ---------------------------------------------------------------- mounts, processes, fs types (pure parts)

MOUNTINFO = """22 1 8:1 / / rw - ext4 /dev/vda rw
40 22 0:40 / /var/lib/machines rw - btrfs /dev/vdb rw
41 40 0:41 / /var/lib/machines/.corral-staging-web1/root/proc rw - proc proc rw
42 40 0:42 / /var/lib/machines/.corral-staging-web1/root/proc/sys/fs/binfmt_misc rw - binfmt_misc x rw
43 22 0:43 / /srv/with\\040space rw - tmpfs tmpfs rw
"""


def test_mounts_under_deepest_first_and_fs_type():
    mounts = images.parse_mountinfo(MOUNTINFO)
    assert ("/srv/with space", "tmpfs") in mounts
    assert tree.mounts_under("/var/lib/machines/.corral-staging-web1", mounts) == [
        "/var/lib/machines/.corral-staging-web1/root/proc/sys/fs/binfmt_misc",
        "/var/lib/machines/.corral-staging-web1/root/proc"]
    assert tree.mounts_under("/var/lib/machines/web1", mounts) == []
    assert tree.fs_type("/var/lib/machines/web1", mounts) == "btrfs"
    assert tree.fs_type("/var/lib/machinesX", mounts) == "ext4"


@pytest.mark.parametrize("argv, root, cwd, uses", [
    (["debootstrap", "bookworm", "/m/.corral-staging-w/root"], "/", "/", True),
    (["dpkg", "-i", "x.deb"], "/m/.corral-staging-w/root", "/", True),
    (["sh"], "/", "/m/.corral-staging-w/root/tmp", True),
    (["sh"], "/", "/m/.corral-staging-w2", False),
    (["cat", "/m/.corral-staging-wx"], "/", "/", False),
])
def test_path_uses(argv, root, cwd, uses):
    assert images.path_uses("/m/.corral-staging-w", argv, root, cwd) is uses


# ---------------------------------------------------------------- staging and rename (real files)

def test_clone_builds_in_staging_then_renames_and_prepares(machines):
    module = FakeModule()
    result = images_io.ensure_image(module, params(machines, source="clone", clone_from="tmpl", hostname="web1"))
    root = os.path.join(machines, "web1")
    assert result["created"] and result["changed"] and not result["restart_required"]
    assert sorted(os.listdir(machines)) == [".corral", "tmpl", "web1"]
    assert open(os.path.join(root, "etc/hostname")).read() == "web1\n"
    assert open(os.path.join(root, "etc/machine-id")).read() == ""
    assert not os.path.exists(os.path.join(root, "var/lib/dbus/machine-id"))
    # cp -a: symlinks (not followed) and modes kept; hostname was rewritten atomically (a new inode)
    assert open(os.path.join(root, "etc/hostname.hardlink")).read() == "template\n"
    tmpl = os.path.join(machines, "tmpl")
    assert os.readlink(os.path.join(root, "etc/abs-link")) == "/etc/hostname"
    assert os.stat(os.path.join(root, "etc/shadow")).st_mode & 0o777 == 0o640
    assert open(os.path.join(tmpl, "etc/machine-id")).read().startswith("0123")  # template untouched
    key = open(os.path.join(root, "etc/ssh/ssh_host_ed25519_key.pub")).read()
    assert key != open(os.path.join(tmpl, "etc/ssh/ssh_host_ed25519_key.pub")).read()
    assert any("cp" in c and "--reflink=auto" in c for c in module.calls)
    record = images_io.read_host_record(images.Paths(machines, "web1"))
    assert record["source"] == {"source": "clone", "clone_from": "tmpl"}
    assert images_io.read_record(root) == {"build_id": record["build_id"]}  # only the id is inside the root
    again = images_io.ensure_image(FakeModule(), params(machines, source="clone", clone_from="tmpl", hostname="web1"))
    assert again["changed"] is False and again["changes"] == []


def test_hardlinks_survive_the_copy(machines):
    images_io.ensure_image(FakeModule(), params(machines, source="clone", clone_from="tmpl", reset_machine_id=False))
    root = os.path.join(machines, "web1")
    os.link(os.path.join(machines, "tmpl/etc/securetty"), os.path.join(machines, "tmpl/etc/securetty.hl"))
    images_io.ensure_image(FakeModule(), params(machines, name="web2", source="clone", clone_from="tmpl"))
    web2 = os.path.join(machines, "web2")
    assert os.stat(os.path.join(web2, "etc/securetty")).st_ino == os.stat(os.path.join(web2, "etc/securetty.hl")).st_ino
    assert os.path.isdir(root)


def test_check_mode_changes_nothing_and_predicts(machines):
    before = sorted(os.listdir(machines))
    module = FakeModule(check_mode=True)
    result = images_io.ensure_image(module, params(machines, source="clone", clone_from="tmpl", hostname="web1",
                                                   address="10.0.0.5/24"))
    assert result["changed"] and result["created"]
    assert sorted(os.listdir(machines)) == before and module.calls == []
    text = result["diff"][0]["after"]
    assert "create" in text and "hostname" in text and "10-corral-host0.network" in text
    assert result["diff"][0]["before"].endswith("absent\n")


def test_check_mode_clone_of_a_template_not_yet_created_warns(machines):
    module = FakeModule(check_mode=True)
    result = images_io.ensure_image(module, params(machines, source="clone", clone_from="later"))
    assert result["changed"] and "not an existing directory (yet)" in module.warnings[0]
    with pytest.raises(images.ImageError, match="clone_from: .* is not an existing directory"):
        images_io.ensure_image(FakeModule(), params(machines, source="clone", clone_from="later"))
    assert sorted(set(os.listdir(machines)) - {".corral"}) == ["tmpl"]


def test_failed_build_leaves_no_root_and_no_staging(machines):
    module = FakeModule(answers={"cp": (1, "", "cp: disk full")})
    with pytest.raises(CommandError, match="disk full"):
        images_io.ensure_image(module, params(machines, source="clone", clone_from="tmpl"))
    assert sorted(set(os.listdir(machines)) - {".corral"}) == ["tmpl"]


def test_interrupted_build_leftovers_are_removed_then_rebuilt(machines):
    """Regression for kill -9 mid-build: a staging dir (and an old-root leftover) are cleaned, never used."""
    paths = images.Paths(machines, "web1")
    tree.make_marked_dir(paths, paths.staging)
    tree.make_marked_dir(paths, paths.old)
    staging = os.path.join(paths.staging, "root", "etc")
    os.makedirs(staging)
    check = images_io.ensure_image(FakeModule(check_mode=True), params(machines, source="clone", clone_from="tmpl"))
    assert sum("leftovers" in c for c in check["changes"]) == 2 and os.path.isdir(staging)
    result = images_io.ensure_image(FakeModule(), params(machines, source="clone", clone_from="tmpl"))
    assert result["created"] and sorted(os.listdir(machines)) == [".corral", "tmpl", "web1"]
    assert sorted(os.listdir(paths.state_dir)) == ["old", "records", "staging"] and not os.listdir(
        os.path.dirname(paths.staging)) and not os.listdir(os.path.dirname(paths.old))


def test_missing_tool_fails_before_any_change(machines):
    for source, extra, tool in (("debootstrap", {"suite": "bookworm"}, "debootstrap"),
                                ("pacstrap", {}, "pacstrap"), ("mkosi", {"mkosi_directory": "/x"}, "mkosi"),
                                ("dnf", {"releasever": "40", "packages": ["x"]}, "dnf"),
                                ("zypper", {"packages": ["x"]}, "zypper")):
        module = FakeModule(missing={tool})
        with pytest.raises(images.ImageError, match=f"source={source} needs the '{tool}' command"):
            images_io.ensure_image(module, params(machines, source=source, **extra))
        assert module.calls == [] and sorted(set(os.listdir(machines)) - {".corral"}) == ["tmpl"]


def test_bootstrap_runs_the_built_command_in_staging(machines):
    module = FakeModule(answers={"debootstrap": (0, "", "")})  # scripted: never runs the real tool
    module.get_bin_path = lambda name, *a, **k: f"/usr/sbin/{name}" if name == "debootstrap" else shutil.which(name)
    result = images_io.ensure_image(module, params(machines, source="debootstrap", suite="bookworm", hostname="x"))
    argv = next(c for c in module.calls if "/usr/sbin/debootstrap" in c)
    if shutil.which("setpriv"):  # the builder dies with the module (kill -9 of the module stops it)
        assert argv[:4] == [shutil.which("setpriv"), "--pdeathsig", "KILL", "--"]
    assert argv[-2:] == ["bookworm", os.path.join(machines, ".corral", "staging", "web1", "root")]
    assert result["created"] and sorted(os.listdir(machines)) == [".corral", "tmpl", "web1"]
    assert images_io.read_host_record(images.Paths(machines, "web1"))["source"]["suite"] == "bookworm"


def test_tar_import_with_checksum(machines, tmp_path):
    archive = str(tmp_path / "root.tar.gz")
    subprocess.run(["tar", "-C", os.path.join(machines, "tmpl"), "-czf", archive, "."], check=True)
    import hashlib
    digest = hashlib.sha256(open(archive, "rb").read()).hexdigest()
    with pytest.raises(images.ImageError, match="checksum: .* expected sha256:00"):
        images_io.ensure_image(FakeModule(), params(machines, source="tar", path=archive, checksum="sha256:" + "0" * 64))
    assert sorted(set(os.listdir(machines)) - {".corral"}) == ["tmpl"]
    result = images_io.ensure_image(FakeModule(), params(machines, source="tar", path=archive,
                                                         checksum=f"sha256:{digest}", hostname="web1"))
    assert result["created"] and open(os.path.join(machines, "web1/etc/hostname")).read() == "web1\n"


def test_tar_import_from_file_url(machines, tmp_path):
    archive = str(tmp_path / "root.tar")
    subprocess.run(["tar", "-C", os.path.join(machines, "tmpl"), "-cf", archive, "."], check=True)
    result = images_io.ensure_image(FakeModule(), params(machines, source="tar", url=f"file://{archive}"))
    assert result["created"] and os.path.isfile(os.path.join(machines, "web1", "etc/shadow"))


def test_importer_choice(machines):
    p = params(machines, source="tar", path="/x.tar")
    assert backends_io.choose_importer(FakeModule(), p, images.Paths(machines, "web1")) == "tar"
    with pytest.raises(images.ImageError, match="imports only into /var/lib/machines"):
        backends_io.choose_importer(FakeModule(), dict(p, importer="machinectl"), images.Paths(machines, "web1"))
    with pytest.raises(images.ImageError, match="source=raw needs systemd-importd"):
        backends_io.choose_importer(FakeModule(), dict(p, source="raw"), images.Paths(machines, "web1"))


def test_force_rebuild_swaps_in_a_new_root(machines):
    images_io.ensure_image(FakeModule(), params(machines, source="directory", path=os.path.join(machines, "tmpl")))
    marker = os.path.join(machines, "web1", "etc", "local-change")
    open(marker, "w").close()
    warned = FakeModule()
    same = images_io.ensure_image(warned, params(machines, source="clone", clone_from="tmpl"))
    assert same["changed"] is False and "force=true rebuilds it" in warned.warnings[0]
    result = images_io.ensure_image(FakeModule(), params(machines, source="clone", clone_from="tmpl", force=True))
    assert result["rebuilt"] and not os.path.exists(marker)
    assert sorted(os.listdir(machines)) == [".corral", "tmpl", "web1"]


# ---------------------------------------------------------------- absent

def test_absent_removes_root_and_nothing_else(machines):
    images_io.ensure_image(FakeModule(), params(machines, source="clone", clone_from="tmpl"))
    check = images_io.ensure_image(FakeModule(check_mode=True), params(machines, state="absent"))
    assert check["changed"] and os.path.isdir(os.path.join(machines, "web1"))
    result = images_io.ensure_image(FakeModule(), params(machines, state="absent"))
    assert result["removed"] and sorted(set(os.listdir(machines)) - {".corral"}) == ["tmpl"]
    assert images_io.ensure_image(FakeModule(), params(machines, state="absent"))["changed"] is False


def test_absent_symlink_removes_only_the_link(machines, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    os.symlink(str(outside), os.path.join(machines, "web1"))
    result = images_io.ensure_image(FakeModule(), params(machines, state="absent"))
    assert result["removed"] and (outside / "precious").read_text() == "keep"
    assert not os.path.lexists(os.path.join(machines, "web1"))


def test_absent_never_follows_symlinks_inside_the_root(machines, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    images_io.ensure_image(FakeModule(), params(machines, source="clone", clone_from="tmpl"))
    os.symlink(str(outside), os.path.join(machines, "web1", "escape"))
    images_io.ensure_image(FakeModule(), params(machines, state="absent"))
    assert (outside / "precious").read_text() == "keep"


# ---------------------------------------------------------------- post-setup

def test_post_setup_each_step_idempotent(machines):
    root = os.path.join(machines, "tmpl")
    opts = params(machines, hostname="h1", root_password="s3cret", authorized_keys=["ssh-ed25519 AAAA k1"],
                  address="10.1.0.9/24", dns=["10.1.0.1"], securetty_fix=True)
    # systemctl --root is scripted (never the host's real systemctl)
    checker = FakeModule(check_mode=True, answers={"is-enabled": (1, "disabled\n", "")})
    checker.missing.discard("systemctl")
    changed, actions = ensure_post_setup(checker, root, opts)
    assert not any("enable" in c for c in checker.calls)
    assert changed and len(actions) >= 5
    assert open(os.path.join(root, "etc/hostname")).read() == "template\n"  # check mode wrote nothing
    module = FakeModule()
    module.missing.discard("systemctl")
    module.answers = {"is-enabled": (1, "disabled\n", ""), "enable": (0, "", "")}
    changed, actions = ensure_post_setup(module, root, opts)
    assert changed
    steps = {a.split(":", maxsplit=1)[0] for a in actions}
    assert steps >= {"hostname", "root password", "authorized_keys", "host0 address", "securetty (machinectl login)"}
    assert any("enable systemd-networkd.service" in a for a in actions)
    shadow = open(os.path.join(root, "etc/shadow")).read()
    assert shadow.startswith("root:$6$") and "daemon:*:" in shadow
    assert os.stat(os.path.join(root, "etc/shadow")).st_mode & 0o777 == 0o640
    assert os.stat(os.path.join(root, "root/.ssh/authorized_keys")).st_mode & 0o777 == 0o600
    assert "pts/0\n" in open(os.path.join(root, "etc/securetty")).read()
    # enabled as systemctl enable would, by links made through the root-confined API (no command)
    assert os.readlink(os.path.join(root, "etc/systemd/system/multi-user.target.wants/systemd-networkd.service")) \
        == "/usr/lib/systemd/system/systemd-networkd.service"
    assert not any("enable" in c for c in module.calls)
    module.calls = []
    assert ensure_post_setup(module, root, opts) == (False, [])
    assert module.calls == []


def test_check_mode_and_a_real_run_share_one_plan(machines):
    """Issue 16: check mode skipped steps' diffs (authorized_keys in a missing root/.ssh); one plan for both now."""
    root = os.path.join(machines, "tmpl")
    opts = {"hostname": "h1", "authorized_keys": ["ssh-ed25519 AAAA k1"], "address": "10.1.0.9/24",
            "securetty_fix": True, "root_password_hash": "$6$abc$def", "reset_machine_id": True,
            "regenerate_ssh_host_keys": False}
    checked_diffs, done_diffs = [], []
    checked = ensure_post_setup(FakeModule(check_mode=True), root, opts, fresh=True, diffs=checked_diffs)
    done = ensure_post_setup(FakeModule(), root, opts, fresh=True, diffs=done_diffs)
    assert checked == done and checked[0]
    assert checked_diffs == done_diffs and any("authorized_keys" in d["after_header"] for d in done_diffs)


def test_setup_plan_is_pure_and_from_one_step_table():
    """plan() decides from what read found (no root on disk); predict() and wants_post_setup() use the same table."""
    state = setup.RootState("/nowhere", {("file", "etc/hostname"): None, ("dir", "root/.ssh"): True,
                                         ("file", "root/.ssh/authorized_keys"): None})
    todo = setup.plan({"hostname": "web", "authorized_keys": []}, state)
    assert todo.changes == ["hostname: create etc/hostname", "authorized_keys: create root/.ssh/authorized_keys"]
    assert [a[:2] for a in todo.actions] == [("write", "etc/hostname"), ("write", "root/.ssh/authorized_keys")]
    assert setup.reads({"hostname": "web"}) == [("file", "etc/hostname")]
    assert setup.predict({"hostname": "web"}, fresh=False) == ["hostname: create etc/hostname"]
    assert setup.wants_post_setup({"hostname": "web"}) and not setup.wants_post_setup({"enable_networkd": False})


def test_post_setup_mode_drift_is_a_chmod_with_the_mode_in_the_diff(machines):
    """The root-confined files use the host files' plan (files.plan_file_mode): a wrong mode alone is drift."""
    root = os.path.join(machines, "tmpl")
    os.chmod(os.path.join(root, "etc/hostname"), 0o600)
    diffs = []
    assert ensure_post_setup(FakeModule(), root, {"hostname": "template"}, diffs=diffs) == (
        True, ["hostname: chmod etc/hostname"])
    assert diffs[0]["after_header"].endswith("etc/hostname (mode 0644)")
    assert os.stat(os.path.join(root, "etc/hostname")).st_mode & 0o777 == 0o644
    assert ensure_post_setup(FakeModule(), root, {"hostname": "template"}) == (False, [])


def test_post_setup_password_hash_given(machines):
    root = os.path.join(machines, "tmpl")
    opts = {"root_password_hash": "$6$abc$def"}
    assert ensure_post_setup(FakeModule(), root, opts)[0] is True
    assert setup.shadow_root_hash(open(os.path.join(root, "etc/shadow")).read()) == "$6$abc$def"
    assert ensure_post_setup(FakeModule(), root, opts)[0] is False


def test_post_setup_refuses_symlinked_paths_out_of_the_root(machines, tmp_path):
    root = os.path.join(machines, "tmpl")
    host_file = tmp_path / "host-hostname"
    host_file.write_text("host\n")
    os.unlink(os.path.join(root, "etc/hostname"))
    os.symlink(str(host_file), os.path.join(root, "etc/hostname"))
    # the link is replaced by a file inside the root; its absolute target is never written
    assert ensure_post_setup(FakeModule(), root, {"hostname": "evil"})[0] is True
    assert not os.path.islink(os.path.join(root, "etc/hostname"))
    assert open(os.path.join(root, "etc/hostname")).read() == "evil\n"
    # a directory link out of the root resolves inside it, as the container sees it
    os.rename(os.path.join(root, "root"), os.path.join(root, "root.real"))
    os.symlink(str(tmp_path), os.path.join(root, "root"))
    with pytest.raises(setup.SetupError, match="No such file"):   # dangling inside the root: a clean refusal
        ensure_post_setup(FakeModule(), root, {"authorized_keys": ["ssh-ed25519 AAAAC3 k"]})
    os.makedirs(os.path.join(root, str(tmp_path).lstrip("/")))
    ensure_post_setup(FakeModule(), root, {"authorized_keys": ["ssh-ed25519 AAAAC3 k"]})
    assert not (tmp_path / ".ssh").exists()
    assert os.path.isfile(os.path.join(root, str(tmp_path).lstrip("/"), ".ssh/authorized_keys"))
    assert host_file.read_text() == "host\n"


def test_machine_id_and_ssh_keys_only_on_fresh_roots(machines):
    root = os.path.join(machines, "tmpl")
    opts = {"reset_machine_id": True, "regenerate_ssh_host_keys": True}
    assert ensure_post_setup(FakeModule(), root, opts) == (False, [])
    changed, actions = ensure_post_setup(FakeModule(), root, opts, fresh=True)
    assert changed and any("machine-id" in a for a in actions) and any("ssh host keys" in a for a in actions)


def test_ssh_keygen_missing_is_a_clear_error(machines):
    with pytest.raises(setup.SetupError, match="ssh-keygen is not installed"):
        ensure_post_setup(FakeModule(missing={"ssh-keygen"}), os.path.join(machines, "tmpl"),
                                   {"regenerate_ssh_host_keys": True}, fresh=True)


@pytest.mark.parametrize("address, gateway, dns, lines", [
    ("10.0.0.5/24", None, None, ["Address=10.0.0.5/24", "Gateway=10.0.0.1"]),
    ("10.0.0.5/24", "10.0.0.254", ["1.1.1.1", "9.9.9.9"], ["Gateway=10.0.0.254", "DNS=1.1.1.1", "DNS=9.9.9.9"]),
    ("fd00::5/64", None, None, ["Address=fd00::5/64", "Gateway=fd00::1"]),
])
def test_host0_network(address, gateway, dns, lines):
    text = setup.host0_network(address, gateway, dns)
    assert text.startswith("# Managed by corral.nspawn") and "Name=host0" in text
    for line in lines:
        assert line + "\n" in text


def test_securetty_missing_and_shadow_helpers():
    assert setup.securetty_missing("console\npts/0\n") == [f"pts/{n}" for n in range(1, 10)]
    assert setup.hash_salt("$6$salt$hash") == ("6", "salt") and setup.hash_salt("$y$j9T$a$b") is None
    with pytest.raises(setup.SetupError, match="no root entry"):
        setup.shadow_with_root_hash("daemon:*:1::::::\n", "$6$x$y")


def test_password_matches_roundtrip():
    module = FakeModule()
    crypted = setup_io.hash_password(module, "pw", "6", "abcdefgh")
    assert crypted.startswith("$6$abcdefgh$")
    assert setup_io.password_matches(module, "pw", crypted) and not setup_io.password_matches(module, "other", crypted)
    assert not setup_io.password_matches(module, "pw", "*")


def test_method_is_reported(machines, tmp_path):
    result = images_io.ensure_image(FakeModule(check_mode=True), params(machines, source="clone", clone_from="tmpl"))
    assert result["method"] == "cp --reflink=auto"
    archive = str(tmp_path / "r.tar")
    subprocess.run(["tar", "-C", os.path.join(machines, "tmpl"), "-cf", archive, "."], check=True)
    assert images_io.ensure_image(FakeModule(), params(machines, source="tar", path=archive))["method"] == "tar extract"
    assert images_io.ensure_image(FakeModule(), params(machines, source="tar", path=archive))["method"] == ""


def test_failed_snapshot_falls_back_to_copy(machines, monkeypatch):
    """Regression: a template on another btrfs file system cannot be snapshotted; copy it instead."""
    monkeypatch.setattr(backends_io, "copy_method", lambda src, mdir: "snapshot")
    module = FakeModule(answers={"snapshot": (1, "", "ERROR: Invalid cross-device link")})
    result = images_io.ensure_image(module, params(machines, source="clone", clone_from="tmpl"))
    assert result["created"] and os.path.isfile(os.path.join(machines, "web1", "etc/shadow"))
    assert [c for c in module.calls if "snapshot" in c] and [c for c in module.calls if "--reflink=auto" in c]


def test_discard_stops_processes_left_working_in_staging(tmp_path):
    """Regression for kill -9 of the module: orphaned builder processes in staging are stopped first."""
    paths = images.Paths(str(tmp_path), "web1")
    tree.make_marked_dir(paths, paths.staging)
    staging = tmp_path / ".corral" / "staging" / "web1"
    (staging / "root").mkdir(parents=True)
    orphan = subprocess.Popen(["sleep", "300"], cwd=str(staging / "root"))
    try:
        assert orphan.pid in tree.processes_using(str(staging))
        tree.discard(FakeModule(), str(staging))
        assert orphan.wait(timeout=10) == -9 and not staging.exists()
    finally:
        if orphan.poll() is None:
            orphan.kill()


def test_clone_from_a_running_machine_is_refused_before_any_change(machines):
    """cp -a reads the source by path name: a running source could swap in links to host files mid-copy."""
    module = FakeModule(answers={"is-active": (0, "active\n", "")})
    module.missing.discard("systemctl")
    with pytest.raises(images.ImageError, match="clone_from: tmpl is running"):
        images_io.ensure_image(module, params(machines, source="clone", clone_from="tmpl"))
    assert sorted(os.listdir(machines)) == ["tmpl"]


def test_enable_follows_install_alias_and_also_inside_the_root(machines):
    root = os.path.join(machines, "tmpl")
    unit_dir = os.path.join(root, "usr/lib/systemd/system")
    with open(os.path.join(unit_dir, "systemd-networkd.service"), "w", encoding="utf-8") as handle:
        handle.write("[Install]\nWantedBy=multi-user.target\nAlso=systemd-networkd.socket\n"
                     "Alias=dbus-org.freedesktop.network1.service\n")
    with open(os.path.join(unit_dir, "systemd-networkd.socket"), "w", encoding="utf-8") as handle:
        handle.write("[Install]\nWantedBy=sockets.target\n")
    opts = {"enable_networkd": True}
    assert ensure_post_setup(FakeModule(check_mode=True), root, opts)[0] is True
    assert not os.path.exists(os.path.join(root, "etc/systemd"))
    assert ensure_post_setup(FakeModule(), root, opts)[0] is True
    links = {rel: os.readlink(os.path.join(root, "etc/systemd/system", rel)) for rel in (
        "multi-user.target.wants/systemd-networkd.service", "sockets.target.wants/systemd-networkd.socket",
        "dbus-org.freedesktop.network1.service")}
    assert links == {"multi-user.target.wants/systemd-networkd.service": "/usr/lib/systemd/system/systemd-networkd.service",
                     "sockets.target.wants/systemd-networkd.socket": "/usr/lib/systemd/system/systemd-networkd.socket",
                     "dbus-org.freedesktop.network1.service": "/usr/lib/systemd/system/systemd-networkd.service"}
    assert ensure_post_setup(FakeModule(), root, opts) == (False, [])
    os.unlink(os.path.join(root, "etc/systemd/system/sockets.target.wants/systemd-networkd.socket"))
    assert ensure_post_setup(FakeModule(), root, opts)[0] is True   # a missing Also= link is repaired
    os.symlink("/dev/null", os.path.join(root, "etc/systemd/system/systemd-resolved.service"))
    with pytest.raises(setup.SetupError, match="masked"):
        ensure_post_setup(FakeModule(), root, {"enable_resolved": True})


def test_an_ubuntu_suite_without_a_mirror_is_refused_with_the_keyring_hint():
    """Issue 19, 8: the guide's jammy one-liner failed on a Debian host (default mirror, no keyring)."""
    errors = images.validate(images.normalize({"name": "u1", "machines_dir": "/var/lib/machines",
                                               "source": "debootstrap", "suite": "jammy"}))
    assert any(e.startswith("mirror: required for the Ubuntu suite 'jammy'") and "ubuntu-keyring" in e for e in errors)
    assert images.validate(images.normalize({"name": "u1", "machines_dir": "/var/lib/machines", "source": "debootstrap",
                                             "suite": "jammy", "mirror": "http://mirror.invalid/ubuntu"})) == []
