# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""corral.nspawn.settings on a real test host.

check -> apply -> check -> apply (changed True, True, False, False) with check mode writing
nothing; an edit and removal in the same rhythm; a table of bad inputs that fail naming the
option and leave no file; warnings for untrusted files; and proof that systemd-nspawn honours
the written file (bind mount, environment, hostname visible inside a booted container).
"""

import functools
import json
import shlex

import pytest

from harness import in_machine

HOST = "set-a"
PATH = "/etc/systemd/nspawn/s1.nspawn"


@pytest.fixture(scope="module")
def host(make_host):
    host = make_host(HOST)
    host.ssh("mkdir -p /srv/s1-share")  # a bind source must exist on the host (the module refuses a missing one)
    yield host
    host.ssh("rm -rf /srv/s1-share; rm -f /etc/systemd/nspawn/s1.nspawn /etc/systemd/nspawn/bad*.nspawn /tmp/corral-s3.nspawn /tmp/corral-s3/s3.nspawn "
             "/var/lib/machines/s4.nspawn /etc/systemd/nspawn/s4.nspawn", check=False)


def stat(host, path):
    """(mtime_ns, mode, sha256) of a file, or None when it does not exist."""
    return host.stat(path)


def rhythm(host, args):
    """check -> apply -> check -> apply; every run succeeds, check mode and the idempotent run change nothing
    (the host's fingerprint, including the file at a custom path)."""
    written = args.get("path") or f"{args.get('settings_dir', '/etc/systemd/nspawn')}/{args['name']}.nspawn"
    return host.rhythm("settings", args, fingerprint=lambda: host.fingerprint(extra=[written]))


SETTINGS = {"name": "s1", "hostname": "s1box", "environment": {"GREETING": "hello world", "MODE": "test"},
            "bind": ["/srv/s1-share:/mnt/share"], "port": ["tcp:8080:80"], "capability": ["CAP_NET_ADMIN"]}


def test_create_rhythm_content_and_diff(host):
    host.ssh(f"rm -f {PATH}")
    first, second, third, fourth = rhythm(host, SETTINGS)
    text = host.ssh(f"cat {PATH}").stdout
    assert text.startswith("# Managed by corral.nspawn")
    assert "[Exec]\nEnvironment=\"GREETING=hello world\"\nEnvironment=MODE=test\nCapability=CAP_NET_ADMIN\n" \
           "Hostname=s1box\n" in text
    assert "[Files]\nBind=/srv/s1-share:/mnt/share\n" in text and "[Network]\nPort=tcp:8080:80\n" in text
    assert first["diff"]["before"] == "" and first["diff"]["after"] == text
    assert second["content"] == text and second["path"] == PATH
    assert second["settings"]["Files"] == {"Bind": ["/srv/s1-share:/mnt/share"]}
    assert [r["restart_required"] for r in (first, second, third, fourth)] == [True, True, False, False]
    assert "diff" not in third or not third["diff"]
    assert second["systemd_version"] == 252
    assert host.ssh(f"stat -c %a {PATH}").stdout.strip() == "644"


def test_edit_and_remove_rhythm(host):
    host.run("settings", SETTINGS)
    edited = dict(SETTINGS, hostname="s1new")
    first, _second, _third, _fourth = rhythm(host, edited)
    assert first["restart_required"] is True
    assert "-Hostname=s1box" not in first["diff"]["before"] and "Hostname=s1box" in first["diff"]["before"]
    assert "Hostname=s1new" in host.ssh(f"cat {PATH}").stdout
    removed = rhythm(host, {"name": "s1", "state": "absent"})
    assert removed[1]["content"] is None and removed[1]["restart_required"] is True
    assert stat(host, PATH) is None


BAD = [
    ({"bind": ["relative/dir:/mnt"]}, "bind", "SOURCE absolute"),
    ({"port": ["sctp:80"]}, "port", "[tcp|udp:]HOSTPORT[:CONTAINERPORT]"),
    ({"port": ["http"]}, "port", "ports 1-65535"),
    ({"boot": True, "process_two": True}, "boot and process_two", "may not be combined"),
    ({"hostname": "bad_name"}, "hostname", "dot-separated labels"),
    ({"oom_score_adjust": 4000}, "oom_score_adjust", "-1000..1000"),
    ({"timezone": "utc"}, "timezone", "off, copy, bind, symlink, delete, auto"),
    ({"environment": ["NOEQUALS"]}, "environment", "NAME=VALUE"),
    ({"zone": "much-too-long-zone"}, "zone", "at most 12"),
    ({"extra": {"Exec": {"Hostnme": "x"}}}, "extra.Exec.Hostnme", "did you mean Exec.Hostname"),
    ({"extra": {"Exec": {"Boot": "yes"}}}, "extra.Exec.Boot", "use the option boot"),
    ({"read_only": True, "volatile": "state"}, "read_only and volatile", "ReadOnly=yes cannot be combined"),
]


@pytest.mark.parametrize("args,option,form", BAD, ids=[row[1] for row in BAD])
def test_bad_input_fails_naming_option_and_leaves_no_file(host, args, option, form):
    name = "bad" + str(BAD.index((args, option, form)))
    result = host.module("settings", dict(args, name=name))
    assert result.get("failed") is True, result
    assert option in result["msg"], result["msg"]  # ours start with the option, argspec errors say "value of X"
    assert form in result["msg"], result["msg"]
    assert stat(host, f"/etc/systemd/nspawn/{name}.nspawn") is None


def test_bad_machine_name_fails_before_anything(host):
    result = host.module("settings", {"name": "bad/../name", "boot": True})
    assert result.get("failed") and result["msg"].startswith("name:"), result


def test_settings_dir_outside_the_trusted_dirs_warns_about_ignored_privileged_keys(host):
    args = {"name": "s3", "settings_dir": "/tmp/corral-s3", "hostname": "s3", "bind": ["/srv:/srv"]}
    first, second, _third, _fourth = rhythm(host, args)
    assert second["path"] == "/tmp/corral-s3/s3.nspawn"
    assert "Bind=/srv:/srv" in host.ssh("cat /tmp/corral-s3/s3.nspawn").stdout
    assert any("ignores the privileged keys Files.Bind" in w for w in second.get("warnings", [])), second
    assert not host.ssh("test -e /etc/systemd/nspawn/s3.nspawn", check=False).returncode == 0


def test_deprecated_path_still_writes_that_file_with_a_deprecation(host):
    result = host.run("settings", {"name": "s3", "path": "/tmp/corral-s3.nspawn", "hostname": "s3"})
    assert result["changed"] and result["path"] == "/tmp/corral-s3.nspawn"
    assert "Hostname=s3" in host.ssh("cat /tmp/corral-s3.nspawn").stdout
    assert [d.get("version") for d in result.get("deprecations", [])] == ["1.0.0"], result


def test_untrusted_file_next_to_image_warns(host):
    host.ssh("mkdir -p /var/lib/machines && printf '[Network]\\nPort=22\\n' > /var/lib/machines/s4.nspawn")
    result = host.run("settings", {"name": "s4", "boot": True, "extra": {"Exec": {"FutureKey": "on"}}})
    warnings = result.get("warnings", [])
    assert any("/var/lib/machines/s4.nspawn exists next to the image" in w for w in warnings), result
    assert any(w.startswith("extra.Exec.FutureKey: not in the catalogue") for w in warnings), result
    assert "FutureKey=on" in host.ssh("cat /etc/systemd/nspawn/s4.nspawn").stdout


# These tests' commands must succeed in the container.
inside = functools.partial(in_machine, check=True)


def test_systemd_nspawn_honours_the_file(host):
    """A booted container sees the bind mount, the environment and the hostname from the file."""
    name = "s2"
    host.ssh(f"rm -rf /var/lib/machines/{name} && cp -a --reflink=auto /srv/corral/images/debian12 "
             f"/var/lib/machines/{name} && mkdir -p /srv/s2-share && echo probe-s2-42 > /srv/s2-share/probe "
             "&& chmod 1777 /srv/s2-share")  # the template maps container root to an unprivileged UID (-U)
    # The container's own /etc/hostname wins over Hostname= (systemd-nspawn(1)); without one, Hostname= shows.
    host.ssh(f"rm -f /var/lib/machines/{name}/etc/hostname")
    try:
        result = host.run("settings", {"name": name, "hostname": "s2box", "bind": ["/srv/s2-share:/mnt/share"],
                                       "environment": {"CORRAL_PROBE": "hello s2", "PLAIN": "x"}})
        assert result["changed"], result
        host.ssh(f"machinectl start {name}")
        state = host.ssh(f"for i in $(seq 1 60); do s=$(systemctl -M {name} is-system-running 2>/dev/null); "
                         "case $s in running|degraded) echo $s; exit 0;; esac; sleep 1; done; echo $s; exit 1",
                         check=False, timeout=90)
        journal = host.ssh(f"journalctl -u systemd-nspawn@{name} -n 30 --no-pager", check=False).stdout
        assert state.returncode == 0, state.stdout + journal
        assert inside(host, name, "cat /mnt/share/probe").stdout.strip() == "probe-s2-42"
        assert inside(host, name, "hostname").stdout.strip() == "s2box"
        environ = inside(host, name, "cat /proc/1/environ").stdout.split("\0")
        assert "CORRAL_PROBE=hello s2" in environ and "PLAIN=x" in environ, environ
        # A write from inside lands on the host: it is a real bind mount, not a copy.
        inside(host, name, shlex.join(["sh", "-c", "echo from-inside > /mnt/share/back"]))
        assert host.ssh("cat /srv/s2-share/back").stdout.strip() == "from-inside"
        listing = json.loads(host.ssh("machinectl list -o json").stdout)
        assert any(m["machine"] == name for m in listing)
    finally:
        host.ssh(f"machinectl poweroff {name}; for i in $(seq 1 20); do machinectl status {name} >/dev/null 2>&1 "
                 f"|| break; sleep 1; done; machinectl terminate {name}; rm -rf /var/lib/machines/{name} "
                 f"/srv/s2-share /etc/systemd/nspawn/{name}.nspawn", check=False, timeout=60)
