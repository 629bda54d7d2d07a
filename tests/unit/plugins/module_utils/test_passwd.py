# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Root password hashing where Python has no ``crypt`` module (3.13+, Debian 13 hosts).

The oracle is libxcrypt through Python's ``crypt`` module where the interpreter still has it
(the controller's 3.11), plus the published SHA-crypt test vectors.
"""

import builtins
import sys
import warnings

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import images_setup_io as setup
from ansible_collections.corral.nspawn.plugins.module_utils import passwd

from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.images_fakes import FakeModule

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        import crypt as libcrypt  # pylint: disable=deprecated-module
    except ImportError:  # Python 3.13+: the published vectors below still run
        libcrypt = None

# The test vectors of the SHA-crypt specification (Drepper), SHA-512 part. (Its rounds=10 vector
# is left out: the spec raises rounds below 1000 to 1000, libxcrypt refuses them, and so do we.)
SPEC_VECTORS = [
    ("$6$saltstring", "Hello world!",
     "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"),
    ("$6$rounds=10000$saltstringsaltstring", "Hello world!",
     "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/"
     "YTBmSK6H9qs/y3RnOaw5v."),
    ("$6$rounds=5000$toolongsaltstring", "This is just a test",
     "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/"
     "e1JSbq3y6JMxxl8audkUEm0"),
]


@pytest.mark.parametrize("spec, password, expected", SPEC_VECTORS)
def test_sha512_crypt_published_vectors(spec, password, expected):
    assert passwd.sha512_crypt(password, spec) == expected


# Lengths around the 64-byte digest size and the 16-byte salt limit; non-ASCII passwords.
PASSWORDS = ["", "a", "pw", "x" * 63, "y" * 64, "z" * 65, "p" * 130, "pässwörd ☃", "with space\tand tab"]
SALTS = ["$6$a", "$6$abcdefgh", "$6$0123456789abcdef", "$6$0123456789abcdefEXTRA", "$6$rounds=1234$s./Q",
         "$6$rounds=5000$x"]


@pytest.mark.skipif(libcrypt is None, reason="this interpreter has no crypt module to compare with")
@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("spec", SALTS)
def test_sha512_crypt_equals_libxcrypt(password, spec):
    assert passwd.sha512_crypt(password, spec) == libcrypt.crypt(password, spec)


@pytest.mark.parametrize("bad", ["$5$salt", "$1$salt", "$y$j9T$salt", "salt", "$6$rounds=x$salt", "$6$rounds=10$low",
                                 "$6$rounds=1000000000$high", "$6$a:b", "$6$a\nb"])
def test_sha512_crypt_refuses_other_methods_and_bad_salts(bad):
    with pytest.raises(ValueError):
        passwd.sha512_crypt("pw", bad)


@pytest.fixture
def no_crypt_module(monkeypatch):
    """The interpreter of a Debian 13 host: ``import crypt`` raises ImportError."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "crypt":
            raise ImportError("No module named 'crypt'")
        return real_import(name, *args, **kwargs)
    monkeypatch.delitem(sys.modules, "crypt", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(setup, "_CRYPT", None)   # images_setup_io imports crypt once, at its own import


def test_root_password_without_crypt_module_and_without_openssl(no_crypt_module):
    """Regression: a host with Python 3.13 (no crypt) and no openssl binary could not hash root_password."""
    module = FakeModule(missing={"openssl"})
    crypted = setup.hash_password(module, "s3cret", "6", "abcdefgh")
    assert crypted == SPEC_SALTED_S3CRET
    assert setup.password_matches(module, "s3cret", crypted)
    assert not setup.password_matches(module, "other", crypted)
    assert not any("openssl" in " ".join(call) for call in module.calls)


# libxcrypt: Python 3.11's crypt.crypt("s3cret", "$6$abcdefgh$").
SPEC_SALTED_S3CRET = "$6$abcdefgh$Z7KfoKnKTSZrzo5VZ0YubGLQOj9ov6sHo9TmE3zIU/LHKhpE30zCnZ0mcIXYf9r9rQ4DYaXoxAFSPFlcWdxjB."


@pytest.mark.parametrize("crypted", [
    "$6$rounds=7000$abcdefgh$",            # rounds= form: recomputed with its rounds
    "$5$abcdefgh$",                        # sha256-crypt: no pure fallback, no openssl -> not verifiable
    "$1$abcdefgh$",
    "$y$j9T$abcdefgh$",                    # yescrypt (Debian's default): not verifiable without libxcrypt
    "*", "!", "", None,
])
def test_password_matches_without_crypt_never_raises(no_crypt_module, crypted):
    """A hash we cannot recompute is "does not match" (the step then writes a $6$ one), never an error."""
    module = FakeModule(missing={"openssl"})
    assert not setup.password_matches(module, "s3cret", crypted)


def test_rounds_hash_is_verified_without_crypt(no_crypt_module):
    module = FakeModule(missing={"openssl"})
    crypted = passwd.sha512_crypt("s3cret", "$6$rounds=7000$abcdefgh")
    assert crypted.startswith("$6$rounds=7000$abcdefgh$")
    assert setup.password_matches(module, "s3cret", crypted)


def test_new_hash_without_crypt_uses_random_salt(no_crypt_module):
    module = FakeModule(missing={"openssl"})
    first, second = setup.hash_password(module, "s3cret"), setup.hash_password(module, "s3cret")
    assert first.startswith("$6$") and len(first.split("$")[2]) == 16 and first != second
    assert setup.password_matches(module, "s3cret", first) and setup.password_matches(module, "s3cret", second)
