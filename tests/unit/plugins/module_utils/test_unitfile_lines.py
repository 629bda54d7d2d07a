# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The reader splits and joins lines exactly as systemd's read_line() and config_parse() do.

systemd (src/basic/fileio.c read_line_full, src/shared/conf-parser.c config_parse): a line ends at
\\n, \\r or \\0; a run of different markers (\\r\\n, \\n\\r, \\r\\n\\0, ...) is one end; the same marker
twice ends a second, empty line; nothing else ends a line (not \\v, \\f, \\x1c-\\x1e, \\x85, U+2028,
which Python's str.splitlines() splits on). Comment lines are skipped also inside a continuation;
an odd number of trailing backslashes continues the line (the backslash becomes a space); an empty
line ends a continuation; only " \\t\\n\\r" is stripped around keys and values.
"""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import unitfile


@pytest.mark.parametrize("text, lines", [
    ("a\nb\n", ["a", "b"]),
    ("a\rb\r", ["a", "b"]),
    ("a\0b", ["a", "b"]),
    ("a\r\nb\r\n", ["a", "b"]),
    ("a\n\rb", ["a", "b"]),
    ("a\r\n\0b", ["a", "b"]),
    ("a\n\nb", ["a", "", "b"]),
    ("a\r\rb", ["a", "", "b"]),
    ("a\0\nb", ["a", "", "b"]),
    ("a\r\n\r\nb", ["a", "", "b"]),
    ("a\x0bb\x0cc\x1cd\x85e\u2028f", ["a\x0bb\x0cc\x1cd\x85e\u2028f"]),
    ("", []),
    ("a", ["a"]),
])
def test_physical_lines_end_where_systemd_ends_them(text, lines):
    assert unitfile.physical_lines(text) == lines


@pytest.mark.parametrize("text, expected", [
    ("[A]\nK=v\u2028X=y\n", [("A", [("K", "v\u2028X=y")])]),
    ("[A]\nK=v\x85[B]\n", [("A", [("K", "v\x85[B]")])]),
    ("[A]\nK=v\x0bX=y\n", [("A", [("K", "v\x0bX=y")])]),
    ("[A]\rK=v\r\rX=y\r", [("A", [("K", "v"), ("X", "y")])]),
    ("[A]\nK=\u00a0v\u00a0\n", [("A", [("K", "\u00a0v\u00a0")])]),
    ("[A]\nK=a\\\\\nX=y\n", [("A", [("K", "a\\\\"), ("X", "y")])]),
    ("[A]\nK=a\\\\\\\nX=y\n", [("A", [("K", "a\\\\ X=y")])]),
    ("[A]\nK=a\\\n# comment\n; other\nb\n", [("A", [("K", "a b")])]),
    ("[A]\nK=a\\\n\nX=y\n", [("A", [("K", "a"), ("X", "y")])]),
    ("[A]\nK=a\\", [("A", [("K", "a")])]),
    ("\ufeff[A]\nK=v\n", [("A", [("K", "v")])]),
])
def test_parse_reads_what_systemd_reads(text, expected):
    assert unitfile.parse(text) == expected


def test_a_crlf_file_is_equivalent_to_the_rendered_one():
    text = unitfile.render([("Exec", [("Boot", "yes")]), ("Files", [("Bind", "/a")])])
    assert unitfile.equivalent(text.replace("\n", "\r\n"), text)
    assert unitfile.equivalent(text.replace("\n", "\r"), text)
