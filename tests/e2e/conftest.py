"""pytest fixtures for end-to-end tests on real, booted systemd test hosts.

``make_host("name")`` boots (or reuses within this session) a test host; every
host booted by this session is stopped and removed at the end, also when tests
fail or the run is interrupted. Leftovers of earlier crashed runs are removed at
the start. See tests/e2e/harness.py and docs/testing.md.
"""

import os
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope="session")
def _host_registry():
    harness.check_requirements()
    harness.ensure_collection_link()
    harness.clean()
    hosts = {}
    yield hosts
    harness.stop_many(hosts)


@pytest.fixture(scope="module", autouse=True)
def _stop_hosts_of_module(_host_registry):
    """Hosts booted by a test module are removed when it ends: few hosts live at once."""
    before = set(_host_registry)
    yield
    mine = sorted(set(_host_registry) - before)
    harness.stop_many(mine)
    for name in mine:
        del _host_registry[name]


@pytest.fixture(scope="session")
def make_host(_host_registry):
    """Factory: ``make_host(name)`` -> booted TestHost, shared across the session.

    ``make_host(name, root="bare")`` boots a host without the packages the host role installs
    (see harness.package_repo); ``make_host(name, suite="trixie")`` a Debian 13 host, which sees
    the container images of both generations (``images=`` picks others, see harness.boot)."""
    lock = threading.Lock()

    def _make(name: str, root: str = "host", suite: str = harness.SUITE, images=None) -> harness.TestHost:
        with lock:
            if name not in _host_registry:
                _host_registry[name] = harness.boot(name, root=root, suite=suite, images=images)
            return _host_registry[name]
    return _make


@pytest.fixture(scope="session")
def make_hosts(_host_registry):
    """Factory: ``make_hosts([names])`` boots several hosts concurrently; ``suite=`` (all of them) or
    ``suites={name: suite}`` (a mixed pair) pick the Debian release, ``images=`` the container images."""
    def _make(names, suite=harness.SUITE, images=None, suites=None):
        missing = [n for n in names if n not in _host_registry]
        for host in harness.boot_many(missing, suite=suite, images=images, suites=suites) if missing else []:
            _host_registry[host.name] = host
        return [_host_registry[n] for n in names]
    return _make
