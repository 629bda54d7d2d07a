# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for resource limits: units, validation, drop-in, live plan, verification."""

import pytest
from hypothesis import given, strategies as st

from ansible_collections.corral.nspawn.plugins.module_utils import resources, unitfile


# ---------------------------------------------------------------- units and normalisation

@pytest.mark.parametrize("option, value, canonical", [
    ("memory_max", "2G", "2G"),
    ("memory_max", "2048M", "2G"),
    ("memory_max", 268435456, "256M"),
    ("memory_max", "1536K", "1536K"),
    ("memory_max", "1.5G", "1536M"),
    ("memory_max", "1000", "1000"),
    ("memory_max", "infinity", "infinity"),
    ("memory_max", "50%", "50%"),
    ("memory_high", "12.50%", "12.5%"),
    ("memory_swap_max", "0", "0"),
    ("cpu_quota", "50%", "50%"),
    ("cpu_quota", "150%", "150%"),
    ("cpu_quota", "12.25%", "12.25%"),
    ("cpu_weight", 100, "100"),
    ("cpu_weight", "idle", "idle"),
    ("io_weight", "10000", "10000"),
    ("allowed_cpus", "0-1,3", "0-1,3"),
    ("allowed_cpus", [3, 0, 1], "0-1,3"),
    ("allowed_cpus", "2 0 1", "0-2"),
    ("allowed_cpus", 1, "1"),
    ("tasks_max", 512, "512"),
    ("tasks_max", "10%", "10%"),
    ("tasks_max", "infinity", "infinity"),
    ("io_read_bandwidth_max", ["/dev/sda 10M"], ["/dev/sda 10M"]),
    ("io_write_bandwidth_max", ["/dev/vda 20000000"], ["/dev/vda 20M"]),
    ("io_write_bandwidth_max", "/dev/vda infinity", ["/dev/vda infinity"]),
    ("device_allow", ["/dev/fuse"], ["/dev/fuse rwm"]),
    ("device_allow", ["char-pts wr", "block-loop m"], ["char-pts rw", "block-loop m"]),
])
def test_normalize_table(option, value, canonical):
    key = resources.TABLE[option].key
    assert resources.normalize({option: value}) == {key: canonical}


def test_2g_and_2048m_are_the_same_limit():
    assert resources.normalize({"memory_max": "2G"}) == resources.normalize({"memory_max": "2048M"})
    text = resources.render_dropin(resources.normalize({"memory_max": "2048M"}))
    assert unitfile.get(unitfile.parse(text), "Service", "MemoryMax") == ["2G"]


