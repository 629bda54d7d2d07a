# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property (issue 9, section 2): no input that passes validation adds a key or a section.

Arbitrary text (biased towards line ends, backslashes, brackets, '=', comment characters, quotes
and Unicode separators) goes through our validators and renderers; whatever is accepted is read
back with our reader, which splits lines as systemd does (test_unitfile_lines.py). The sections
and keys read back must be exactly the rendered ones, in order, and every value must come back
as rendered (systemd strips " \\t\\n\\r" around values). tests/e2e/test_line_values.py checks a
sample with systemd itself.
"""

from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.corral.nspawn.plugins.module_utils import (
    images, images_setup, networkd, nspawn_settings as ns, resources, unitfile)

NASTY = list("\n\r\0\\\t =[]#;\"'%$:/.,\x0b\x0c\x1c\x1f\x7f\x85\u2028\u2029\ufeff\u00a0")
TOKENS = NASTY + ["\r\n", "\\\n", "\\\\", "[Exec]", "PrivateUsers=no", "a", "/", "x", "10", "::1", "%"]
TEXT = st.text(alphabet=st.one_of(st.sampled_from(NASTY), st.characters()), max_size=24) | \
    st.lists(st.sampled_from(TOKENS), max_size=12).map("".join)
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _shape(doc):
    return [(section, [(key, value.strip(unitfile.WHITESPACE)) for key, value in entries])
            for section, entries in unitfile.normalize(doc)]


def assert_reads_back(doc, text):
    """``text`` (rendered from ``doc``) holds exactly doc's sections, keys and values."""
    assert _shape(unitfile.parse(text)) == _shape(doc), text


@FAST
@given(st.lists(st.tuples(st.sampled_from(["Exec", "Files", "Service", "X-Sec"]),
                          st.lists(st.tuples(st.sampled_from(["Bind", "Environment", "ExecStart", "K"]), TEXT),
                                   max_size=4)), max_size=3))
def test_render_writes_only_documents_that_read_back(doc):
    if unitfile.document_errors(doc):
        try:
            unitfile.render(doc)
        except unitfile.UnitFileError:
            return
        raise AssertionError("render wrote a document with a value that breaks out of its line")
    assert_reads_back(doc, unitfile.render(doc))


@FAST
@given(path=TEXT, item=TEXT, env=TEXT, word=TEXT, extra=TEXT)
def test_accepted_nspawn_settings_read_back_with_the_same_keys(path, item, env, word, extra):
    params = {"working_directory": "/" + path, "bind": ["/" + item, "+" + item], "temporary_file_system": ["/" + item],
              "environment": {"VAR": env}, "parameters": [word, "x"], "pivot_root": "/" + path,
              "extra": {"Exec": {"NewKey": extra}, "Files": {"Other": [extra, "y"]}}}
    for option in list(params):
        try:
            doc, _warnings = ns.build_document({option: params[option]})
        except ns.SettingsError:
            continue
        assert_reads_back(doc, unitfile.render(doc))


@FAST
@given(path=TEXT, value=TEXT)
def test_accepted_resources_read_back_with_the_same_keys(path, value):
    for options in ({"io_read_bandwidth_max": ["/" + path + " 10M"]}, {"io_write_bandwidth_max": "/" + path + " 1G"},
                    {"device_allow": ["/dev/" + path]}, {"device_allow": "/dev/" + path + " rw"},
                    {"extra": {"Nice": value}}, {"extra": {"Environment": [value, "A=b"]}}, {"memory_max": value}):
        try:
            desired = resources.normalize(options)
        except resources.ResourceError:
            continue
        text = resources.render_dropin(desired)
        entries = [(key, item) for key, val in desired.items() for item in (val if isinstance(val, list) else [val])]
        parsed = _shape(unitfile.parse(text))
        assert [(k, v) for k, v in parsed[0][1] if v != "" or (k, "") in entries] == \
            [(k, v.strip(unitfile.WHITESPACE)) for k, v in entries]
        assert resources.parse_dropin(text) == {k: ([i.strip(unitfile.WHITESPACE) for i in v] if isinstance(v, list)
                                                    else v.strip(unitfile.WHITESPACE)) for k, v in desired.items()}


def _bridge_trials(address, dns, mac, port):
    """(params with a generated value, the same params with a plain valid value)."""
    dhcp = {"address": ["10.1.0.1/24"], "dhcp_server": True}
    return [({"address": ["10.1.0.1/24", "fe80::1%" + address + "/64"]}, {"address": ["10.1.0.1/24", "fe80::1/64"]}),
            (dict(dhcp, dhcp_dns=[dns, "10.1.0.1"]), dict(dhcp, dhcp_dns=["10.1.0.2", "10.1.0.1"])),
            ({"mac_address": mac}, {"mac_address": "02:00:00:00:00:01" if mac else mac}),
            ({"ports": [port]}, {"ports": ["eth1"]}),
            (dict(dhcp, dhcp_static_leases=[{"mac": mac, "address": "10.1.0." + address}]),
             dict(dhcp, dhcp_static_leases=[{"mac": "02:00:00:00:00:01", "address": "10.1.0.9"}]))]


@FAST
@given(address=TEXT, dns=TEXT, mac=TEXT, port=TEXT)
def test_accepted_bridge_files_read_back_with_the_same_keys(address, dns, mac, port):
    for generated, plain in _bridge_trials(address, dns, mac, port):
        params = dict(generated, name="br0", stp=False, ip_masquerade="no")
        if networkd.bridge_errors(params):
            continue
        files = networkd.build_bridge_files(params)
        plain_files = networkd.build_bridge_files(dict(plain, name="br0", stp=False, ip_masquerade="no"))
        assert [_keys(text) for text in files.values()] == [_keys(text) for text in plain_files.values()]


@FAST
@given(address=TEXT, gateway=TEXT, dns=TEXT)
def test_accepted_image_network_values_read_back_with_the_same_keys(address, gateway, dns):
    base = {"name": "web", "machines_dir": "/var/lib/machines", "state": "present", "source": "clone",
            "clone_from": "base"}
    for params in ({"address": "fe80::5%" + address + "/64"}, {"address": "10.0.0.5/24", "gateway": "10.0.0." + gateway},
                   {"address": "fd00::5/64", "gateway": "fe80::1%" + gateway, "dns": ["fe80::53%" + dns, dns]}):
        if images.validate(images.normalize(dict(base, **params))):
            continue
        text = images_setup.host0_network(params["address"], params.get("gateway"), params.get("dns"))
        plain = images_setup.host0_network("fd00::5/64", "fd00::1", ["fd00::53"] * len(params.get("dns") or []))
        assert _keys(text) == _keys(plain), text


def _keys(text):
    return [(section, [key for key, _v in entries]) for section, entries in unitfile.parse(text)]
