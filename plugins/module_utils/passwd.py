# -*- coding: utf-8 -*-
# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the corral.nspawn collection (docs/architecture.md): no API for other content, may change in any release.
"""SHA-512 crypt (``$6$``) in pure Python, for hosts whose Python has no ``crypt`` module.

Python 3.13 removed ``crypt`` (Debian 13 hosts), and a minimal host has no ``openssl`` binary
either; root_password must still be hashed and verified there. This follows the SHA-crypt
specification (Ulrich Drepper, "Unix crypt using SHA-256 and SHA-512") and is checked in the
unit tests against its published vectors and against libxcrypt. Like libxcrypt, it refuses a
``rounds=`` outside 1000..999999999 instead of clamping it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Optional, Tuple

ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DEFAULT_ROUNDS = 5000
ROUNDS_RANGE = (1000, 999_999_999)
SALT_MAX = 16
_SPEC_RE = re.compile(r"^\$6\$(?:rounds=([0-9]+)\$)?([./0-9A-Za-z]*)(?:\$[./0-9A-Za-z]*)?$")
# Byte order of the final digest in the encoded hash: 21 groups of three bytes, then byte 63.
_GROUPS = ((0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
           (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13),
           (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19), (62, 20, 41))


def parse_spec(spec: str) -> Tuple[Optional[int], str]:
    """(rounds or None, salt) of a ``$6$[rounds=N$]salt[$hash]`` string; ValueError otherwise."""
    match = _SPEC_RE.match(spec or "")
    if not match:
        raise ValueError("not a $6$ (SHA-512 crypt) salt of the characters ./0-9A-Za-z")
    rounds = int(match.group(1)) if match.group(1) is not None else None
    if rounds is not None and not ROUNDS_RANGE[0] <= rounds <= ROUNDS_RANGE[1]:
        raise ValueError(f"rounds={rounds}: allowed are {ROUNDS_RANGE[0]}..{ROUNDS_RANGE[1]}")
    return rounds, match.group(2)[:SALT_MAX]


def _repeat(digest: bytes, length: int) -> bytes:
    return (digest * (length // len(digest) + 1))[:length]


def _encode(digest: bytes) -> str:
    out = []
    for first, second, third in _GROUPS:
        out.append(_b64(digest[first] << 16 | digest[second] << 8 | digest[third], 4))
    out.append(_b64(digest[63], 2))
    return "".join(out)


def _b64(value: int, count: int) -> str:
    chars = []
    for _index in range(count):
        chars.append(ALPHABET[value & 0x3F])
        value >>= 6
    return "".join(chars)


def _initial(password: bytes, salt: bytes) -> bytes:
    alternate = hashlib.sha512(password + salt + password).digest()
    main = hashlib.sha512(password + salt + _repeat(alternate, len(password)))
    length = len(password)
    while length:
        main.update(alternate if length & 1 else password)
        length >>= 1
    return main.digest()


def sha512_crypt(password: str, spec: str) -> str:
    """crypt(3) ``$6$`` hash of ``password`` with the salt (and rounds) of ``spec``."""
    rounds, salt_text = parse_spec(spec)
    secret, salt = password.encode("utf-8"), salt_text.encode("ascii")
    digest = _initial(secret, salt)
    p_bytes = _repeat(hashlib.sha512(secret * len(secret)).digest(), len(secret))
    s_bytes = _repeat(hashlib.sha512(salt * (16 + digest[0])).digest(), len(salt))
    for index in range(rounds or DEFAULT_ROUNDS):
        step = hashlib.sha512(p_bytes if index & 1 else digest)
        if index % 3:
            step.update(s_bytes)
        if index % 7:
            step.update(p_bytes)
        step.update(digest if index & 1 else p_bytes)
        digest = step.digest()
    prefix = "$6$" + (f"rounds={rounds}$" if rounds is not None else "")
    return f"{prefix}{salt_text}${_encode(digest)}"
