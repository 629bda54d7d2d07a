# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for the systemctl/machinectl/journalctl wrappers (argv built, output parsed)."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import systemd
from ansible_collections.corral.nspawn.plugins.module_utils.runner import CommandError
from ansible_collections.corral.nspawn.tests.unit.fakes import FakeModule as SharedFakeModule


class FakeModule(SharedFakeModule):
    """Answers commands from a table {argv prefix tuple: (rc, out, err)}; records every argv; only machinectl found."""

    def __init__(self, answers=None, bins=("machinectl",)):
        super().__init__(answers=answers, bins=bins)


SHOW = """Id=systemd-nspawn@web1.service
ActiveState=active
UnitFileState=enabled
ActiveEnterTimestamp=@1700000000

Id=machines.target
ActiveState=active
UnitFileState=enabled
"""


def test_show_reads_several_units_in_one_call_with_unix_timestamps():
    module = FakeModule({("systemctl", "show"): (0, SHOW, "")})
    units = systemd.show(module, ["systemd-nspawn@web1.service", "machines.target"], ["ActiveState", "Id"])
    assert module.calls == [["systemctl", "show", "--timestamp=us+utc", "--property=Id,ActiveState",
                             "systemd-nspawn@web1.service", "machines.target"]]
    assert units["systemd-nspawn@web1.service"]["ActiveEnterTimestamp"] == "@1700000000"
    assert units["machines.target"]["UnitFileState"] == "enabled"


def test_show_of_nothing_runs_nothing():
    module = FakeModule()
    assert systemd.show(module, [], ["ActiveState"]) == {}
    assert module.calls == []


def test_parse_show_keeps_values_with_equals_signs_and_multiple_lines():
    units = systemd.parse_show("Id=a.service\nEnvironment=A=1 B=2\nDeviceAllow=/dev/fuse rwm\n")
    assert units == {"a.service": {"Id": "a.service", "Environment": "A=1 B=2", "DeviceAllow": "/dev/fuse rwm"}}


@pytest.mark.parametrize("state, enabled", [
    ("enabled", True), ("enabled-runtime", True), ("linked", True), ("alias", True),
    ("disabled", False), ("static", False), ("indirect", False), ("", False), ("masked", False),
])
def test_is_enabled(state, enabled):
    assert systemd.is_enabled(state) is enabled


def test_enable_is_what_machinectl_enable_does_for_all_names_at_once():
    module = FakeModule()
    systemd.enable(module, ["a", "b"])
    systemd.disable(module, ["a"])
    systemd.enable(module, [])
    assert module.calls == [
        ["systemctl", "enable", "systemd-nspawn@a.service", "systemd-nspawn@b.service", "machines.target"],
        ["systemctl", "disable", "systemd-nspawn@a.service"],
    ]


@pytest.mark.parametrize("func, verb", [(systemd.start, "start"), (systemd.stop, "stop"),
                                        (systemd.restart, "restart")])
def test_runtime_verbs_batch_names(func, verb):
    module = FakeModule()
    func(module, ["a", "b"])
    assert module.calls == [["systemctl", verb, "systemd-nspawn@a.service", "systemd-nspawn@b.service"]]


def test_set_property_runtime_passes_each_assignment_as_one_argument():
    module = FakeModule()
    systemd.set_property_runtime(module, "systemd-nspawn@a.service", ["MemoryMax=256M", "CPUQuota=50%"])
    assert module.calls == [["systemctl", "set-property", "--runtime", "systemd-nspawn@a.service",
                             "MemoryMax=256M", "CPUQuota=50%"]]


def test_failed_start_raises_command_error_with_stderr():
    module = FakeModule({("systemctl", "start"): (1, "", "Job for x failed")})
    with pytest.raises(CommandError, match="Job for x failed"):
        systemd.start(module, ["x"])


