# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Settings logic: typed emitters, validation messages, extra keys, restart decision."""

import re
import shlex

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from ansible_collections.corral.nspawn.plugins.module_utils import nspawn_settings as ns
from ansible_collections.corral.nspawn.plugins.module_utils import schema, unitfile


def body(params):
    """Rendered text without the managed header, as 'Section.Key=value' lines."""
    text, _warnings = ns.build_settings(params)
    return [f"{section}.{key}={value}" for section, entries in unitfile.parse(text) for key, value in entries]


# ---------------------------------------------------------------- emitters (one row per kind)

@pytest.mark.parametrize("params,lines", [
    ({"boot": True}, ["Exec.Boot=yes"]),
    ({"boot": False}, ["Exec.Boot=no"]),
    ({"read_only": "yes"}, ["Files.ReadOnly=yes"]),
    ({"oom_score_adjust": -500}, ["Exec.OOMScoreAdjust=-500"]),
    ({"oom_score_adjust": "100"}, ["Exec.OOMScoreAdjust=100"]),
    ({"timezone": "bind"}, ["Exec.Timezone=bind"]),
    ({"volatile": True}, ["Files.Volatile=yes"]),
    ({"volatile": "state"}, ["Files.Volatile=state"]),
    ({"volatile": "True"}, ["Files.Volatile=yes"]),
    ({"volatile": "0"}, ["Files.Volatile=no"]),
    ({"private_users": False}, ["Exec.PrivateUsers=no"]),
    ({"private_users": "pick"}, ["Exec.PrivateUsers=pick"]),
    ({"limit_nofile": 4096}, ["Exec.LimitNOFILE=4096"]),
    ({"limit_core": "0:infinity"}, ["Exec.LimitCORE=0:infinity"]),
    ({"working_directory": "/srv"}, ["Exec.WorkingDirectory=/srv"]),
    ({"bind": ["/a", "/b:/c"]}, ["Files.Bind=/a", "Files.Bind=/b:/c"]),
    ({"port": ["tcp:80", "udp:53:53"]}, ["Network.Port=tcp:80", "Network.Port=udp:53:53"]),
    ({"capability": ["cap_net_admin", "CAP_SYS_ADMIN"]}, ["Exec.Capability=CAP_NET_ADMIN CAP_SYS_ADMIN"]),
    ({"capability": ["all"]}, ["Exec.Capability=all"]),
    ({"interface": ["eth1", "eth2:host1"]}, ["Network.Interface=eth1 eth2:host1"]),
    ({"parameters": ["/bin/sh", "-c", "echo hi there"]}, ['Exec.Parameters=/bin/sh -c "echo hi there"']),
    ({"parameters": ['say "hi"']}, ["Exec.Parameters='say \"hi\"'"]),
    ({"environment": {"A": "1", "B": "hello world"}}, ["Exec.Environment=A=1", 'Exec.Environment="B=hello world"']),
    ({"environment": ["A=1", "EMPTY="]}, ["Exec.Environment=A=1", "Exec.Environment=EMPTY="]),
    ({"environment": {"N": 3}}, ["Exec.Environment=N=3"]),
    ({"bind": []}, []),
    ({"hostname": None}, []),
])
def test_emitters(params, lines):
    assert body(params) == lines


def test_sections_and_keys_follow_catalogue_order():
    lines = body({"port": ["80"], "bind": ["/a"], "hostname": "h", "boot": True, "zone": "web"})
    assert lines == ["Exec.Boot=yes", "Exec.Hostname=h", "Files.Bind=/a", "Network.Zone=web", "Network.Port=80"]


def test_text_starts_with_managed_header_and_is_stable():
    text, warnings = ns.build_settings({"boot": True, "hostname": "web1"})
    assert text.startswith(unitfile.HEADER)
    assert text == unitfile.HEADER + "\n[Exec]\nBoot=yes\nHostname=web1\n"
    assert warnings == []
    assert ns.build_settings({"hostname": "web1", "boot": True})[0] == text  # param order does not matter


