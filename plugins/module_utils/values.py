# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""The one validator for values written into line-based files (pure, no I/O).

Unit files, drop-ins, ``.nspawn`` and networkd files are read by systemd's
``read_line()``, which ends a line at ``\\n``, ``\\r`` and ``\\0``; its config
parser then joins a line ending in an odd number of backslashes with the next
one. A value that carries any of these escapes its ``Key=`` line and can add
keys or whole sections (``Bind=/x\\r[Exec]\\rPrivateUsers=no``). ``/etc/shadow``
and ``authorized_keys`` are line based too, and shadow fields end at ``:``.

Every option that reaches such a file is checked here, and ``unitfile.render``
checks again so no renderer can write a value that breaks out of its line.
Each check returns None when the value is fine, else the reason and the allowed
form; the caller names the option and the value.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Optional

# C0 controls except tab, DEL, C1 controls, the Unicode line and paragraph separators
# (other tools split lines there) and lone surrogates (not encodable as UTF-8).
_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_LINE_ENDS = "\n\r\0\x85\u2028\u2029"
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_SECTION = re.compile(r"[A-Za-z][A-Za-z0-9_ -]*")

LINE_FORM = ("one line of text: no control characters (tab is allowed), no DEL, no line or paragraph "
             "separators, and no backslash at the end")
TEXT_FORM = "one line of text: no control characters (tab is allowed), no DEL, no line or paragraph separators"

_CRYPT_ALPHABET = "./0-9A-Za-z"
_B64 = f"[{_CRYPT_ALPHABET}]"
# id -> (pattern of everything after "$id$", what it looks like)
_CRYPT_FORMS = {
    "1": (re.compile(rf"{_B64}{{0,8}}\${_B64}{{22}}"), "$1$SALT$HASH (MD5-crypt: salt up to 8, hash 22 characters)"),
    "5": (re.compile(rf"(rounds=[1-9][0-9]{{0,9}}\$)?{_B64}{{0,16}}\${_B64}{{43}}"),
          "$5$[rounds=N$]SALT$HASH (SHA-256-crypt: salt up to 16, hash 43 characters)"),
    "6": (re.compile(rf"(rounds=[1-9][0-9]{{0,9}}\$)?{_B64}{{0,16}}\${_B64}{{86}}"),
          "$6$[rounds=N$]SALT$HASH (SHA-512-crypt: salt up to 16, hash 86 characters)"),
    "y": (re.compile(rf"{_B64}+\${_B64}*\${_B64}{{43}}"), "$y$PARAMS$SALT$HASH (yescrypt, hash 43 characters)"),
    "2a": (re.compile(rf"(0[4-9]|[12][0-9]|3[01])\${_B64}{{53}}"), "$2b$NN$ + 53 characters (bcrypt; also $2a$, $2y$; cost NN 04-31)"),
}
_CRYPT_FORMS["2b"] = _CRYPT_FORMS["2y"] = _CRYPT_FORMS["2a"]
CRYPT_FORM = ("a crypt(3) hash " + ", ".join(form for _pattern, form in list(_CRYPT_FORMS.values())[:5])
              + "; every salt and hash character from [./0-9A-Za-z]")


def _control(value: str, where: bool = True) -> Optional[str]:
    bad = _FORBIDDEN.search(value)
    if bad is None:
        return None
    at = f" at position {bad.start()}" if where else ""
    if bad.group() in _LINE_ENDS:
        return f"contains a line break ({bad.group()!r}{at}; systemd ends lines at \\n, \\r and \\0)"
    return f"contains the control character {bad.group()!r}{at}"


def text_error(value: str) -> Optional[str]:
    """For a whole line of its own (authorized_keys): refuse what ends or hides a line."""
    if not isinstance(value, str):
        return f"must be a string; allowed: {TEXT_FORM}"
    problem = _control(value)
    return f"{problem}; allowed: {TEXT_FORM}" if problem else None


def line_error(value: str) -> Optional[str]:
    """For a value after ``Key=`` in a systemd file: refuse line ends and a continuation backslash."""
    if not isinstance(value, str):
        return f"must be a string; allowed: {LINE_FORM}"
    problem = _control(value)
    if problem is None and value.endswith("\\"):
        problem = "ends in a backslash, which joins the next line in systemd files"
    return f"{problem}; allowed: {LINE_FORM}" if problem else None


def key_error(key: str) -> Optional[str]:
    """A ``Key`` of a systemd file: a letter, then letters, digits, '_' or '-'."""
    if isinstance(key, str) and _KEY.fullmatch(key):
        return None
    return "is not a systemd key name (a letter, then letters, digits, '_' or '-')"


def section_error(section: str) -> Optional[str]:
    if isinstance(section, str) and _SECTION.fullmatch(section):
        return None
    return "is not a systemd section name (a letter, then letters, digits, '_', '-' or spaces)"


def crypt_hash_error(value: str) -> Optional[str]:
    """Why ``value`` is not a crypt(3) hash; the message never repeats the (secret) value."""
    if not isinstance(value, str) or not value.startswith("$"):
        return f"does not start with $ID$; allowed: {CRYPT_FORM}"
    problem = _control(value, where=False)  # no position: the value is a secret
    if problem:
        return f"{problem}; allowed: {CRYPT_FORM}"
    if ":" in value:
        return f"contains ':', which ends a field of /etc/shadow; allowed: {CRYPT_FORM}"
    ident, _sep, rest = value[1:].partition("$")
    form = _CRYPT_FORMS.get(ident)
    if form is None:
        return f"has the unknown method ${ident}$; allowed: {CRYPT_FORM}"
    if not form[0].fullmatch(rest):
        return (f"is not of the form {form[1]}, or uses characters outside [{_CRYPT_ALPHABET}] "
                "(a placeholder such as '...' is not a hash)")
    return None


# OpenSSH public key types (ssh-keygen -Q key, plus the certificate and security-key forms).
_SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                  "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
_SSH_TYPE_RE = "|".join(re.escape(t) + r"(?:-cert-v01@openssh\.com)?" for t in _SSH_KEY_TYPES)
_SSH_KEY = re.compile(rf"(?:^|\s)({_SSH_TYPE_RE})\s+(\S+)")
SSH_KEY_FORM = ("an OpenSSH public key line: [OPTIONS ]TYPE BASE64 [COMMENT], TYPE one of "
                f"{', '.join(_SSH_KEY_TYPES)}, BASE64 the key blob as ssh-keygen prints it")


def authorized_key_error(value: str) -> Optional[str]:
    """Why ``value`` is not an authorized_keys line; a placeholder ("ssh-ed25519 AAAA...") is refused.

    The key blob must be base64 whose first field names the same key type, as every OpenSSH public
    key does: a truncated or made-up blob would be written and then never match any key.
    """
    problem = text_error(value)
    if problem:
        return problem
    match = _SSH_KEY.search(value.strip())
    if match is None:
        return f"is not {SSH_KEY_FORM}"
    key_type, blob = match.groups()
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return f"has a key blob that is not base64 (a placeholder such as 'AAAA...' is not a key); allowed: {SSH_KEY_FORM}"
    length = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    if raw[4:4 + length].decode("ascii", "replace") != key_type or len(raw) <= 4 + length:
        return f"has a key blob that does not hold a {key_type} key (truncated or made up); allowed: {SSH_KEY_FORM}"
    return None
