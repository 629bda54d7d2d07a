# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 9 section 3: a secret written anywhere in the fleet's arguments is masked before it is logged.

The sub-specs of ``machines[].image``, ``defaults.image`` and ``templates[]`` are derived from the
image module's argument spec (one source), so its ``no_log`` flags apply there. The proof runs a real
``AnsibleModule`` with the fleet's argument spec: what it would log to the host journal
(``_log_invocation``) and the ``invocation`` it returns must not contain any secret.
"""

import json

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.corral.nspawn.plugins.module_utils import fleet, images

SECRETS = {
    "machine.root_password": "plainMachineS3cret",
    "machine.root_password_hash": "$6$machsalt$machineHashS3cret",
    "defaults.root_password": "plainDefaultsS3cret",
    "image.root_password": "plainImageS3cret",
    "image.root_password_hash": "$6$imgsalt$imageHashS3cret",
    "defaults.image.root_password_hash": "$6$dimgsalt$defaultsImageS3cret",
    "template.root_password": "plainTemplateS3cret",
    "template.root_password_hash": "$6$tmplsalt$templateHashS3cret",
}


def everywhere() -> dict:
    """Fleet arguments with each secret in every place it can be written."""
    return {
        "machines": [
            {"name": "a", "root_password": SECRETS["machine.root_password"]},
            {"name": "b", "root_password_hash": SECRETS["machine.root_password_hash"]},
            {"name": "c", "image": {"root_password": SECRETS["image.root_password"]}},
            {"name": "d", "image": {"root_password_hash": SECRETS["image.root_password_hash"]}},
        ],
        "defaults": {"root_password": SECRETS["defaults.root_password"],
                     "image": {"root_password_hash": SECRETS["defaults.image.root_password_hash"]}},
        "templates": [{"name": "t1", "source": "directory", "path": "/srv/t",
                       "root_password": SECRETS["template.root_password"]},
                      {"name": "t2", "source": "directory", "path": "/srv/t",
                       "root_password_hash": SECRETS["template.root_password_hash"]}],
    }


def test_image_suboptions_are_derived_from_the_image_spec():
    sub = fleet.image_suboptions()
    assert set(sub) == set(images.IMAGE_OPTION_SPEC) - set(fleet.IMAGE_FIXED_KEYS)
    for key, spec in sub.items():
        original = images.IMAGE_OPTION_SPEC[key]
        assert "default" not in spec and "required" not in spec, key  # unset keys inherit from defaults
        assert {k: v for k, v in original.items() if k not in ("default", "required")} == spec, key
    assert sub["root_password"]["no_log"] is True and sub["root_password_hash"]["no_log"] is True


def test_every_place_of_the_spec_has_the_secrets_no_log():
    spec = fleet.argument_spec()
    for where in (spec["machines"]["options"], spec["defaults"]["options"],
                  spec["machines"]["options"]["image"]["options"], spec["defaults"]["options"]["image"]["options"],
                  spec["templates"]["options"]):
        assert where["root_password"]["no_log"] is True and where["root_password_hash"]["no_log"] is True
    assert spec["templates"]["options"]["name"]["required"] is True


def test_a_new_image_option_reaches_the_fleet_without_a_second_copy(monkeypatch):
    monkeypatch.setitem(images.IMAGE_OPTION_SPEC, "api_token", dict(type="str", no_log=True))
    assert fleet.argument_spec()["templates"]["options"]["api_token"] == dict(type="str", no_log=True)


@pytest.fixture
def run_module(monkeypatch, capsys):
    """Build a real AnsibleModule from the fleet spec; capture what it logs and what fail_json prints."""
    logged = []
    monkeypatch.setattr(basic.AnsibleModule, "log", lambda self, msg, log_args=None: logged.append(msg))

    def _run(args):
        monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args})))
        monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)  # ansible-core 2.19+
        module = basic.AnsibleModule(argument_spec=fleet.argument_spec(), supports_check_mode=True)
        with pytest.raises(SystemExit):
            try:
                fleet.desired_machines(module.params["machines"], module.params["defaults"], module.params["templates"])
                module.fail_json(msg="accepted")
            except fleet.FleetError as exc:
                module.fail_json(msg=str(exc), **exc.details)
        return module, "\n".join(logged), capsys.readouterr().out
    return _run


def test_secrets_in_every_place_are_masked_in_the_log_and_the_invocation(run_module):
    """Regression: image/templates were free-form dicts; their secrets went to the journal and invocation."""
    module, logged, printed = run_module(everywhere())
    assert "Invoked with" in logged, "nothing was logged: the check below would prove nothing"
    assert set(SECRETS.values()) <= module.no_log_values
    for place, secret in SECRETS.items():
        assert secret not in logged, f"{place}: logged"
        assert secret not in printed, f"{place}: in the module's output"
    result = json.loads(printed)
    assert "invocation" in result and "give it as machines[].root_password" in result["msg"]


@pytest.mark.parametrize("args, message", [
    ({"machines": [{"name": "c", "image": {"root_password": "x1S3cret"}}]},
     "machines[c].image.root_password: give it as machines[].root_password"),
    ({"machines": [{"name": "c"}], "defaults": {"image": {"root_password_hash": "$6$s$x2S3cret"}}},
     "machines[c].image.root_password_hash: give it as machines[].root_password_hash"),
])
def test_a_secret_inside_image_is_refused_without_its_value(args, message):
    with pytest.raises(fleet.FleetError) as info:
        fleet.desired_machines(args["machines"], args.get("defaults", {}), [])
    assert message in str(info.value) and "S3cret" not in str(info.value)


def test_unset_image_suboptions_do_not_override_defaults():
    """A machine's image dict filled with None by the sub-spec inherits every unset key from defaults."""
    item = {"name": "a", "image": dict.fromkeys(fleet.image_suboptions(), None) | {"hostname": "h"}}
    machine = fleet.merge_machine({"image": {"authorized_keys": ["ssh-ed25519 AAAA k"], "force": True}}, item)
    assert machine.image["authorized_keys"] == ["ssh-ed25519 AAAA k"] and machine.image["force"] is True
    assert machine.image["hostname"] == "h"
