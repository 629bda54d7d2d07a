# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Command lines of the corral.nspawn.nspawn connection; the host script run by a real /bin/sh."""

import os
import shlex
import stat
import subprocess

import pytest

from ansible_collections.corral.nspawn.plugins.plugin_utils import nspawn_exec as nx


@pytest.mark.parametrize("machine,user,method,fragment", [
    ("", "root", "auto", "machine ''"),
    ("we b", "root", "auto", "machine 'we b'"),
    ("-rf", "root", "auto", "machine '-rf'"),
    ("web", "ro ot", "auto", "remote_user 'ro ot'"),
    ("web", "root", "ssh", "nspawn_method 'ssh': use one of auto, systemd-run, nsenter"),
])
def test_bad_options_are_refused_naming_option_and_value(machine, user, method, fragment):
    with pytest.raises(nx.ExecError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        nx.check_options(machine, user, method)


def test_good_options_pass():
    nx.check_options("web-1.example", "www-data", "systemd-run")


def test_host_argv_passes_command_as_separate_arguments():
    argv = nx.host_argv("web", "root", "auto", ["/bin/sh", "-c", "echo 'a b'; exit 3"])
    assert argv[:2] == ["/bin/sh", "-c"] and argv[3:] == ["corral-nspawn", "web", "auto", "root", "/bin/sh", "-c",
                                                          "echo 'a b'; exit 3"]
    assert nx.host_argv("web", "root", "auto", ["true"], become="sudo -n")[:3] == ["sudo", "-n", "/bin/sh"]


def test_ssh_argv_multiplexes_and_quotes_the_remote_command():
    argv = nx.ssh_argv("192.0.2.1", ["sh", "-c", "echo $HOME; it's"], user="root", port=2222, private_key="/k",
                       common_args="-o StrictHostKeyChecking=no", extra_args="-v", control_dir="/cp", persist=30)
    assert argv[:2] == ["ssh", "-T"]
    assert "ControlMaster=auto" in argv and "ControlPersist=30s" in argv and "ControlPath=/cp/%C" in argv
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "root"
    assert argv[argv.index("-i") + 1] == "/k" and "StrictHostKeyChecking=no" in argv and "-v" in argv
    assert argv[-3:-1] == ["--", "192.0.2.1"]
    assert shlex.split(argv[-1]) == ["sh", "-c", "echo $HOME; it's"]
    assert "ControlMaster=auto" not in nx.ssh_argv("h", ["true"], control_dir=None)


@pytest.mark.parametrize("rc,stderr,expected", [
    (125, "corral.nspawn.nspawn: stopped web\n", ("stopped", "web")),
    (125, "noise\ncorral.nspawn.nspawn: not-root deploy\n", ("not-root", "deploy")),
    (125, "a command that exits 125 by itself\n", None),
    (1, "corral.nspawn.nspawn: unknown web\n", None),
    (0, "", None),
])
def test_refusal_needs_both_marker_and_status(rc, stderr, expected):
    assert nx.refusal(rc, stderr) == expected


@pytest.mark.parametrize("kind,words", [
    ("stopped", ["'web'", "exists but is not running", "machinectl start web"]),
    ("unknown", ["no container 'web'"]),
    ("not-root", ["'deploy'", "is not root", "nspawn_host_become"]),
    ("no-nsenter", ["nsenter is missing"]),
])
def test_refusal_messages_name_machine_host_and_way_out(kind, words):
    msg = nx.refusal_message(kind, "deploy" if kind == "not-root" else "web", "web", "host 192.0.2.1")
    assert "host 192.0.2.1" in msg
    for word in words:
        assert word in msg


@pytest.mark.parametrize("rc,stderr,failed", [
    (255, "ssh: connect to host 192.0.2.1 port 22: Connection refused\n", True),
    (255, "root@192.0.2.1: Permission denied (publickey).\n", True),
    (255, "ssh: Could not resolve hostname nohost: Name or service not known\n", True),
    (255, "the command itself exited 255\n", False),
    (1, "ssh: connect to host x port 22: Connection refused\n", False),
])
def test_ssh_failure_is_told_apart_from_the_command(rc, stderr, failed):
    assert nx.ssh_failed(rc, stderr) is failed


def fake_machinectl(tmp_path, leader: str, image: bool):
    """A machinectl on PATH that answers like machined for one machine (a fake; it runs no code under test)."""
    script = tmp_path / "machinectl"
    script.write_text("#!/bin/sh\n"
                      f'case "$1" in show) [ -n "{leader}" ] && echo "{leader}" && exit 0; '
                      "echo \"Could not get path to machine: No machine known\" >&2; exit 1;; "
                      f"show-image) exit {0 if image else 1};; esac\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "systemd-run").write_text("#!/bin/sh\necho systemd-run \"$@\"\n")
    (tmp_path / "systemd-run").chmod(0o755)
    (tmp_path / "nsenter").write_text("#!/bin/sh\necho nsenter \"$@\"\n")
    (tmp_path / "nsenter").chmod(0o755)
    return dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")


@pytest.mark.skipif(os.geteuid() != 0, reason="the host script refuses non-root users; runs as root in make test")
@pytest.mark.parametrize("leader,image,method,expect_rc,expect", [
    ("", True, "auto", 125, "corral.nspawn.nspawn: stopped web"),
    ("", False, "auto", 125, "corral.nspawn.nspawn: unknown web"),
    ("0", False, "auto", 125, "corral.nspawn.nspawn: unknown web"),
    ("1", True, "systemd-run", 0,
     "systemd-run --machine=web --uid=app --pipe --wait --quiet --collect --service-type=exec -- true x"),
    ("4242424", True, "auto", 0, "nsenter --target=4242424 --all -- /usr/bin/env -i"),
])
def test_host_script_decides_from_machined_answers(tmp_path, leader, image, method, expect_rc, expect):
    env = fake_machinectl(tmp_path, leader, image)
    res = subprocess.run(nx.host_argv("web", "app", method, ["true", "x"]), capture_output=True, text=True,
                         env=env, check=False)
    assert res.returncode == expect_rc, res
    assert expect in (res.stdout + res.stderr), res
