# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""plan.Plan: the common result shape of every resource's plan()."""

from dataclasses import dataclass, field
from typing import List

from ansible_collections.corral.nspawn.plugins.module_utils.plan import Plan


def test_empty_plan_is_unchanged():
    plan = Plan()
    assert (plan.changed, plan.changes, plan.diffs, plan.warnings, plan.actions) == (False, [], [], [], [])


def test_changes_or_actions_make_it_changed():
    assert Plan(changes=["write /x"]).changed
    assert Plan(actions=[("start", "u")]).changed
    assert not Plan(warnings=["careful"]).changed


def test_plans_do_not_share_lists():
    first, second = Plan(), Plan()
    first.changes.append("x")
    assert second.changes == []


def test_merge_keeps_order_and_returns_self():
    merged = Plan(changes=["a"], diffs=[{"before": "1"}]).merge(Plan(changes=["b"], warnings=["w"], actions=[1]))
    assert (merged.changes, merged.diffs, merged.warnings, merged.actions) == (["a", "b"], [{"before": "1"}], ["w"], [1])


def test_a_resource_subclasses_it_for_its_actions():
    @dataclass
    class FilePlan(Plan):
        writes: List[str] = field(default_factory=list)

        @property
        def changed(self) -> bool:
            return bool(self.writes) or super().changed

    assert FilePlan(writes=["/etc/x"]).changed
    assert not FilePlan().changed
