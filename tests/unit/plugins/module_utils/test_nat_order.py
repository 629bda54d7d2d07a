# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nat: the order of a run's actions (kernel ruleset before files, boot unit and sysctls),
route_localnet only while a loopback forward needs it, and values nft refuses caught by validation.

Regression tests for issue 10 "nat ordering and route_localnet".
"""

import pytest

from ansible_collections.corral.nspawn.plugins.module_utils import nat
from ansible_collections.corral.nspawn.tests.unit.plugins.module_utils.nat_fakes import fwd, params as plan_params

LOCALNET = "net.ipv4.conf.all.route_localnet"
MANAGED = [{"path": "/etc/systemd/network/50-corral-vz-web.network", "name": "vz-web",
            "addresses": ["10.88.10.1/24"]}]


# ---------------------------------------------------------------- the order (pure)

@pytest.mark.parametrize("present, sysctls, nft_needed, expected", [
    (True, {}, True, ["nft", "files", "unit", "sysctl"]),
    (True, {LOCALNET: "1"}, True, ["nft", "files", "unit", "sysctl"]),        # on only after the guard is in
    (True, {LOCALNET: "0"}, True, ["localnet-off", "nft", "files", "unit", "sysctl"]),  # off before it may go
    (True, {}, False, ["files", "unit", "sysctl"]),
    (False, {LOCALNET: "0"}, True, ["localnet-off", "nft", "unit", "files"]),
    (False, {}, True, ["nft", "unit", "files"]),
])
def test_steps_put_the_kernel_ruleset_before_files_unit_and_sysctls(present, sysctls, nft_needed, expected):
    assert nat.steps(present, sysctls, nft_needed) == expected


@pytest.mark.parametrize("settings, live, persisted, expected", [
    ({LOCALNET: "1"}, {LOCALNET: "0"}, None, {LOCALNET: "1"}),
    ({}, {LOCALNET: "1"}, f"{LOCALNET} = 1\n", {LOCALNET: "0"}),  # ours (our file set it): back to 0
    ({}, {LOCALNET: "1"}, "net.ipv4.ip_forward = 1\n", {}),       # not ours: left alone
    ({}, {LOCALNET: "1"}, None, {}),
    ({}, {LOCALNET: "0"}, f"{LOCALNET} = 1\n", {}),               # already back (a crash after the switch)
])
def test_sysctl_plan_sets_route_localnet_back_only_when_corral_set_it(settings, live, persisted, expected):
    assert nat.sysctl_plan(settings, live, persisted) == expected


# ---------------------------------------------------------------- values nft refuses

@pytest.mark.parametrize("kw, fragment", [
    ({"uplinks": ["*"]}, "uplinks: a bare '*' matches every interface"),
    ({"links": ["*"]}, "links: a bare '*' matches every interface"),
    ({"links": ['a"b']}, "links: 'a\"b' contains '\"'"),
    ({"uplinks": ["@up*"]}, "uplinks: '@up*' starts with '@', which nft reads as a set reference"),
    ({"forwards": [fwd(host_port=True)]}, "forwards[0].host_port: True is not a port"),
    ({"forwards": [fwd(port=False)]}, "forwards[0].port: False is not a port"),
    ({"table": "corral\n"}, "table: 'corral\\n' contains a line break"),
    ({"table": "cor\x1bral"}, "table: 'cor\\x1bral' contains the control character"),
])
def test_values_nft_refuses_are_validation_errors(kw, fragment):
    result = nat.plan(plan_params(**kw), MANAGED)
    assert any(fragment in e for e in result.errors), result.errors
