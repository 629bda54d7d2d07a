# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The .nspawn key catalogue: complete, consistent with the docs, validators right."""

import pytest
import yaml

from ansible_collections.corral.nspawn.plugins.doc_fragments.settings import ModuleDocFragment
from ansible_collections.corral.nspawn.plugins.module_utils import schema
from ansible_collections.corral.nspawn.plugins.module_utils.nspawn_settings import OPTION_SPEC

# Every key systemd-nspawn's settings parser knows (src/nspawn/nspawn-gperf.gperf), section by section.
SYSTEMD_KEYS = {
    "Exec": ("Boot Ephemeral ProcessTwo Parameters Environment User Capability AmbientCapability DropCapability "
             "KillSignal Personality MachineID WorkingDirectory PivotRoot PrivateUsers NotifyReady SystemCallFilter "
             "LimitCPU LimitFSIZE LimitDATA LimitSTACK LimitCORE LimitRSS LimitNOFILE LimitAS LimitNPROC "
             "LimitMEMLOCK LimitLOCKS LimitSIGPENDING LimitMSGQUEUE LimitNICE LimitRTPRIO LimitRTTIME Hostname "
             "NoNewPrivileges OOMScoreAdjust CPUAffinity ResolvConf LinkJournal Timezone SuppressSync").split(),
    "Files": ("ReadOnly Volatile Bind BindReadOnly TemporaryFileSystem Inaccessible Overlay OverlayReadOnly "
              "PrivateUsersChown PrivateUsersOwnership BindUser").split(),
    "Network": "Private Interface MACVLAN IPVLAN VirtualEthernet VirtualEthernetExtra Bridge Zone Port".split(),
}

# Keys systemd-nspawn ignores in untrusted files (nspawn.c load_settings / systemd.nspawn(5) "privileged").
PRIVILEGED = {"Capability", "AmbientCapability", "MachineID", "PrivateUsers", "SystemCallFilter", "Bind",
              "BindReadOnly", "BindUser", "TemporaryFileSystem", "Inaccessible", "Overlay", "OverlayReadOnly",
              "PrivateUsersOwnership", "PrivateUsersChown"} | set(SYSTEMD_KEYS["Network"])


def fragment_options():
    return yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]


def test_catalogue_is_complete_and_has_nothing_else():
    table = {(spec.section, spec.key) for spec in schema.TABLE.values()}
    expected = {(section, key) for section, keys in SYSTEMD_KEYS.items() for key in keys}
    assert table == expected
    assert len(schema.TABLE) == len(expected) == 61


@pytest.mark.parametrize("option,spec", list(schema.TABLE.items()))
def test_entry_is_consistent(option, spec):
    assert spec.section in schema.SECTIONS
    assert spec.kind in schema.KINDS
    assert 226 <= spec.since <= 260
    assert schema.snake_case(spec.key) == option or schema.RENAMED.get(option) == spec.key
    assert spec.privileged == (spec.key in PRIVILEGED)
    assert schema.BY_KEY[(spec.section, spec.key)] == option
    if spec.kind == "enum":
        assert spec.choices
    if spec.kind == "int":
        assert spec.minimum is not None and spec.maximum is not None


@pytest.mark.parametrize("key,snake", [("VirtualEthernetExtra", "virtual_ethernet_extra"),
                                       ("OOMScoreAdjust", "oom_score_adjust"), ("CPUAffinity", "cpu_affinity"),
                                       ("MACVLAN", "macvlan"), ("MachineID", "machine_id"),
                                       ("LimitNOFILE", "limit_nofile"), ("BindReadOnly", "bind_read_only")])
def test_snake_case(key, snake):
    assert schema.snake_case(key) == snake


def test_doc_fragment_matches_option_spec():
    docs = fragment_options()
    assert set(docs) == set(OPTION_SPEC)
    for option, spec in OPTION_SPEC.items():
        doc = docs[option]
        assert doc["type"] == spec["type"], option
        assert doc.get("elements") == spec.get("elements"), option
        assert doc.get("choices") == spec.get("choices"), option


@pytest.mark.parametrize("option,spec", list(schema.TABLE.items()))
def test_doc_names_the_systemd_key_and_version(option, spec):
    first = fragment_options()[option]["description"][0]
    assert f"C({spec.key}=) in C([{spec.section}])" in first
    assert (f"systemd {spec.since} or later" in first) == (spec.since > 226)


@pytest.mark.parametrize("kind,expected", [
    ("boot", {"type": "bool"}),
    ("oom_score_adjust", {"type": "int"}),
    ("bind", {"type": "list", "elements": "str"}),
    ("capability", {"type": "list", "elements": "str"}),
    ("timezone", {"type": "str", "choices": ["off", "copy", "bind", "symlink", "delete", "auto"]}),
    ("volatile", {"type": "raw"}),
    ("private_users", {"type": "raw"}),
    ("limit_nofile", {"type": "raw"}),
    ("working_directory", {"type": "str"}),
])
def test_argspec_per_kind(kind, expected):
    assert schema.argspec(schema.TABLE[kind]) == expected