@pytest.mark.parametrize("rc, out, state", [
    (0, "running\n", "running"),
    (1, "degraded\n", "degraded"),
    (1, "starting\n", "starting"),
    (1, "", ""),  # container bus not up yet: error on stderr only
])
def test_system_state_asks_the_containers_systemd(rc, out, state):
    module = FakeModule({("systemctl", "--machine", "web1", "is-system-running"): (rc, out, "Failed to connect")})
    assert systemd.system_state(module, "web1") == state


def test_failure_report_has_status_and_journal():
    module = FakeModule({("systemctl", "status"): (3, "x systemd-nspawn@a.service - Container a\n", ""),
                         ("journalctl",): (0, "nspawn[1]: Directory doesn't look like an OS root\n", "")})
    report = systemd.failure_report(module, "a", lines=7)
    assert "--- systemctl status systemd-nspawn@a.service\nx systemd-nspawn@a.service" in report
    assert "look like an OS root" in report
    assert ["journalctl", "--no-pager", "--quiet", "-o", "short-iso", "-n", "7", "-u",
            "systemd-nspawn@a.service"] in module.calls


def test_machined_error_names_the_missing_piece():
    assert "install the systemd-container package" in systemd.machined_error(FakeModule(bins=()))
    down = FakeModule({("machinectl",): (1, "", "Failed to connect to bus: No such file or directory")})
    message = systemd.machined_error(down)
    assert "systemd-machined is not available" in message and "Failed to connect to bus" in message
    assert systemd.machined_error(FakeModule()) is None


def test_image_info_parses_show_image_and_none_when_missing():
    module = FakeModule({("machinectl", "--no-pager", "show-image", "web1"):
                         (0, "Name=web1\nPath=/var/lib/machines/web1\nType=directory\n", ""),
                         ("machinectl", "--no-pager", "show-image", "nope"): (1, "", "No image 'nope' known")})
    assert systemd.image_info(module, "web1")["Path"] == "/var/lib/machines/web1"
    assert systemd.image_info(module, "nope") is None


def test_list_machines_parses_json_and_rejects_garbage():
    module = FakeModule({("machinectl", "--no-pager", "--output=json", "list"):
                         (0, '[{"machine":"web1","class":"container","addresses":"10.0.0.2\\nfe80::1"}]', "")})
    assert systemd.list_machines(module)[0]["machine"] == "web1"
    bad = FakeModule({("machinectl", "--no-pager", "--output=json", "list-images"): (0, "MACHINE CLASS", "")})
    with pytest.raises(systemd.SystemdError, match="unexpected output"):
        systemd.list_images(bad)


# ---------------------------------------------------------------- argument limits (issue 15)

def _names(count):
    return [f"machine-{i:05d}" for i in range(count)]


@pytest.mark.parametrize("count", [1000, 5000])
@pytest.mark.parametrize("func, verb", [(systemd.start, "start"), (systemd.stop, "stop"),
                                        (systemd.restart, "restart"), (systemd.disable, "disable"),
                                        (systemd.reset_failed, "reset-failed")])
def test_a_large_batch_is_split_within_the_argument_limit_in_order(func, verb, count):
    """Regression (issue 15): one argv held every name, 5000 names made a ~180 KB argv."""
    module = FakeModule()
    names = _names(count)
    func(module, names)
    assert len(module.calls) > 1
    limit = systemd.argv_byte_limit()
    for argv in module.calls:
        assert argv[:2] == ["systemctl", verb]
        assert systemd.argv_bytes(argv) <= limit
        assert len(argv) - 2 <= systemd.ARGV_NAMES_CAP
    sent = [arg for argv in module.calls for arg in argv[2:]]
    assert sent == [systemd.unit_name(n) for n in names]


def test_a_small_batch_stays_one_call():
    module = FakeModule()
    systemd.start(module, _names(50))
    assert len(module.calls) == 1


def test_enable_of_thousands_names_machines_target_once_after_every_instance():
    module = FakeModule()
    systemd.enable(module, _names(1000))
    sent = [arg for argv in module.calls for arg in argv[2:]]
    assert sent == [systemd.unit_name(n) for n in _names(1000)] + ["machines.target"]
    assert len(module.calls) > 1 and all(argv[:2] == ["systemctl", "enable"] for argv in module.calls)


