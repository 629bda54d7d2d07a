# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for images_setup_io: post-setup of a root (read -> plan -> apply through the root-confined API),
idempotent per step, one plan for check mode and a real run, passwords."""

import os
import warnings

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import images_setup as setup, images_setup_io as setup_io
from ansible_collections.corral.nspawn.tests.unit.post_setup import ensure_post_setup
from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.images_fakes import FakeModule, params


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


def test_password_matches_roundtrip():
    module = FakeModule()
    crypted = setup_io.hash_password(module, "pw", "6", "abcdefgh")
    assert crypted.startswith("$6$abcdefgh$")
    assert setup_io.password_matches(module, "pw", crypted) and not setup_io.password_matches(module, "other", crypted)
    assert not setup_io.password_matches(module, "pw", "*")


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


def test_password_hashing_leaves_the_process_wide_warning_filters_alone(monkeypatch):
    """Regression: hashing entered warnings.catch_warnings() on every call (to import crypt), which swaps the
    process-wide filter list; two roots prepared at once in the fleet's threads could leave each other's
    filters behind. crypt is imported once, at import."""
    def catch_warnings(*_args, **_kwargs):
        raise AssertionError("warnings.catch_warnings() entered while hashing a password")
    monkeypatch.setattr(warnings, "catch_warnings", catch_warnings)
    module = FakeModule(missing={"openssl"})
    crypted = setup_io.hash_password(module, "pw", "6", "abcdefgh")
    assert setup_io.password_matches(module, "pw", crypted) and not setup_io.password_matches(module, "x", crypted)