@pytest.mark.parametrize("options, fragment", [
    ({"memory_max": "2g"}, "memory_max: invalid value '2g'; expected bytes with an optional K, M, G, T suffix"),
    ({"memory_max": "2GiB"}, "memory_max: invalid value '2GiB'"),
    ({"memory_max": "-1"}, "memory_max: invalid value '-1'"),
    ({"memory_max": "150%"}, "memory_max: invalid value '150%'"),
    ({"memory_max": "1.5"}, "memory_max: invalid value '1.5'"),
    ({"memory_high": True}, "memory_high: invalid value True"),
    ({"cpu_quota": 50}, "cpu_quota: invalid value 50; expected a percentage of one CPU"),
    ({"cpu_quota": "50"}, "cpu_quota: invalid value '50'"),
    ({"cpu_quota": "12.345%"}, "cpu_quota: invalid value '12.345%'"),
    ({"cpu_weight": 0}, "cpu_weight: invalid value 0; expected an integer 1..10000"),
    ({"cpu_weight": 10001}, "cpu_weight: invalid value 10001"),
    ({"io_weight": "idle"}, "io_weight: invalid value 'idle'"),
    ({"allowed_cpus": "3-1"}, "allowed_cpus: invalid value '3-1'; expected CPU numbers and ranges"),
    ({"allowed_cpus": "a"}, "allowed_cpus: invalid value 'a'"),
    ({"allowed_cpus": ""}, "allowed_cpus: invalid value ''"),
    ({"tasks_max": 0}, "tasks_max: invalid value 0; expected a positive integer"),
    ({"io_read_bandwidth_max": ["sda 10M"]}, "io_read_bandwidth_max: invalid 'sda 10M'; expected 'PATH RATE'"),
    ({"io_read_bandwidth_max": ["/dev/sda"]}, "io_read_bandwidth_max: invalid '/dev/sda'"),
    ({"io_write_bandwidth_max": ["/dev/sda 10x"]}, "io_write_bandwidth_max: invalid '/dev/sda 10x'"),
    ({"device_allow": ["/dev/fuse rwx"]}, "device_allow: invalid '/dev/fuse rwx'; expected 'PATH [MODES]'"),
    ({"device_allow": ["/dev/fuse rr"]}, "device_allow: invalid '/dev/fuse rr'"),
    ({"device_allow": ["fuse rw"]}, "device_allow: invalid 'fuse rw'"),
    ({"device_allow": ["/dev/fuse rw m"]}, "device_allow: invalid '/dev/fuse rw m'"),
    ({"memroy_max": "1G"}, "memroy_max: unknown option; known: allowed_cpus"),
    ({"extra": {"memoryMax": "1"}}, "extra: key 'memoryMax' is not a systemd key name"),
    ({"extra": {"MemoryMax": "1G"}}, "extra: MemoryMax has its own option, use memory_max"),
    ({"extra": {"Nice": {"a": 1}}}, "extra: Nice must be a string, number or list"),
    ({"extra": {"Nice": "1\nExecStart=/bin/sh"}}, "extra: Nice: invalid '1\\nExecStart=/bin/sh' contains a line break"),
    ({"extra": {"Environment": ["A=1", " "]}}, "extra: Environment list items must not be empty"),
])
def test_bad_input_names_option_value_and_allowed_form(options, fragment):
    with pytest.raises(resources.ResourceError) as info:
        resources.normalize(options)
    assert fragment in str(info.value)


def test_all_errors_are_reported_at_once_with_the_fleet_label():
    with pytest.raises(resources.ResourceError) as info:
        resources.normalize({"memory_max": "x", "cpu_quota": "y"}, label="machines[web].resources.")
    message = str(info.value)
    assert "machines[web].resources.memory_max: invalid value 'x'" in message
    assert "machines[web].resources.cpu_quota: invalid value 'y'" in message


def test_none_values_are_unset_and_empty_options_render_no_file():
    assert resources.normalize({"memory_max": None, "device_allow": [], "extra": None}) == {}
    assert resources.render_dropin({}) is None


@pytest.mark.parametrize("size, base, text", [
    (0, 1024, "0"), (1024, 1024, "1K"), (1536, 1024, "1536"), (3 * 1024 ** 4, 1024, "3T"),
    (10 ** 6, 1000, "1M"), (1024, 1000, "1024"),
])
def test_format_size_uses_the_largest_exact_suffix(size, base, text):
    assert resources.format_size(size, base) == text


@given(st.integers(min_value=0, max_value=2 ** 62))
def test_size_round_trip(size):
    assert resources.parse_size(resources.format_size(size)) == size


@given(st.integers(min_value=1, max_value=1000000))
def test_percent_round_trip(permyriad):
    assert resources.parse_percent(resources.format_percent(permyriad)) == permyriad


@pytest.mark.parametrize("text, usec", [
    ("500ms", 500000), ("1s", 1000000), ("1.500000s", 1500000), ("1min 30s", 90000000),
    ("250us", 250), ("infinity", None), ("", None),
])
def test_parse_timespan_from_systemctl_show(text, usec):
    assert resources.parse_timespan_usec(text) == usec


# ---------------------------------------------------------------- drop-in

def test_dropin_path_is_under_the_unit_d_directory():
    assert resources.dropin_path("web1") == \
        "/etc/systemd/system/systemd-nspawn@web1.service.d/50-corral-resources.conf"


