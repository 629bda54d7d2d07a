# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A machine whose root refuses a path is left alone; every other machine is still planned and converged.

Regression: a running container that made one path of its own root refuse (a directory swapped for a
symlink in a loop, a directory where a file belongs) failed the WHOLE fleet run: one tenant blocked every
deploy of every other machine on the host (tests/e2e/test_security.py: 0 of 20 fleet runs got through).
The fleet runs with the REAL image logic (rootfs reads and writes in a temp tree) and the FakeHost.
"""

import os
import shutil

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import fleet, fleet_io, images_io
from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.fleet_fakes import (
    FakeHost, RealAdaptersModule, _params, _snapshot, _template_root)


def _machines(hostname="", memory="512M"):
    return [{"name": name, "address": address, "resources": {"memory_max": memory},
             "image": {"hostname": f"{name}{hostname}"} if hostname else {}}
            for name, address in (("evil", "10.9.0.2/16"), ("good", "10.9.0.3/16"))]


@pytest.fixture
def fleet_host(tmp_path):
    """Both machines cloned from a template and running (the FakeHost started them)."""
    if not shutil.which("systemctl") or not shutil.which("cp"):
        pytest.fail("systemctl and cp are needed on the controller for this test (apt-get install systemd coreutils)")
    _template_root(str(tmp_path / "src"))
    host = FakeHost(str(tmp_path / "system"))
    fleet_io.run_fleet(RealAdaptersModule(host, params(tmp_path, _machines())))
    assert host.active == {"evil": True, "good": True, "tmpl": False}
    return host


def params(tmp_path, machines):
    template = {"name": "tmpl", "source": "directory", "path": str(tmp_path / "src")}
    return _params(tmp_path, machines, templates=[template], defaults={"template": "tmpl"})


def refused_run(host, tmp_path, machines, check_mode=False):
    with pytest.raises(fleet.FleetError) as info:
        fleet_io.run_fleet(RealAdaptersModule(host, params(tmp_path, machines), check_mode=check_mode))
    return info.value


def restarted(module):
    return [argv[2:] for argv in module.commands if argv[1:2] == ["restart"]]


def evil_files(tmp_path):
    """Every file of the refused machine (root, .nspawn file, drop-in): type, mtime and content, links unfollowed."""
    paths = [tmp_path / "nspawn" / "evil.nspawn", tmp_path / "system" / "systemd-nspawn@evil.service.d"]
    paths += sorted((tmp_path / "machines" / "evil").rglob("*")) + sorted(paths[1].rglob("*"))
    out = {}
    for path in paths:
        info = os.lstat(path)
        content = os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else None
        out[str(path)] = (info.st_mode, info.st_mtime_ns, content)
    return out


def test_a_refused_root_fails_only_its_machine_in_check_mode_and_for_real(fleet_host, tmp_path):
    """Rhythm of the healthy machine (check, apply, check, apply: changed true, true, false, false) while the other
    one's etc/hostname is a directory: every run fails naming it and the path, and never touches it."""
    hostname = tmp_path / "machines" / "evil" / "etc" / "hostname"
    hostname.unlink()
    hostname.mkdir()   # what a tenant can do to its own root at any time
    evil_before = evil_files(tmp_path)
    machines = _machines(hostname="-new", memory="1G")
    changed = []
    for check in (True, False, True, False):
        before = _snapshot(tmp_path)
        error = refused_run(fleet_host, tmp_path, machines, check_mode=check)
        result = error.details
        assert f"evil: refusing to read {hostname}: it is a directory" in error.msg, error.msg
        assert f"Every other machine was {'planned' if check else 'converged'}" in error.msg, error.msg
        assert result["refused"] == ["evil"] and result["machines"]["evil"]["failed"] is True
        assert result["machines"]["evil"]["refused"].startswith(f"refusing to read {hostname}: it is a directory")
        assert result["machines"]["evil"]["changed"] is False and result["machines"]["evil"]["changes"] == []
        assert "failed" not in result["machines"]["good"] and "refused" not in result["machines"]["good"]
        assert result["pending_restart"] == [] and result["changed"] is result["machines"]["good"]["changed"]
        changed.append(result["machines"]["good"]["changed"])
        if check:
            assert _snapshot(tmp_path) == before, "check mode wrote something"
        assert evil_files(tmp_path) == evil_before, "a file of the refused machine was written"
    assert changed == [True, True, False, False]
    assert (tmp_path / "machines" / "good" / "etc" / "hostname").read_text() == "good-new\n"
    assert fleet_host.memory == {"evil": str(512 * 1024 ** 2), "good": str(1024 ** 3), "tmpl": "infinity"}


