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


def test_each_suite_has_its_own_cache_keys_and_bookworms_did_not_change():
    keys = {harness._key("host", harness.HOST_PACKAGES, suite) for suite in harness.SUITES}  # pylint: disable=protected-access
    assert len(keys) == len(harness.SUITES) and all(f"-{s}-" in " ".join(keys) for s in harness.SUITES)
    # the default argument keeps the bookworm roots already cached on machines valid
    assert harness._key("host", harness.HOST_PACKAGES) == harness._key("host", harness.HOST_PACKAGES, "bookworm")  # pylint: disable=protected-access


@pytest.mark.parametrize("call", [
    lambda: harness.cached_root("host", "sid"),
    lambda: harness.container_images("sid"),
    lambda: harness.boot("ok", suite="sid"),
    lambda: harness.boot("ok", images=("bookworm", "sid")),
    lambda: harness.image_path("sid"),
])
def test_unknown_suite_is_refused_before_doing_anything(call):
    with pytest.raises(harness.HarnessError, match="suite 'sid': use one of bookworm, trixie"):
        call()


def test_bare_root_exists_for_the_default_suite_only():
    with pytest.raises(harness.HarnessError, match="root kind 'bare' exists for bookworm only"):
        harness.cached_root("bare", "trixie")


@pytest.mark.parametrize("suite, tar, path", [
    ("bookworm", False, "/srv/corral/images/debian12"),
    ("bookworm", True, "/srv/corral/images/debian12.tar"),
    ("trixie", False, "/srv/corral/images-trixie/debian13"),
    ("trixie", True, "/srv/corral/images-trixie/debian13.tar"),
])
def test_image_paths_per_suite(suite, tar, path):
    assert harness.image_path(suite, tar=tar) == path


def test_cli_takes_a_suite():
    with pytest.raises(SystemExit):
        harness.main(["up", "--suite", "sid", "x"])
