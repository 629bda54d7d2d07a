# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one-line validator and the crypt(3) hash check (issue 9, section 2)."""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import values

# Real hashes: openssl passwd -1/-5/-6, libxcrypt yescrypt and bcrypt (password unknown/irrelevant).
REAL_HASHES = [
    "$1$abcdefgh$IQtUouv7y7Q9dRWkQEPCc.",
    "$5$abcdefghijklmnop$gu.71QnGu.GrGbdJF.mj20x/mWJF1VliZRmeYNpAtDB",
    "$6$abcdefghijklmnop$GRSTFj3H0pZ9BY1uhdqITG.qORbXkTk40qgaa1roNICfs/axSgdNnbKEYghuyLnrmnFXvSE09GdxJbCDOnxdc1",
    "$6$rounds=5000$0fjmW2P9EqzrfULn$TLd7fjqWOeZn4e7WskDTuwfSZkjwQ8MsrJiLM2Dn2/eF8gfTP8x.DFnweChyJr4.Rr/PfK1pmu.qh9L8W99MQ/",
    "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$U4SOHmDd8SvW5vCUKSMR6N835VPwFAtgYNhQ9mFFeL5",
    "$y$j9T$$35/RtcSpQnsp9pKBilplwTCR/Z6e.uNV.3aZKZzHYd6",
    "$2b$12$abcdefghijklmnopqrstuunYdhHrPrQsWwVD7FJZar2U048CuDd2m",
    "$2y$04$abcdefghijklmnopqrstuunYdhHrPrQsWwVD7FJZar2U048CuDd2m",
]


@pytest.mark.parametrize("value", ["", "/srv/data", "a\tb", "x=y [Exec] #;", "é ü 日本 \u00a0 \ufeff", "a\\b",
                                   "a\\\\b", '"quoted" \'both\''])
def test_line_values_that_stay_on_their_line(value):
    assert values.line_error(value) is None


@pytest.mark.parametrize("value, fragment", [
    ("/srv/data\r[Exec]\rPrivateUsers=no\rCapability=all", "line break ('\\r' at position 9"),
    ("/srv\\", "ends in a backslash"),
    ("/srv\\\\\\", "ends in a backslash"),
    ("a\nb", "line break ('\\n'"),
    ("/tmp\0x", "line break ('\\x00'"),
    ("a\x0bb", "control character '\\x0b'"),
    ("a\x1bb", "control character '\\x1b'"),
    ("a\x7f", "control character '\\x7f'"),
    ("a\x85b", "line break ('\\x85'"),
    ("a\u2028b", "line break ('\\u2028'"),
    ("a\ud800", "control character"),
    (42, "must be a string"),
])
def test_line_values_that_break_out_are_refused_with_the_allowed_form(value, fragment):
    error = values.line_error(value)
    assert error and fragment in error and values.LINE_FORM in error


def test_text_error_allows_a_trailing_backslash_but_no_line_break():
    assert values.text_error("ssh-ed25519 AAAA x\\") is None
    assert "line break" in values.text_error("ssh-ed25519 AAAA x\rssh-rsa EVIL")


@pytest.mark.parametrize("key, ok", [("Bind", True), ("X-Foo_1", True), ("1Bind", False), ("Bi nd", False),
                                     ("Bind\n", False), ("Bind=", False), ("", False)])
def test_key_names(key, ok):
    assert (values.key_error(key) is None) is ok


@pytest.mark.parametrize("value", REAL_HASHES)
def test_real_crypt_hashes_are_accepted(value):
    assert values.crypt_hash_error(value) is None


@pytest.mark.parametrize("value, fragment", [
    ("$6$examplesalt$...", "placeholder"),
    ("$6$salt$hash", "$6$[rounds=N$]SALT$HASH"),
    ("$6$abc$" + "x" * 86 + ":0:0::\nevil::0:0:::::", "line break"),
    ("$6$abc$" + "x" * 85 + ":", "contains ':'"),
    ("$6$abcdefghijklmnopq$" + "x" * 86, "salt up to 16"),
    ("$7$abc$def", "unknown method $7$"),
    ("$1$abc$" + "x" * 23, "MD5"),
    ("$2b$03$" + "x" * 53, "bcrypt"),
    ("$y$j9T$salt$" + "x" * 42, "yescrypt"),
    ("!", "does not start with $ID$"),
    ("plain-password", "does not start with $ID$"),
])
def test_bad_crypt_hashes_are_refused_without_echoing_the_value(value, fragment):
    error = values.crypt_hash_error(value)
    assert error and fragment in error
    assert value not in error and "evil" not in error and "x" * 20 not in error


REAL_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGkcXZiq3hpY7qYXmBPaZ12JW+4JMC3QJvWDx7EJrg4C admin@example"


@pytest.mark.parametrize("key, words", [
    ("ssh-ed25519 AAAA... admin@example", "not base64"),                    # the guide's old placeholder
    ("ssh-ed25519 AAAAC3Nz admin@example", "does not hold a ssh-ed25519 key"),
    ("ssh-rsa " + REAL_KEY.split()[1], "does not hold a ssh-rsa key"),      # type and blob disagree
    ("my key", "is not an OpenSSH public key line"),
])
def test_placeholder_and_made_up_keys_are_refused(key, words):
    """Regression (issue 19, 9): placeholders from the guide were accepted as real keys."""
    assert words in values.authorized_key_error(key)


@pytest.mark.parametrize("key", [REAL_KEY, REAL_KEY.rsplit(" ", 1)[0], 'from="10.0.0.0/8" ' + REAL_KEY])
def test_real_keys_are_accepted(key):
    assert values.authorized_key_error(key) is None