def test_a_root_swapped_between_read_and_write_is_refused_and_not_restarted(fleet_host, tmp_path, monkeypatch):
    """The container changes its root after the fleet read it: the write is refused (nothing outside the root),
    that machine is neither restarted nor given its new limits; the healthy one is prepared and restarted."""
    real_read = images_io.read_one

    def read_then_swap(module, layout, item):
        state = real_read(module, layout, item)
        if item["name"] == "evil":   # read saw a regular file; the write finds a directory
            path = tmp_path / "machines" / "evil" / "etc" / "hostname"
            path.unlink()
            path.mkdir()
        return state

    monkeypatch.setattr(images_io, "read_one", read_then_swap)
    module = RealAdaptersModule(fleet_host, params(tmp_path, _machines(hostname="-new", memory="1G")))
    with pytest.raises(fleet.FleetError) as info:
        fleet_io.run_fleet(module)
    result = info.value.details
    assert result["refused"] == ["evil"]
    assert str(tmp_path / "machines" / "evil") in result["machines"]["evil"]["refused"]
    assert result["machines"]["good"]["changed"] and restarted(module) == [["systemd-nspawn@good.service"]]
    assert (tmp_path / "machines" / "good" / "etc" / "hostname").read_text() == "good-new\n"
    assert fleet_host.memory == {"evil": str(512 * 1024 ** 2), "good": str(1024 ** 3), "tmpl": "infinity"}
    dropin = tmp_path / "system" / "systemd-nspawn@evil.service.d" / "50-corral-resources.conf"
    assert "512M" in dropin.read_text()


def test_a_template_whose_root_refuses_fails_the_run_before_any_change(fleet_host, tmp_path):
    """A template is the host's root, not a tenant's: its refusal is no machine's, and fails the run as before."""
    (tmp_path / "machines" / "tmpl" / "etc" / "hostname").unlink()
    (tmp_path / "machines" / "tmpl" / "etc" / "hostname").mkdir()
    before = _snapshot(tmp_path)
    templates = [{"name": "tmpl", "source": "directory", "path": str(tmp_path / "src"), "hostname": "t"}]
    module = RealAdaptersModule(fleet_host, dict(params(tmp_path, _machines(memory="1G")), templates=templates))
    with pytest.raises(fleet.FleetError, match=r"^image tmpl: refusing to read .*tmpl/etc/hostname: it is a directory"):
        fleet_io.run_fleet(module)
    assert _snapshot(tmp_path) == before and os.path.isdir(tmp_path / "machines" / "good")


@pytest.mark.parametrize("stale", [True, False])
def test_a_deferral_is_read_only_when_it_decides_the_pending_restart(fleet_host, tmp_path, stale):
    """restart: never defers a running root's preparation. When a restart is pending anyway (the container runs
    since before its .nspawn file was written) the deferral decides nothing, and the root is not read at all: a
    path there that refuses costs nothing. Otherwise the read decides pending_restart, and its refusal is reported."""
    hostname = tmp_path / "machines" / "evil" / "etc" / "hostname"
    hostname.unlink()
    hostname.mkdir()
    fleet_host.since = 1 if stale else None   # None: started after every file was written
    machines = _machines(hostname="-new")
    machines[0]["restart"] = "never"
    module = RealAdaptersModule(fleet_host, params(tmp_path, machines))
    if stale:
        result = fleet_io.run_fleet(module)
        assert result["refused"] == [] and result["pending_restart"] == ["evil"]
        assert not result["machines"]["evil"]["changed"] and "refused" not in result["machines"]["evil"]
    else:
        with pytest.raises(fleet.FleetError) as info:
            fleet_io.run_fleet(module)
        result = info.value.details
        assert result["refused"] == ["evil"] and result["pending_restart"] == []
    assert restarted(module) == [["systemd-nspawn@good.service"]] and hostname.is_dir()
    assert (tmp_path / "machines" / "good" / "etc" / "hostname").read_text() == "good-new\n"