def test_empty_settings_render_only_the_header():
    assert ns.build_settings({})[0] == unitfile.HEADER


def test_header_none():
    assert ns.build_settings({"boot": True}, header=None)[0] == "[Exec]\nBoot=yes\n"


# ---------------------------------------------------------------- bad input: option, value, allowed form

BAD = [
    ({"bind": ["relative/dir:/x"]}, "bind", "relative/dir:/x", "SOURCE absolute"),
    ({"bind": ["/a:rel"]}, "bind", "/a:rel", "DEST absolute"),
    ({"bind_read_only": ["/a:/b:bogus"]}, "bind_read_only", "bogus", "rbind"),
    ({"port": ["sctp:80"]}, "port", "sctp:80", "[tcp|udp:]HOSTPORT[:CONTAINERPORT]"),
    ({"port": ["99999"]}, "port", "99999", "1-65535"),
    ({"boot": "maybe"}, "boot", "maybe", "boolean"),
    ({"oom_score_adjust": 5000}, "oom_score_adjust", "5000", "-1000..1000"),
    ({"oom_score_adjust": "x"}, "oom_score_adjust", "x", "integer"),
    ({"timezone": "utc"}, "timezone", "utc", "off, copy, bind"),
    ({"volatile": "sometimes"}, "volatile", "sometimes", "yes, no, state, overlay"),
    ({"hostname": "bad_host"}, "hostname", "bad_host", "hostname"),
    ({"working_directory": "srv"}, "working_directory", "srv", "absolute path"),
    ({"environment": ["NOEQUALS"]}, "environment", "NOEQUALS", "NAME=VALUE"),
    ({"environment": {"A": True}}, "environment", "A", "quote"),
    ({"environment": {"A": "back\\slash"}}, "environment", "back\\\\slash", "backslashes"),
    ({"capability": ["NET_ADMIN"]}, "capability", "NET_ADMIN", "CAP_NET_ADMIN"),
    ({"ambient_capability": ["all"]}, "ambient_capability", "all", "'all' is not supported"),
    ({"kill_signal": "SIGNOPE"}, "kill_signal", "SIGNOPE", "SIGRTMIN+3"),
    ({"machine_id": "abc"}, "machine_id", "abc", "32 hex"),
    ({"limit_nofile": "lots"}, "limit_nofile", "lots", "SOFT:HARD"),
    ({"private_users": "sometimes"}, "private_users", "sometimes", "pick"),
    ({"zone": "a-very-long-zone"}, "zone", "a-very-long-zone", "at most 12"),
    ({"bridge": "br/0"}, "bridge", "br/0", "interface name"),
    ({"interface": ["eth0:eth1:eth2"]}, "interface", "eth0:eth1:eth2", "HOSTIF:CONTAINERIF"),
    ({"temporary_file_system": ["tmp"]}, "temporary_file_system", "tmp", "PATH[:OPTIONS]"),
    ({"overlay": ["/only"]}, "overlay", "/only", "at least two"),
    ({"cpu_affinity": "all"}, "cpu_affinity", "all", "0-3,6"),
    ({"hostname": "a\nb"}, "hostname", "a\\nb", "line break"),
    ({"hostname": ["a"]}, "hostname", "['a']", "single value"),
    ({"bind": [{"src": "/a"}]}, "bind", "src", "list of strings"),
    ({"personality": "arm64"}, "personality", "arm64", "x86, x86-64"),
    ({"hostnam": "x"}, "hostnam", "hostnam", "did you mean hostname?"),
    ({"boot": True, "process_two": True}, "boot and process_two", "ProcessTwo=yes", "choose one"),
    ({"read_only": True, "volatile": "state"}, "read_only and volatile", "Volatile=", "read-only"),
    ({"bridge": "br0", "zone": "web"}, "bridge and zone", "Bridge=", "not both"),
    ({"private_users_ownership": "map", "private_users_chown": True},
     "private_users_ownership and private_users_chown", "deprecated", "set only"),
    ({"private_network": False, "zone": "web"}, "private_network", "zone", "implies Private=yes"),
    ({"private_network": False, "port": ["80"]}, "port", "Port=", "private networking"),
]


