# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 9, section 2, checked by systemd itself on a booted test host.

A sample of adversarial but valid values (seeded random text full of '#', ';', '=', brackets,
quotes, tabs, '%', Unicode, plus fixed nasty ones such as '[Exec]' or 'Capability=all') goes
through the real settings and resources modules into a .nspawn file and a service drop-in.

- .nspawn: systemd-analyze cannot verify it, so systemd-nspawn runs the container with it and
  the container reports what it got: every environment value, every argument word, the working
  directory and the bind mount targets must arrive exactly as given (a value that broke out of
  its line would arrive cut short), and systemd-nspawn reports no unknown key or section other
  than the one extra key we wrote on purpose.
- drop-in: after daemon-reload, ``systemctl show`` of the unit differs from its state without
  the drop-in only in the properties we set, the values systemd read are the given ones, and
  ``systemd-analyze verify`` reports no unknown key, unknown section or bad line.
- The vectors of the issue are refused by the modules over SSH and leave no file.
"""

import json
import random
import shlex
import string

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import nspawn_settings as ns, resources

HOST = "val1"
NAME = "valn"
ROOT = f"/var/lib/machines/{NAME}"
NSPAWN = f"/etc/systemd/nspawn/{NAME}.nspawn"
UNIT = f"systemd-nspawn@{NAME}.service"
DROPIN = f"/etc/systemd/system/{UNIT}.d/50-corral-resources.conf"
SEED = 20261129
PROBE = "import os,sys,json;print(json.dumps([os.getcwd(),sys.argv[1:],dict(os.environ),sorted(os.listdir(chr(47)+chr(109)+chr(110)+chr(116)))]))"  # noqa: E501
FIXED = ["[Exec]", "PrivateUsers=no", "x Capability=all", "#not a comment", ";nor this", "a=b=c", "[Files] Bind=/",
         "%n %i %%", "$HOME ${PATH}", "tab\there", "caf\u00e9 \u65e5\u672c \U0001f600", "nb\u00a0sp", "bom\ufeffmid",
         "'single'", '"double"', "] [", "="]
PIECES = list(string.ascii_letters + string.digits + " \t#;=[]%$:{}.,!?*&|<>()@^~`") + \
    ["\u00e9", "\u65e5", "\U0001f600", "\u00a0", "\ufeff", "[Exec]", "Boot=yes", "[Network]", "Private=no", "'", '"']


def generated(count: int, seed: int, banned: str = ""):
    """Seeded random adversarial text without ``banned`` characters and never with both quote kinds
    (a quoted word holds one kind); the tests check the sample with our validators before use."""
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        text = "".join(rng.choice(PIECES) for _index in range(rng.randint(1, 14)))
        if any(c in banned for c in text) or ("'" in text and '"' in text):
            continue
        out.append(text)
    return out


@pytest.fixture(scope="module")
def host(make_host):
    host = make_host(HOST)
    host.ssh(f"rm -rf {ROOT} && cp -a --reflink=auto /srv/corral/images/debian12 {ROOT}")
    yield host
    host.ssh(f"rm -rf {ROOT} {NSPAWN} /etc/systemd/system/{UNIT}.d /srv/val-*; systemctl daemon-reload", check=False)


def _env_and_words():
    values = FIXED + generated(40, SEED)
    env = {f"V{index}": value for index, value in enumerate(values)}
    words = [v for v in FIXED + generated(20, SEED + 1) if v.strip() == v and v]
    return env, words


def test_nspawn_reads_every_value_back_exactly(host):
    env, words = _env_and_words()
    workdir = "/opt/" + generated(1, SEED + 2, banned="/:\\ \t")[0] + " dir #;[Exec]=x"
    binds = [(f"/srv/val-{name}", f"/mnt/{name}") for name in generated(3, SEED + 3, banned="/:\\ \t")]
    params = {"name": NAME, "boot": False, "environment": env, "working_directory": workdir,
              "parameters": ["/usr/bin/python3", "-c", PROBE] + words,
              "bind": [f"{src}:{dst}" for src, dst in binds], "resolv_conf": "off", "timezone": "off",
              "link_journal": "no", "extra": {"Exec": {"NotAKeyOfNspawn": "[Files]\tBind=/etc:/host-etc"}}}
    ns.build_settings({k: v for k, v in params.items() if k != "name"})  # valid by our own rules, else it says why
    for src, _dst in binds:
        host.ssh(f"mkdir -p {shlex.quote(src)}")
    host.ssh(f"mkdir -p {shlex.quote(ROOT + workdir)}")
    result = host.run("settings", params)
    assert result["changed"], result
    run = host.ssh(f"systemd-nspawn -q --register=no -M {NAME} -D {ROOT} --settings=trusted", check=False,
                   timeout=120)
    assert run.returncode == 0, f"systemd-nspawn failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    cwd, argv, environ, mounts = json.loads(run.stdout.strip().splitlines()[-1])
    assert cwd == workdir
    assert argv == words
    got = {key: environ.get(key) for key in env}
    assert got == env, {k: (env[k], got[k]) for k in env if got[k] != env[k]}
    assert sorted(dst.rpartition("/")[2] for _s, dst in binds) == mounts
    complaints = [line for line in run.stderr.splitlines()
                  if any(w in line for w in ("Unknown", "Invalid", "Failed to parse", "Missing", "ignoring"))]
    assert len(complaints) == 1 and "NotAKeyOfNspawn" in complaints[0], run.stderr


def show_all(host) -> dict:
    """Every property of the unit; repeated ones (IOReadBandwidthMax) as a list of lines."""
    shown: dict = {}
    for line in host.ssh(f"systemctl show {UNIT}").stdout.splitlines():
        key, _sep, value = line.partition("=")
        shown.setdefault(key, []).append(value)
    return shown


def _same(left, right) -> bool:
    # dependency lists come in hash order: compare the words, not their order
    return sorted(" ".join(left or []).split()) == sorted(" ".join(right or []).split())


def test_a_service_drop_in_adds_only_the_keys_we_set(host):
    host.ssh(f"rm -rf /etc/systemd/system/{UNIT}.d && systemctl daemon-reload")
    before = show_all(host)
    idents = [d for d in generated(6, SEED + 4, banned="%\\") if d.strip() == d]
    paths = ["/tmp/" + p for p in generated(3, SEED + 5, banned=" \t\\\"'%")]
    device = "/dev/" + generated(1, SEED + 6, banned=" \t\\\"'%/")[0]
    options = {"io_read_bandwidth_max": [f"{p} 10M" for p in paths], "device_allow": [f"{device} rw"],
               "extra": {"SyslogIdentifier": idents[0],
                         "Environment": [f'"W{i}={d}"' for i, d in enumerate(idents) if '"' not in d],
                         "NotAKeyOfSystemd": "[Unit]\tExecStartPre=/usr/sbin/reboot"}}
    resources.normalize(options)  # valid by our own rules, else it says why
    result = host.run("resources", dict(options, name=NAME))
    assert result["changed"], result
    host.ssh("systemctl daemon-reload")
    after = show_all(host)
    verify = host.ssh(f"systemd-analyze verify {UNIT}", check=False)
    context = f"drop-in:\n{host.ssh(f'cat {DROPIN}').stdout}\nverify:\n{verify.stdout}{verify.stderr}"
    changed = sorted(k for k in set(before) | set(after) if not _same(before.get(k), after.get(k)))
    assert changed == ["DeviceAllow", "DropInPaths", "Environment", "IOReadBandwidthMax", "SyslogIdentifier"], \
        "\n".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in changed) + "\n" + context
    assert after["SyslogIdentifier"] == [idents[0]], context
    shown_env = after["Environment"][0]
    for index, value in enumerate(idents):
        if '"' not in value:
            assert f"W{index}={value}" in shown_env, (value, shown_env)
    assert sorted(line.rpartition(" ")[0] for line in after["IOReadBandwidthMax"]) == sorted(paths), context
    assert f"{device} rw" in after["DeviceAllow"][0], context
    complaints = [line for line in (verify.stdout + verify.stderr).splitlines()
                  if any(w in line for w in ("Unknown", "Missing '='", "Invalid section", "Bad characters"))]
    assert len(complaints) == 1 and "NotAKeyOfSystemd" in complaints[0], context


@pytest.mark.parametrize("module, args, option, path", [
    ("settings", {"bind": ["/srv/data\r[Exec]\rPrivateUsers=no\rCapability=all"]}, "bind", NSPAWN),
    ("settings", {"working_directory": "/srv\\", "drop_capability": ["CAP_SYS_ADMIN"]}, "working_directory", NSPAWN),
    ("resources", {"io_read_bandwidth_max": ["/dev/sda\rExecStartPre=/usr/sbin/reboot 10M"]}, "io_read_bandwidth_max",
     DROPIN),
    ("image", {"source": "directory", "path": "/srv/corral/images/debian12",
               "root_password_hash": "$6$corralsalt$" + "x" * 86 + ":0:0::\nevil::0:0:::::"}, "root_password_hash",
     "/var/lib/machines/valimg"),
])
def test_the_issue_vectors_are_refused_over_ssh_and_write_nothing(host, module, args, option, path):
    host.ssh(f"rm -rf {NSPAWN} /etc/systemd/system/{UNIT}.d")
    result = host.module(module, dict(args, name="valimg" if module == "image" else NAME))
    assert result.get("failed"), result
    assert result["msg"].startswith(f"{option}:") or f"{option}:" in result["msg"], result["msg"]
    assert host.existing(path) == []
    assert "corralsalt" not in json.dumps(result) and "evil" not in json.dumps(result), "a secret was echoed"
