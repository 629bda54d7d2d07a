"""The harness's rhythm and result checks: a failed run never passes as "no change"."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "e2e"))

import harness  # noqa: E402  pylint: disable=wrong-import-position

OK = [{"changed": True}, {"changed": True}, {"changed": False}, {"changed": False}]
# What Ansible registers for a task that failed under ignore_errors: changed is false.
FAILED = {"changed": False, "failed": True, "msg": "boom"}


def runner(results):
    calls = iter(results)
    return lambda check: dict(next(calls))


def test_rhythm_passes_a_good_sequence():
    assert [r["changed"] for r in harness.rhythm(runner(OK))] == [True, True, False, False]


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_a_failed_run_fails_the_rhythm_where_the_old_check_passed(index):
    results = list(OK)
    results[index] = dict(FAILED, changed=OK[index]["changed"])
    if index >= 2:
        # the check the e2e files used before: reads changed only, and passes
        assert [r["changed"] for r in results] == [True, True, False, False]
    with pytest.raises(AssertionError, match=rf"run {index + 1}/4 .*failed: boom"):
        harness.rhythm(runner(results))


@pytest.mark.parametrize("bad, word", [({"changed": False, "unreachable": True}, "unreachable"),
                                       ({"changed": False, "skipped": True}, "skipped"),
                                       ({"changed": False, "rc": 2}, "rc=2"),
                                       ({"msg": "no changed key"}, "no boolean 'changed'")])
def test_succeeded_names_the_problem(bad, word):
    with pytest.raises(AssertionError, match=word):
        harness.succeeded(bad, "x")


def test_succeeded_returns_the_result():
    assert harness.succeeded({"changed": False, "rc": 0}) == {"changed": False, "rc": 0}


def test_check_mode_run_that_changes_the_fingerprint_fails():
    state = {"files": 0}

    def run(check):
        state["files"] += 1  # every run "writes", check mode included
        return {"changed": not check or state["files"] == 1}
    with pytest.raises(AssertionError, match=r"run 1/4 \(check\) changed the host:\n  files: 0 -> 1"):
        harness.rhythm(run, fingerprint=lambda: dict(state))


def test_idempotent_apply_that_touches_the_host_fails():
    state = {"mtime_ns": 1}
    results = iter(OK)

    def run(check):
        if not check:
            state["mtime_ns"] += 1
        return dict(next(results))
    with pytest.raises(AssertionError, match=r"run 4/4 \(apply\) changed the host"):
        harness.rhythm(run, fingerprint=lambda: dict(state))


def test_wrong_changed_sequence_is_reported():
    with pytest.raises(AssertionError, match=r"changed \[True, True, True, False\]"):
        harness.rhythm(runner([{"changed": True}] * 3 + [{"changed": False}]))


def test_bare_root_lacks_exactly_what_the_host_role_installs():
    role = set(harness.host_role_packages())
    assert {"systemd-container", "nftables", "python3-nftables", "python3-pyroute2", "debootstrap"} <= role
    bare = set(harness.bare_packages())
    assert not bare & role and bare | (role & set(harness.HOST_PACKAGES)) == set(harness.HOST_PACKAGES)


def test_root_kinds_have_distinct_cache_keys():
    keys = {harness._key(kind, packages()) for kind, (packages, _prepare) in harness.ROOT_KINDS.items()}  # pylint: disable=protected-access
    assert len(keys) == len(harness.ROOT_KINDS)


def test_unknown_root_kind_is_a_clear_error():
    with pytest.raises(harness.HarnessError, match="use one of host, image, bare"):
        harness.cached_root("fat")


def test_boot_refuses_an_unknown_root_before_doing_anything():
    with pytest.raises(harness.HarnessError, match="test host root 'fat': use 'host' or 'bare'"):
        harness.boot("ok", root="fat")