@pytest.mark.parametrize("params,option,value,form", BAD, ids=[row[1] + ":" + str(i) for i, row in enumerate(BAD)])
def test_bad_input_names_option_value_and_form(params, option, value, form):
    with pytest.raises(ns.SettingsError) as info:
        ns.build_settings(params)
    message = str(info.value)
    assert message.startswith(option), message
    assert value in message, message
    assert form in message, message


def test_all_errors_are_reported_at_once():
    with pytest.raises(ns.SettingsError) as info:
        ns.build_settings({"bind": ["rel"], "port": ["x"], "extra": {"Exec": {"Hostnme": "h"}}})
    message = str(info.value)
    assert "bind:" in message and "port:" in message and "extra.Exec.Hostnme" in message


def test_boot_false_with_process_two_is_fine():
    assert body({"boot": False, "process_two": True}) == ["Exec.Boot=no", "Exec.ProcessTwo=yes"]


# ---------------------------------------------------------------- extra

def test_extra_unknown_key_is_written_with_a_warning():
    text, warnings = ns.build_settings({"boot": True, "extra": {"Exec": {"RestrictAddressFamilies": "AF_INET"},
                                                                "Files": {"NewThing": ["a", "b"], "Flag": True}}})
    assert "[Exec]\nBoot=yes\nRestrictAddressFamilies=AF_INET\n" in text
    assert "[Files]\nNewThing=a\nNewThing=b\nFlag=yes\n" in text
    assert len(warnings) == 3 and all("not in the catalogue" in w for w in warnings)
    assert warnings[0].startswith("extra.Exec.RestrictAddressFamilies")


@pytest.mark.parametrize("extra,expected", [
    ({"Exec": {"Hostnme": "x"}}, "extra.Exec.Hostnme: unknown key; did you mean Exec.Hostname (option hostname)?"),
    ({"Files": {"Hostname": "x"}}, "did you mean Exec.Hostname"),
    ({"Network": {"Zones": "x"}}, "did you mean Network.Zone"),
    ({"Files": {"BindReadonly": "/a"}}, "did you mean Files.BindReadOnly"),
    ({"Exec": {"Boot": True}}, "extra.Exec.Boot: Boot= is in the catalogue; use the option boot"),
    ({"Exce": {"Boot": True}}, "extra.Exce: unknown section; allowed: Exec, Files, Network (did you mean Exec?)"),
    ({"Service": {"X": 1}}, "extra.Service: unknown section"),
    ({"Exec": "Boot=yes"}, "extra.Exec: must be a mapping"),
    ({"Exec": {"bad key": 1}}, "is not a systemd key name"),
    ({"Exec": {"NewKey": {"a": 1}}}, "extra.Exec.NewKey"),
    ({"Exec": {"NewKey": "a\nb"}}, "line break"),
])
def test_extra_errors(extra, expected):
    with pytest.raises(ns.SettingsError) as info:
        ns.build_settings({"extra": extra})
    assert expected in str(info.value)


def test_did_you_mean_needs_a_close_name():
    assert ns.did_you_mean("hostnme", schema.TABLE) == "hostname"
    assert ns.did_you_mean("completely_else", schema.TABLE) is None


# ---------------------------------------------------------------- paths, restart, warnings

def test_paths():
    assert ns.settings_path("web1") == "/etc/systemd/nspawn/web1.nspawn"
    assert ns.settings_path("web1", "/tmp/x") == "/tmp/x/web1.nspawn"
    assert ns.untrusted_path("web1") == "/var/lib/machines/web1.nspawn"