def test_render_dropin_resets_lists_except_device_allow():
    desired = resources.normalize({"memory_max": "256M", "device_allow": ["/dev/fuse"],
                                   "io_read_bandwidth_max": ["/dev/sda 1M"], "extra": {"Nice": 5}})
    text = resources.render_dropin(desired)
    assert text.startswith(unitfile.HEADER)
    body = text[len(unitfile.HEADER):]
    assert body == ("\n[Service]\nMemoryMax=256M\nDeviceAllow=/dev/fuse rwm\n"
                    "IOReadBandwidthMax=\nIOReadBandwidthMax=/dev/sda 1M\nNice=5\n")


_VALUES = st.fixed_dictionaries({}, optional={
    "memory_max": st.sampled_from(["1G", "512M", "infinity", "20%"]),
    "cpu_quota": st.sampled_from(["50%", "150%", "12.5%"]),
    "tasks_max": st.integers(min_value=1, max_value=100000),
    "allowed_cpus": st.lists(st.integers(min_value=0, max_value=63), min_size=1, max_size=5),
    "device_allow": st.lists(st.sampled_from(["/dev/fuse", "char-pts rw", "block-loop r"]), max_size=3),
    "io_write_bandwidth_max": st.lists(st.sampled_from(["/dev/sda 1M", "/dev/vdb 5G"]), max_size=2),
    "extra": st.dictionaries(st.sampled_from(["Nice", "OOMScoreAdjust", "Environment"]),
                             st.one_of(st.text("abc=1 ", min_size=1, max_size=5),
                                       st.lists(st.text("xyz= ", min_size=1, max_size=4).filter(str.strip), max_size=3)),
                             max_size=2),
})


@given(_VALUES)
def test_parse_dropin_inverts_render_dropin(options):
    desired = resources.normalize(options)
    text = resources.render_dropin(desired)
    assert resources.parse_dropin(text) == desired
    if text is not None:
        assert unitfile.render(unitfile.parse(text)) == text


def test_to_options_maps_keys_back_and_unknown_keys_to_extra():
    assert resources.to_options({"MemoryMax": "1G", "Nice": "5"}) == {"memory_max": "1G", "extra": {"Nice": "5"}}


# ---------------------------------------------------------------- live plan

SHOW_UNLIMITED = {"MemoryMax": "infinity", "MemoryHigh": "infinity", "MemorySwapMax": "infinity",
                  "CPUQuotaPerSecUSec": "infinity", "CPUWeight": "[not set]", "AllowedCPUs": "",
                  "TasksMax": "16384", "IOWeight": "[not set]"}


def test_plan_live_sets_what_systemd_does_not_report_yet():
    desired = resources.normalize({"memory_max": "256M", "cpu_quota": "50%", "cpu_weight": 200})
    plan = resources.plan_live(desired, {}, SHOW_UNLIMITED)
    assert plan.assignments == ["MemoryMax=256M", "CPUQuota=50%", "CPUWeight=200"]
    assert plan.expected == {"MemoryMax": "256M", "CPUQuotaPerSecUSec": "50%", "CPUWeight": "200"}
    assert plan.pending == [] and plan.changed


def test_plan_live_is_empty_when_systemctl_show_already_matches():
    desired = resources.normalize({"memory_max": "2048M", "cpu_quota": "50%", "allowed_cpus": "1,0"})
    shown = dict(SHOW_UNLIMITED, MemoryMax=str(2 * 1024 ** 3), CPUQuotaPerSecUSec="500ms", AllowedCPUs="0-1")
    plan = resources.plan_live(desired, desired, shown)
    assert plan.assignments == [] and not plan.changed


def test_plan_live_repairs_drift_even_when_the_dropin_is_unchanged():
    desired = resources.normalize({"memory_max": "256M"})
    plan = resources.plan_live(desired, desired, dict(SHOW_UNLIMITED, MemoryMax="536870912"))
    assert plan.assignments == ["MemoryMax=256M"]
    assert plan.changes == ["MemoryMax: 512M -> 256M"]