def test_show_of_thousands_units_merges_every_chunks_answer():
    names = [systemd.unit_name(n) for n in _names(5000)]

    module = FakeModule({("systemctl", "show"): lambda argv: (
        0, "".join(f"Id={u}\nActiveState=active\n\n" for u in argv[4:]), "")})
    units = systemd.show(module, names, ["ActiveState"])
    assert len(module.calls) > 1
    assert all(argv[:4] == module.calls[0][:4] for argv in module.calls)
    assert list(units) == names
    assert all(u["ActiveState"] == "active" for u in units.values())


def test_every_chunk_runs_and_the_first_failure_is_raised():
    module = FakeModule({("systemctl",): [(1, "", "Job failed"), (0, "", "")]})   # the first call fails
    with pytest.raises(CommandError, match="Job failed"):
        systemd.start(module, _names(1000))
    sent = [arg for argv in module.calls for arg in argv[2:]]
    assert sent == [systemd.unit_name(n) for n in _names(1000)]


@pytest.mark.parametrize("arg_max, limit", [(2097152, 128 * 1024), (131072, 32768), (4096, 4096)])
def test_argv_byte_limit_is_a_share_of_arg_max_within_bounds(arg_max, limit):
    assert systemd.argv_byte_limit(arg_max) == limit
    assert 4096 <= systemd.argv_byte_limit() <= 128 * 1024   # this machine's SC_ARG_MAX


def test_argv_chunks_keeps_the_head_respects_both_limits_and_never_makes_empty_chunks():
    items = [f"x{i}" for i in range(25)]
    chunks = systemd.argv_chunks(["cmd", "verb"], items, max_bytes=200, max_items=7)
    assert all(c[:2] == ["cmd", "verb"] and 1 <= len(c) - 2 <= 7 for c in chunks)
    assert all(systemd.argv_bytes(c) <= 200 for c in chunks)
    assert [i for c in chunks for i in c[2:]] == items
    assert systemd.argv_chunks(["cmd"], []) == []
    with pytest.raises(systemd.SystemdError, match="does not fit"):
        systemd.argv_chunks(["cmd"], ["y" * 500], max_bytes=100)


@pytest.mark.parametrize("props, verbs, argv", [
    ({"UnitFileState": "enabled", "ActiveState": "active"}, [], None),
    ({"UnitFileState": "disabled", "ActiveState": "inactive"}, ["enable", "start"],
     ["systemctl", "enable", "--now", "systemd-networkd.service"]),
    ({"UnitFileState": "disabled", "ActiveState": "active"}, ["enable"], ["systemctl", "enable", "systemd-networkd.service"]),
    ({"UnitFileState": "enabled", "ActiveState": "failed"}, ["start"], ["systemctl", "start", "systemd-networkd.service"]),
])
def test_enable_and_start_does_only_what_the_unit_lacks_and_nothing_in_check_mode(props, verbs, argv):
    """One owner of "enable and start a unit" for host_prepare and networks (each had its own copy)."""
    module = FakeModule()
    assert systemd.enable_and_start(module, "systemd-networkd.service", props) == verbs
    assert module.calls == ([argv] if argv else [])
    checking = FakeModule()
    checking.check_mode = True
    assert systemd.enable_and_start(checking, "systemd-networkd.service", props) == verbs and checking.calls == []


@pytest.mark.parametrize("state, running", [("active", True), ("activating", True), ("reloading", True),
                                            ("deactivating", False), ("inactive", False), ("failed", False),
                                            (None, False)])
def test_is_running_is_the_one_test_of_show_properties(state, running):
    assert systemd.is_running({} if state is None else {"ActiveState": state}) is running


def test_unit_name_is_the_instance_of_the_nspawn_template():
    assert systemd.unit_name("web-1") == "systemd-nspawn@web-1.service"