@pytest.mark.parametrize("before,after,needed", [
    (None, None, False),
    (None, "# Managed by corral.nspawn\n", False),
    (None, "[Exec]\nBoot=yes\n", True),
    ("[Exec]\nBoot=yes\n", None, True),
    ("[Exec]\nBoot=yes\n", "# new comment\n[Exec]\nBoot=yes\n", False),
    ("[Exec]\nBoot=yes\n", "[Exec]\nBoot=no\n", True),
    ("[Files]\nBind=/a\nBind=/b\n", "[Files]\nBind=/b\nBind=/a\n", True),
])
def test_restart_required(before, after, needed):
    assert ns.restart_required(before, after) is needed


def test_trust_warnings_only_outside_trusted_dirs_and_only_for_privileged_keys():
    text = ns.build_settings({"hostname": "h", "bind": ["/a"], "port": ["80"]})[0]
    assert ns.trust_warnings(text, "/etc/systemd/nspawn/x.nspawn") == []
    assert ns.trust_warnings(text, "/run/systemd/nspawn/x.nspawn") == []
    [warning] = ns.trust_warnings(text, "/var/lib/machines/x.nspawn")
    assert "Files.Bind, Network.Port" in warning and "Hostname" not in warning
    assert ns.trust_warnings(ns.build_settings({"hostname": "h"})[0], "/tmp/x.nspawn") == []


def test_version_warnings():
    text, warnings = ns.build_settings({"suppress_sync": True, "boot": True, "bind_user": ["alice"]},
                                       systemd_version=249)
    assert warnings == ["suppress_sync (Exec.SuppressSync=) needs systemd 250; this host runs systemd 249"]
    assert ns.version_warnings(text, 252) == []


@pytest.mark.parametrize("text,version", [("systemd 252 (252.38-1~deb12u1)\n+PAM +AUDIT", 252),
                                          ("systemd 256.5", 256), ("", None), ("bash 5", None)])
def test_parse_version(text, version):
    assert ns.parse_version(text) == version


# ---------------------------------------------------------------- reading back

def test_to_options_reads_back_what_was_written():
    params = {"boot": True, "environment": ["A=hello world", "B=2"], "parameters": ["-c", "a b"],
              "bind": ["/a:/b"], "capability": ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"], "zone": "web",
              "extra": {"Exec": {"NewKey": "v"}}}
    text = ns.build_settings(params)[0]
    options = ns.to_options(text)
    assert options == {"boot": True, "environment": ["A=hello world", "B=2"], "parameters": ["-c", "a b"],
                       "bind": ["/a:/b"], "capability": ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"], "zone": "web",
                       "extra": {"Exec": {"NewKey": ["v"]}}}
    extra = options.pop("extra")
    assert ns.build_settings({**options, "extra": {"Exec": {"NewKey": extra["Exec"]["NewKey"][0]}}})[0] == text


_SAFE_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters="\\"),
                     min_size=0, max_size=20).filter(lambda s: not ('"' in s and "'" in s) and s.strip() == s)
_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)


@hsettings(max_examples=200, deadline=None)
@given(env=st.dictionaries(_NAMES, _SAFE_TEXT, max_size=4), params=st.lists(_SAFE_TEXT.filter(bool), max_size=4))
def test_quoted_words_round_trip_through_systemd_style_splitting(env, params):
    """Environment/Parameters values survive render -> parse -> whitespace/quote splitting."""
    text = ns.build_settings({"environment": env, "parameters": params})[0]
    options = ns.to_options(text)
    assert options.get("environment", []) == [f"{k}={v}" for k, v in env.items()]
    assert options.get("parameters", []) == params
    for _section, entries in unitfile.parse(text):
        for key, value in entries:
            if key == "Environment":
                assert len(shlex.split(value)) == 1


