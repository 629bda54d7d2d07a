# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared options are named, typed, defaulted and documented the same in every module (issue 13).

Reads each module's real argument spec (its ``main()`` runs until ``AnsibleModule`` is built) and its
DOCUMENTATION with the doc fragments it extends. Fails when a module grows its own name for one of the
shared locations (a ``path`` for the settings file, a ``dropin_dir``, ...), a default of its own, or
its own wording instead of the ``corral.nspawn.shared`` sub-fragment.
"""

import importlib
import os
import re

import pytest
import yaml
from ansible.module_utils import basic

from ansible_collections.corral.nspawn.plugins.doc_fragments.shared import ModuleDocFragment as Shared
from ansible_collections.corral.nspawn.plugins.module_utils import shared

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MODULES = sorted(n[:-3] for n in os.listdir(os.path.join(ROOT, "plugins", "modules"))
                 if n.endswith(".py") and not n.startswith("_"))
FRAGMENT_OF = {"machines_dir": "machines_dir", "settings_dir": "settings_dir", "units_dir": "units_dir",
               "wait": "wait", "timeout": "wait"}
# A name that says "a location" (what must be one of the shared names when it is one of their kinds).
LOCATION = re.compile(r"(^|_)(path|paths|dir|dirs|directory|directories|dropin|dropins|folder)(_|$)")
# Locations that are not of a shared kind: inputs the user points at, each with the reason.
OTHER_LOCATIONS = {
    ("image", "path"): "the file or directory a root is imported or copied from (source=tar/raw/directory)",
    ("image", "keyring"): "a keyring file given to debootstrap",
    ("image", "mkosi_directory"): "the mkosi configuration directory of source=mkosi",
    ("settings", "working_directory"): "a directory inside the container (WorkingDirectory=)",
    ("host_prepare", "sysctl_file"): "the host's own sysctl.d file (forwarding), no machine location",
}
# The fleet takes the image module's options (derived from its spec) for machines and templates.
TAKES_OPTIONS_OF = {"fleet": ("fleet", "image", "settings")}
# A timeout without a wait switch: the module's own wait, not the container boot wait.
OWN_TIMEOUT = {"bridge": "systemd-networkd bringing the link up", "zone": "systemd-networkd bringing the link up"}


class Captured(Exception):
    pass


def module_args(name, monkeypatch):
    """(argument_spec, other AnsibleModule keywords) exactly as the module builds them."""
    seen = {}

    def capture(self, argument_spec, **kwargs):
        seen.update(spec=argument_spec, kwargs=kwargs)
        raise Captured()

    monkeypatch.setattr(basic.AnsibleModule, "__init__", capture)
    with pytest.raises(Captured):
        importlib.import_module(f"ansible_collections.corral.nspawn.plugins.modules.{name}").main()
    return seen["spec"], seen["kwargs"]


def walk(spec, prefix=""):
    for option, data in spec.items():
        yield prefix + option, option, data
        yield from walk(data.get("options") or {}, f"{prefix}{option}.")


def fragment(slug):
    module = importlib.import_module(f"ansible_collections.corral.nspawn.plugins.doc_fragments.{slug.split('.')[2]}")
    var = slug.split(".")[3].upper() if slug.count(".") == 3 else "DOCUMENTATION"
    return yaml.safe_load(getattr(module.ModuleDocFragment, var))


def documentation(name):
    """(the module's own DOCUMENTATION, the option docs after its fragments are merged in)."""
    module = importlib.import_module(f"ansible_collections.corral.nspawn.plugins.modules.{name}")
    own = yaml.safe_load(module.DOCUMENTATION)
    options = dict(own.get("options") or {})
    for slug in own.get("extends_documentation_fragment") or []:
        for option, doc in (fragment(slug).get("options") or {}).items():
            options.setdefault(option, doc)  # as ansible-doc merges: the module's own entry wins
    return own, options


@pytest.mark.parametrize("name", MODULES)
def test_shared_options_have_the_shared_spec(name, monkeypatch):
    spec, _kwargs = module_args(name, monkeypatch)
    for option in set(spec) & set(shared.SPECS):
        if option == "timeout" and "wait" not in spec:
            assert name in OWN_TIMEOUT, f"{name}: a timeout without wait; use shared.spec('wait', 'timeout')"
            assert spec[option]["type"] == "int"
            continue
        assert spec[option] == shared.SPECS[option], f"{name}.{option}: {spec[option]} != {shared.SPECS[option]}"
    assert ("wait" in spec) == ("timeout" in spec and name not in OWN_TIMEOUT), name


def check_locations(name, spec):
    """Every option that names a location is a shared one, a deprecated old name, or a known other kind."""
    for where, option, data in walk(spec):
        if option in shared.SPECS or not (LOCATION.search(option) or data.get("type") == "path"):
            continue
        if data.get("removed_in_version"):
            continue  # a deprecated old name, kept working until it is removed (settings.path)
        assert any((other, option) in OTHER_LOCATIONS for other in TAKES_OPTIONS_OF.get(name, (name,))), (
            f"{name}: option {where} names a location; if it is where machines, .nspawn files or unit drop-ins "
            f"live, use {', '.join(shared.DIRS)} (module_utils/shared.py), else add it to OTHER_LOCATIONS with why")


@pytest.mark.parametrize("name", MODULES)
def test_no_module_names_a_location_its_own_way(name, monkeypatch):
    spec, _kwargs = module_args(name, monkeypatch)
    check_locations(name, spec)


@pytest.mark.parametrize("name, option, kind", [("settings", "dropin_dir", "str"), ("resources", "path", "path"),
                                                ("machine", "nspawn_directory", "str"), ("zone", "config", "path"),
                                                ("settings", "path", "path")])
def test_the_rule_catches_a_module_that_grows_its_own_location(name, option, kind, monkeypatch):
    """The rule can fail: the real spec plus one such option (settings.path without its deprecation) is refused."""
    spec, _kwargs = module_args(name, monkeypatch)
    with pytest.raises(AssertionError, match=f"option {option} names a location"):
        check_locations(name, dict(spec, **{option: dict(type=kind)}))


@pytest.mark.parametrize("name", MODULES)
def test_shared_options_are_documented_by_the_shared_fragment(name, monkeypatch):
    spec, _kwargs = module_args(name, monkeypatch)
    own, options = documentation(name)
    for option in set(spec) & set(shared.SPECS):
        if option == "timeout" and name in OWN_TIMEOUT:
            continue
        assert option not in (own.get("options") or {}), f"{name}: {option} documented in the module itself"
        assert f"corral.nspawn.shared.{FRAGMENT_OF[option]}" in own["extends_documentation_fragment"], name
        assert options[option]["default"] == shared.SPECS[option]["default"]
        assert options[option]["type"] == shared.SPECS[option]["type"]


def test_the_fragment_mirrors_the_specs():
    documented = {}
    for var in ("MACHINES_DIR", "SETTINGS_DIR", "UNITS_DIR", "WAIT"):
        documented.update(yaml.safe_load(getattr(Shared, var))["options"])
    assert sorted(documented) == sorted(shared.SPECS)
    for option, doc in documented.items():
        assert (doc["type"], doc["default"]) == (shared.SPECS[option]["type"], shared.SPECS[option]["default"])


def test_settings_path_is_deprecated_until_the_next_major(monkeypatch):
    spec, kwargs = module_args("settings", monkeypatch)
    with open(os.path.join(ROOT, "galaxy.yml"), encoding="utf-8") as handle:
        version = yaml.safe_load(handle)["version"]
    assert spec["path"]["removed_in_version"] == f"{int(version.split('.')[0]) + 1}.0.0"
    assert spec["path"]["removed_from_collection"] == "corral.nspawn"
    assert ("path", "settings_dir") in [tuple(group) for group in kwargs["mutually_exclusive"]]
    _own, options = documentation("settings")
    assert options["path"]["description"][0].startswith(f"Deprecated, will be removed in corral.nspawn "
                                                        f"{spec['path']['removed_in_version']}. Use O(settings_dir)")
