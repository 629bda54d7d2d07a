"""Unit tests for the harness's pure helpers (mirror discovery, recap parsing)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "e2e"))

import harness  # noqa: E402  pylint: disable=wrong-import-position

DEB822 = """Types: deb
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main
"""


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch):
    monkeypatch.delenv("CORRAL_MIRROR", raising=False)


def test_mirror_from_deb822_skips_security(tmp_path):
    (tmp_path / "debian.sources").write_text(DEB822)
    assert harness.apt_mirror(str(tmp_path), str(tmp_path / "none")) == "http://mirror.invalid/debian"


def test_mirror_from_one_line_sources(tmp_path):
    (tmp_path / "sources.list").write_text("# c\ndeb [arch=amd64] http://one.invalid/debian bookworm main\n")
    assert harness.apt_mirror(str(tmp_path / "d"), str(tmp_path / "sources.list")) == "http://one.invalid/debian"


def test_mirror_env_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_MIRROR", "http://env.invalid/debian")
    assert harness.apt_mirror(str(tmp_path), str(tmp_path / "x")) == "http://env.invalid/debian"


def test_no_mirror_is_a_clear_error(tmp_path):
    with pytest.raises(harness.HarnessError, match="CORRAL_MIRROR"):
        harness.apt_mirror(str(tmp_path), str(tmp_path / "missing"))


def test_parse_recap():
    out = ("PLAY RECAP *****\nh1 : ok=3    changed=1    unreachable=0    failed=0    skipped=2"
           "    rescued=0    ignored=0\nh-2 : ok=1 changed=0 unreachable=1 failed=0 skipped=0 rescued=0 ignored=0\n")
    recap = harness.parse_recap(out)
    assert recap["h1"]["changed"] == 1 and recap["h1"]["skipped"] == 2
    assert recap["h-2"]["unreachable"] == 1


@pytest.mark.parametrize("name, ok", [("a", True), ("smk-a", True), ("x" * 11, True), ("x" * 12, False),
                                      ("Upper", False), ("-a", False), ("a_b", False)])
def test_host_names_fit_the_veth_name(name, ok):
    assert bool(harness.NAME_RE.match(name)) is ok


def test_hosts_on_a_reused_address_get_their_own_ssh_master(monkeypatch):
    """A stopped host's lingering SSH master must not serve the next host booted on its address."""
    import json  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(harness, "ssh_key", lambda: "/nonexistent/key")
    before, after = harness.TestHost("old", 10), harness.TestHost("new", 10)
    assert before.address == after.address
    dirs = [json.loads(harness._write_inventory([h]))["all"]["children"]["test_hosts"]["hosts"][h.name]  # pylint: disable=protected-access
            ["ansible_control_path_dir"] for h in (before, after)]
    assert dirs[0] != dirs[1]
    assert all(d.startswith(os.path.join(harness.STATE_DIR, "hosts")) for d in dirs)