def test_option_spec_covers_catalogue_and_extra():
    assert set(ns.OPTION_SPEC) == set(schema.TABLE) | {"extra"}
    assert ns.OPTION_SPEC["environment"] == {"type": "raw"}
    assert ns.OPTION_SPEC["extra"] == {"type": "dict"}


@pytest.mark.parametrize("value", ["0", 0, "1", 1])
def test_private_users_zero_or_one_is_refused_with_the_range_form(value):
    """Regression (issue 19, 2): the guide's undo private_users: "0" is PrivateUsers=no to systemd, so
    private_users_ownership: chown left every file owned by the shifted UID."""
    with pytest.raises(ns.SettingsError, match=re.escape(f'give "{int(value)}:65536"')):
        ns.build_settings({"private_users": value, "private_users_ownership": "chown"})
    text, _warnings = ns.build_settings({"private_users": f"{int(value)}:65536", "private_users_ownership": "chown"})
    assert f"PrivateUsers={int(value)}:65536\n" in text


@pytest.mark.parametrize("value, words", [
    ("/usr/bin/python3 -m http.server 80", "/usr/bin/python3 -m http.server 80"),
    ("/bin/echo 'two words' x", '/bin/echo "two words" x'),
    (["/bin/echo", "two words"], '/bin/echo "two words"'),
])
def test_a_string_parameters_is_split_into_words(value, words):
    """Regression (issue 19, 1): one string was one argv word (execv("/usr/bin/python3 -m ...") failed)."""
    text, _warnings = ns.build_settings({"boot": False, "process_two": True, "parameters": value})
    assert f"Parameters={words}\n" in text


def test_a_string_parameters_with_an_open_quote_is_refused():
    with pytest.raises(ns.SettingsError, match="cannot be split into words"):
        ns.build_settings({"parameters": "/bin/echo 'open"})


# ---------------------------------------------------------------- plan(items, state): the resource contract

def test_plan_for_n_items_decides_text_mode_and_removal_without_io():
    text, _w = ns.build_settings({"hostname": "a"})
    items = [ns.SettingsItem("a", "/x/a.nspawn", {"hostname": "a"}),
             ns.SettingsItem("b", "/x/b.nspawn", {"boot": True}),
             ns.SettingsItem("c", "/x/c.nspawn", None), ns.SettingsItem("d", "/x/d.nspawn", {"hostname": "a"})]
    state = ns.SettingsState(files={"/x/a.nspawn": (text, 0o600), "/x/b.nspawn": (None, None),
                                    "/x/c.nspawn": ("[Exec]\nBoot=yes\n", 0o644), "/x/d.nspawn": (text, 0o644)})
    plan = ns.plan(items, state)
    assert [(i.name, i.changed, i.restart_required) for i in plan.items] == [
        ("a", True, False), ("b", True, True), ("c", True, True), ("d", False, False)]
    assert [(a.path, a.action == "chmod", a.action == "remove") for a in plan.actions] == [
        ("/x/a.nspawn", True, False), ("/x/b.nspawn", False, False), ("/x/c.nspawn", False, True)]
    assert plan.items[0].diff["before_header"] == "/x/a.nspawn (mode 0600)" and plan.changed
    assert ns.plan(items[3:], state).changed is False


def test_plan_reports_every_items_errors_with_its_label_before_any_change():
    items = [ns.SettingsItem("a", "/x/a.nspawn", {"port": ["x"]}, label="machines[a].settings"),
             ns.SettingsItem("b", "/x/b.nspawn", {"bind": ["/nowhere:/y"]}, label="machines[b].settings")]
    with pytest.raises(ns.SettingsError) as info:
        ns.plan(items, ns.SettingsState(exists={"/nowhere": False}))
    assert str(info.value).startswith("machines[a].settings: port:")
    assert "; machines[b].settings: bind: '/nowhere:/y': the source /nowhere does not exist" in str(info.value)
    assert items[1].probes() == [ns.untrusted_path("b"), "/nowhere"]