GOOD = [
    (schema.check_bind, "/srv/data"), (schema.check_bind, "/srv/data:/data"),
    (schema.check_bind, "/srv/data:/data:rbind,idmap"), (schema.check_bind, "+/var/cache:/cache"),
    (schema.check_bind, "/srv/a\\:b:/b"),
    (schema.check_tmpfs, "/tmp"), (schema.check_tmpfs, "/run/x:mode=0755,size=10M"),
    (schema.check_overlay, "/lower:/upper:/dest"), (schema.check_overlay, "/l1:/l2::/dest"),
    (schema.check_overlay, "/lower:/dest"),
    (schema.check_pivot_root, "/sysroot"), (schema.check_pivot_root, "/sysroot:/oldroot"),
    (schema.check_port, "80"), (schema.check_port, "tcp:8080:80"), (schema.check_port, "udp:53"),
    (schema.check_port, "65535:1"),
    (schema.check_capability, "CAP_NET_ADMIN"), (schema.check_capability, "all"),
    (schema.check_ambient_capability, "CAP_NET_BIND_SERVICE"),
    (schema.check_syscall, "@system-service"), (schema.check_syscall, "~keyctl"), (schema.check_syscall, "bpf"),
    (schema.check_signal, "SIGTERM"), (schema.check_signal, "SIGRTMIN+3"), (schema.check_signal, "TERM"),
    (schema.check_signal, "15"),
    (schema.check_machine_id, "0123456789abcdef0123456789abcdef"),
    (schema.check_machine_id, "01234567-89ab-cdef-0123-456789abcdef"),
    (schema.check_user, "www-data"), (schema.check_user, "1000"),
    (schema.check_environment, "A=1"), (schema.check_environment, "_X=hello world"), (schema.check_environment, "E="),
    (schema.check_hostname, "web1"), (schema.check_hostname, "web1.example.test"),
    (schema.check_rlimit, "4096"), (schema.check_rlimit, "1024:4096"), (schema.check_rlimit, "infinity"),
    (schema.check_rlimit, "64K:infinity"), (schema.check_rlimit, "10s"),
    (schema.check_cpus, "0-3,6"), (schema.check_cpus, "0 2"), (schema.check_cpus, "numa"),
    (schema.check_private_users, "pick"), (schema.check_private_users, "65536:65536"),
    (schema.check_private_users, "no"), (schema.check_private_users, "identity"),
    (schema.check_ifname, "br0"), (schema.check_ifname_pair, "eth1"), (schema.check_ifname_pair, "eth1:host0"),
    (schema.check_zone, "web"), (schema.check_word, "a b"), (schema.check_word, 'say "hi"'),
]

BAD = [
    (schema.check_bind, "relative"), (schema.check_bind, "/a:relative"), (schema.check_bind, "/a:/b:bogus"),
    (schema.check_bind, "/a:/b:rbind:x"), (schema.check_bind, ""),
    (schema.check_tmpfs, "tmp"), (schema.check_tmpfs, "/tmp:a:b"),
    (schema.check_overlay, "/only"), (schema.check_overlay, "/a:rel"), (schema.check_overlay, ":/dest"),
    (schema.check_pivot_root, "sysroot"), (schema.check_pivot_root, "/a:/b:/c"),
    (schema.check_port, "sctp:80"), (schema.check_port, "0"), (schema.check_port, "70000"),
    (schema.check_port, "tcp:80:"), (schema.check_port, "80-90"), (schema.check_port, "http"),
    (schema.check_capability, "NET_ADMIN"), (schema.check_capability, "cap_net_admin"),
    (schema.check_ambient_capability, "all"),
    (schema.check_syscall, "rm -rf"), (schema.check_signal, "SIGFOO"), (schema.check_signal, "99"),
    (schema.check_machine_id, "xyz"), (schema.check_machine_id, "0123"),
    (schema.check_user, "a b"), (schema.check_user, "-x"),
    (schema.check_environment, "NOEQUALS"), (schema.check_environment, "1A=x"), (schema.check_environment, "A B=x"),
    (schema.check_hostname, "-bad"), (schema.check_hostname, "a_b"), (schema.check_hostname, "x" * 65),
    (schema.check_rlimit, "lots"), (schema.check_rlimit, "1:2:3"), (schema.check_rlimit, "-1"),
    (schema.check_cpus, "all"), (schema.check_cpus, "a-b"),
    (schema.check_private_users, "maybe"), (schema.check_private_users, "1:2:3"),
    (schema.check_ifname, "a" * 16), (schema.check_ifname, "a/b"), (schema.check_ifname_pair, "a:b:c"),
    (schema.check_ifname_pair, "eth0:" + "x" * 16), (schema.check_zone, "a" * 13),
    (schema.check_word, "a\\b"), (schema.check_word, "it's \"x\""),
]


@pytest.mark.parametrize("check,value", GOOD)
def test_validator_accepts(check, value):
    assert check(value) is None


@pytest.mark.parametrize("check,value", BAD)
def test_validator_refuses_with_allowed_form(check, value):
    error = check(value)
    assert error and (error.startswith("must") or error.startswith("is not")), error


def test_split_colons_honours_escapes():
    assert schema.split_colons("/a\\:b:/c") == ["/a:b", "/c"]
