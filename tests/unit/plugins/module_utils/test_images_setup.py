# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for images_setup: the pure post-setup plan from one step table and its text helpers."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import images_setup as setup


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
