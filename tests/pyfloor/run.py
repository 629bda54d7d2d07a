# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prove the managed-host Python range (tests/config.yml: 3.9+) on real interpreters.

Debian 11 ships Python 3.9 (the floor), Debian 13 ships 3.13 (the newest, without `crypt`).
For each, a minbase root with python3 and PyYAML is debootstrapped once from
the mirror this machine's apt uses (harness.apt_mirror()) and cached under the harness's cache
directory. Inside it (systemd-nspawn, no network, the checkout bound read-only at its own path, so
its .collections link resolves):

1. every file of plugins/modules and plugins/module_utils compiles;
2. the unit tests of the pure module_utils (PURE_TESTS) pass, against the ansible-core
   module_utils that AnsiballZ would ship to the host (copied from the controller's ansible-core).

    python tests/pyfloor/run.py bullseye trixie
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import harness  # noqa: E402  pylint: disable=wrong-import-position

SUITES = {"bullseye": "3.9", "trixie": "3.13"}
PACKAGES = ("python3", "python3-yaml")
REVISION = "v1"
# Unit tests of module_utils that need no controller-side code (no AnsibleModule run, no ansible
# plugins): what runs on a managed host.
PURE_TESTS = (
    "test_unitfile.py", "test_unitfile_lines.py", "test_values.py", "test_schema.py", "test_names.py",
    "test_nspawn_settings.py", "test_networkd.py", "test_nft.py", "test_resources_io.py", "test_rootfs.py",
    "test_passwd.py", "test_netmodel.py", "test_machine.py", "test_hostprep.py", "test_network_prune.py",
    "test_images_setup.py", "test_fleet_plan.py",
)


def root(suite: str) -> str:
    key = hashlib.sha256("\n".join((suite, REVISION) + PACKAGES).encode()).hexdigest()[:12]
    path = os.path.join(harness.CACHE_DIR, "pyfloor", f"{suite}-{key}")
    with harness._lock(f"pyfloor-{suite}"):  # pylint: disable=protected-access
        if os.path.isfile(os.path.join(path, "usr", "bin", "python3")):
            return path
        staging = path + ".staging"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        harness.log(f"debootstrap {suite} minbase with {', '.join(PACKAGES)} (cold build, ~1-2 min)")
        harness.sh(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", suite, staging,
                    harness.apt_mirror()], timeout=900)
        shutil.rmtree(path, ignore_errors=True)
        os.rename(staging, path)
        return path


def test_tools(suite: str) -> str:
    """pytest and hypothesis at the pins of tests/requirements-units.txt, as pure-Python wheels for
    the suite's Python (the distribution's own pytest is older), cached next to the root."""
    with open(os.path.join(ROOT, "tests", "requirements-units.txt"), encoding="utf-8") as handle:
        pins = sorted(line.strip() for line in handle if line.startswith(("pytest==", "hypothesis==")))
    # pip evaluates markers with the running Python: name the backports older Pythons need.
    wanted = pins + ["exceptiongroup", "tomli"]
    key = hashlib.sha256("\n".join([SUITES[suite]] + wanted).encode()).hexdigest()[:12]
    path = os.path.join(harness.CACHE_DIR, "pyfloor", f"lib-{SUITES[suite]}-{key}")
    with harness._lock(f"pyfloor-lib-{suite}"):  # pylint: disable=protected-access
        if not os.path.isdir(path):
            staging = path + ".staging"
            shutil.rmtree(staging, ignore_errors=True)
            harness.sh([sys.executable, "-m", "pip", "install", "-q", "--target", staging, "--python-version",
                        SUITES[suite], "--only-binary=:all:", "--no-compile", *wanted], timeout=600)
            os.rename(staging, path)
    return path


def module_utils_copy(dest: str) -> str:
    """ansible/module_utils of the controller's ansible-core: what AnsiballZ ships to a host."""
    import ansible  # pylint: disable=import-outside-toplevel
    src = os.path.dirname(ansible.__file__)
    pkg = os.path.join(dest, "ansible")
    shutil.copytree(os.path.join(src, "module_utils"), os.path.join(pkg, "module_utils"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(pkg, "__init__.py"), "w", encoding="utf-8") as handle:
        handle.write("")  # the controller's ansible/__init__.py imports controller-only code
    with open(os.path.join(dest, "pyfloor_profile.py"), "w", encoding="utf-8") as handle:
        handle.write(PROFILE)
    return dest


# compile() every module and module_utils file (the checkout is read-only: no .pyc written).
COMPILE = f"""
import glob
files = sorted(glob.glob('{ROOT}/plugins/modules/*.py') + glob.glob('{ROOT}/plugins/module_utils/*.py'))
for path in files:
    with open(path, encoding='utf-8') as handle:
        compile(handle.read(), path, 'exec')
print(f'compile: {{len(files)}} files ok')
"""


# This run checks the Python version, not the properties (the main suite explores those): fewer
# examples, no deadline or too-slow health check, which a loaded 2-core machine trips.
PROFILE = """
from hypothesis import HealthCheck, settings
settings.register_profile("pyfloor", max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
"""


def tests_for():
    base = os.path.join(ROOT, "tests", "unit", "plugins", "module_utils")
    return [f"{ROOT}/tests/unit/plugins/module_utils/{name}" for name in PURE_TESTS
            if os.path.exists(os.path.join(base, name))]


def run(suite: str) -> int:
    path, tools = root(suite), test_tools(suite)
    with tempfile.TemporaryDirectory(prefix="corral-pyfloor-") as tmp:
        libs = module_utils_copy(os.path.join(tmp, "lib"))
        script = ("set -e; python3 --version; python3 -c \"$COMPILE\"; "
                  f"python3 -m pytest -q -c {ROOT}/pytest.ini --rootdir {ROOT} -p pyfloor_profile "
                  "--hypothesis-profile=pyfloor " + " ".join(tests_for()))
        argv = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--private-users=no", "--console=pipe",
                "--private-network", "-D", path,
                f"--bind-ro={ROOT}", f"--bind-ro={libs}:/opt/ansible-lib", f"--bind-ro={tools}:/opt/test-tools",
                "-E", f"COMPILE={COMPILE}",
                "-E", "PYTHONPATH=/opt/ansible-lib:/opt/test-tools", "-E", "PYTHONDONTWRITEBYTECODE=1",
                "-E", "HYPOTHESIS_STORAGE_DIRECTORY=/tmp/hypothesis",
                "--chdir=/tmp", "/bin/sh", "-c", script]
        done = subprocess.run(argv, check=False, timeout=900)
        return done.returncode


def main(argv) -> int:
    suites = argv or list(SUITES)
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        print(f"pyfloor: unknown suite(s) {', '.join(unknown)}: use {', '.join(SUITES)}")
        return 2
    failed = [suite for suite in suites if run(suite) != 0]
    if failed:
        print(f"pyfloor: failed on {', '.join(failed)}")
        return 1
    print(f"pyfloor: ok on {', '.join(f'{s} (Python {SUITES[s]})' for s in suites)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
