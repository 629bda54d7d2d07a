"""Unit tests for the systemd unit-file parser/renderer."""

import pytest
from hypothesis import given, strategies as st

from ansible_collections.corral.nspawn.plugins.module_utils import unitfile


def test_parse_keeps_order_and_repeats():
    doc = unitfile.parse("# c\n[Files]\nBind=/a\nBind=/b:/c\n\n[Exec]\nBoot=yes\n")
    assert doc == [("Files", [("Bind", "/a"), ("Bind", "/b:/c")]), ("Exec", [("Boot", "yes")])]


def test_continuation_lines_are_joined():
    # systemd replaces the backslash by a space and keeps the next line's leading blanks
    doc = unitfile.parse("[Exec]\nParameters=a \\\n  b\n")
    assert unitfile.get(doc, "Exec", "Parameters") == ["a    b"]


@pytest.mark.parametrize("text, message", [
    ("Key=value\n", "outside of a section"),
    ("[Exec\nBoot=yes\n", "bad section header"),
    ("[Exec]\nnot an assignment\n", "expected Key=value"),
])
def test_parse_errors_name_the_line(text, message):
    with pytest.raises(unitfile.UnitFileError, match=message):
        unitfile.parse(text)


def test_render_has_header_and_skips_empty_sections():
    text = unitfile.render([("Exec", [("Boot", "yes")]), ("Files", [])])
    assert text.startswith("# Managed by corral.nspawn")
    assert "[Files]" not in text
    assert text.endswith("[Exec]\nBoot=yes\n")


def test_equivalent_ignores_comments_but_not_order():
    assert unitfile.equivalent("[A]\nX=1\n", "# hi\n[A]\nX=1\n")
    assert not unitfile.equivalent("[A]\nX=1\nX=2\n", "[A]\nX=2\nX=1\n")


_word = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
_value = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/:=-_. ", max_size=20).map(str.strip)


@given(st.lists(st.tuples(_word, st.lists(st.tuples(_word, _value), min_size=1, max_size=5)), max_size=5))
def test_render_parse_round_trip(doc):
    text = unitfile.render(doc)
    assert unitfile.parse(text) == [s for s in doc if s[1]]
    assert unitfile.render(unitfile.parse(text)) == text


# ---------------------------------------------------------------- values(): the one unit-file-to-dict reader

def test_values_lists_every_key_with_repeated_sections_merged():
    text = "[Exec]\nBoot=yes\n# c\n[Files]\nBind=/a\nBind=/b\n[Exec]\nEnvironment=A=1\n"
    assert unitfile.values(text) == {"Exec": {"Boot": ["yes"], "Environment": ["A=1"]}, "Files": {"Bind": ["/a", "/b"]}}


def test_values_collapse_gives_single_values_and_lists_for_repeats():
    assert unitfile.values("[Files]\nBind=/a\nBind=/b\nPrivateUsersOwnership=auto\n", collapse=True) == {
        "Files": {"Bind": ["/a", "/b"], "PrivateUsersOwnership": "auto"}}


def test_values_of_nothing_is_empty():
    assert unitfile.values(None) == {} and unitfile.values("") == {} and unitfile.values("[Empty]\n") == {}


def test_values_strict_raises_and_lenient_reads_bad_text_as_empty():
    with pytest.raises(unitfile.UnitFileError, match="outside of a section"):
        unitfile.values("Key=1\n")
    assert unitfile.values("Key=1\n", strict=False) == {}
