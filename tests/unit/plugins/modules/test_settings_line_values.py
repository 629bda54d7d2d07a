# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""corral.nspawn.settings main() with line-breaking values and with files that contain \\r (issue 9).

Before the fix a value with \\r was written; files.read_text reads with universal newlines, so the
file never compared equal again and was rewritten (changed) on every run. Now the value is refused
before anything is written, and a file that contains \\r (CRLF line ends, or a stray \\r from an
older run) is rewritten at most once.
"""

import os

import pytest
from ansible.module_utils import basic
from ansible_collections.corral.nspawn.tests.unit.module_main import run_main, stop_at_exit

from ansible_collections.corral.nspawn.plugins.modules import settings as module


@pytest.fixture(autouse=True)
def fake_host(monkeypatch, tmp_path):
    stop_at_exit(monkeypatch)
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, msg: None)
    monkeypatch.setattr(module.ns_io, "systemd_version", lambda _m: 252)
    monkeypatch.setattr(module.ns, "untrusted_path", lambda name, directory=None: str(tmp_path / "m" / f"{name}.nspawn"))


def run(args, check=False):
    return run_main(module, args, check=check, diff=True)


def rhythm(args):
    return [run(args, check=True)["changed"], run(args)["changed"], run(args, check=True)["changed"],
            run(args)["changed"]]


def test_a_value_with_cr_is_refused_and_nothing_is_written(tmp_path):
    path = str(tmp_path / "web.nspawn")
    result = run({"name": "web", "path": path, "environment": {"A": "x\r[Exec]\rPrivateUsers=no"}})
    assert result.get("failed") and result["msg"].startswith("environment: item 'A=x\\r[Exec]"), result
    assert "line break" in result["msg"] and not os.path.exists(path)


@pytest.mark.parametrize("damage", [
    lambda text: text.replace("\n", "\r\n"),                        # CRLF line ends (edited elsewhere)
    lambda text: text.replace("Hostname=web", "Hostname=web\rX=1"),  # a stray \r left by an older run
])
def test_a_file_containing_cr_is_not_rewritten_on_every_run(tmp_path, damage):
    path = str(tmp_path / "web.nspawn")
    args = {"name": "web", "path": path, "hostname": "web", "environment": {"A": "x y"}}
    run(args)
    with open(path, encoding="utf-8", newline="") as handle:
        text = handle.read()
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(damage(text))
    changes = rhythm(args)
    assert changes[2:] == [False, False], changes
    mtime = os.stat(path).st_mtime_ns
    assert [run(args, check=True)["changed"], run(args)["changed"]] == [False, False]
    assert os.stat(path).st_mtime_ns == mtime