def test_percentages_systemd_resolves_are_compared_with_the_previous_dropin():
    desired = resources.normalize({"memory_max": "20%", "tasks_max": "10%"})
    shown = dict(SHOW_UNLIMITED, MemoryMax="1717986918", TasksMax="3276")
    assert resources.plan_live(desired, desired, shown).assignments == []
    plan = resources.plan_live(desired, {"MemoryMax": "30%", "TasksMax": "10%"}, shown)
    assert plan.assignments == ["MemoryMax=20%"]
    assert plan.expected == {}  # cannot be confirmed through systemctl show


def test_removed_live_limit_is_reset_and_restart_only_changes_are_pending():
    before = resources.normalize({"memory_max": "256M", "tasks_max": 300, "device_allow": ["/dev/fuse"],
                                  "extra": {"Nice": 5}})
    plan = resources.plan_live({}, before, dict(SHOW_UNLIMITED, MemoryMax="268435456", TasksMax="300"))
    assert plan.assignments == ["MemoryMax=", "TasksMax="]
    assert plan.resets == ["MemoryMax", "TasksMax"]
    assert plan.pending == ["DeviceAllow", "Nice"]


@pytest.mark.parametrize("key, shown, assignment", [
    ("TasksMax", {"TasksMax": "16384"}, "TasksMax=16384"),
    ("MemoryMax", {"MemoryMax": "infinity"}, "MemoryMax=infinity"),
    ("CPUQuota", {"CPUQuotaPerSecUSec": "infinity"}, "CPUQuota="),
    ("CPUWeight", {"CPUWeight": "[not set]"}, "CPUWeight="),
    ("AllowedCPUs", {"AllowedCPUs": ""}, "AllowedCPUs="),
])
def test_reset_assignment_restores_the_units_own_value(key, shown, assignment):
    assert resources.reset_assignment(key, shown) == assignment


def test_verify_reports_each_mismatch():
    expected = {"MemoryMax": "256M", "CPUQuotaPerSecUSec": "50%", "TasksMax": "16384"}
    shown = {"MemoryMax": "268435456", "CPUQuotaPerSecUSec": "1s", "TasksMax": "16384"}
    assert resources.verify(expected, shown) == ["CPUQuotaPerSecUSec: expected 50%, systemd reports '1s'"]


def test_show_properties_cover_every_live_key():
    props = resources.show_properties()
    assert "CPUQuotaPerSecUSec" in props and "CPUQuota" not in props
    assert len(props) == sum(1 for spec in resources.TABLE.values() if spec.live)


@pytest.mark.parametrize("option, value, fragment", [
    ("memory_max", 0, "memory_max: invalid value 0"),
    ("memory_max", "0", "0 would kill the container at once"),
    ("memory_high", "0%", "memory_high: invalid value '0%'"),
    ("memory_high", "150%", "more than 0% and at most 100%"),
    ("cpu_quota", "0%", "cpu_quota: invalid value '0%'; expected a percentage of one CPU above 0%"),
    ("tasks_max", "200%", "tasks_max: invalid value '200%'"),
    ("tasks_max", "0%", "at most 100%"),
    ("allowed_cpus", "0-8192", "CPU numbers and ranges (0..8191)"),
])
def test_values_systemd_refuses_or_ignores_are_refused_with_the_range(option, value, fragment):
    """Regression (issue: values systemd refuses): these were written, then rejected by set-property or ignored."""
    with pytest.raises(resources.ResourceError) as caught:
        resources.normalize({option: value})
    assert fragment in str(caught.value)


def test_values_at_the_edges_of_the_ranges_are_accepted():
    assert resources.normalize({"memory_max": "1", "memory_swap_max": 0, "cpu_quota": "0.01%", "tasks_max": "100%",
                                "allowed_cpus": "8191"}) == {
        "MemoryMax": "1", "MemorySwapMax": "0", "CPUQuota": "0.01%", "TasksMax": "100%", "AllowedCPUs": "8191"}
