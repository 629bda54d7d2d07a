# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the collection tarball the way a release does and install it where a user would.

Shared by the packaging tests: the tree is copied (tracked and untracked-but-not-ignored
files, like tests/sanity/prepare.py) and seeded with the tool caches and IDE folders a
developer's checkout has, so build_ignore is tested against them, not against a clean tree.
"""

import glob
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.path.dirname(sys.executable)

# Paths a developer's checkout has that must never reach the tarball.
DECOYS = (
    ".ansible/tmp/x", ".mypy_cache/x.json", ".ruff_cache/x", ".pytest_cache/v/x",
    "tests/unit/.pytest_cache/v/x", "plugins/modules/__pycache__/x.pyc", ".idea/workspace.xml",
    ".vscode/settings.json", "changelogs/.plugin-cache.yaml", ".hypothesis/examples/x",
    ".venv/bin/python", ".collections/ansible_collections/x", "corral-nspawn-0.0.1.tar.gz",
    "docs/docsite/build/html/index.html", "tests/output/x",
)


def tool(name: str) -> str:
    return os.path.join(BIN, name)


def clean_env(**extra) -> dict:
    """The environment of a user's shell: no ANSIBLE_* setting of this checkout's test run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_NOCOLOR="1", PATH=BIN + os.pathsep + env.get("PATH", ""), **extra)
    return env


def run(argv, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=str(cwd), env=env or clean_env(), capture_output=True, text=True,
                          check=False, timeout=timeout)
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def copy_checkout(dest: str) -> str:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = os.path.join(ROOT, rel)
        if os.path.isfile(src) and not rel.startswith((".venv", ".collections/", ".build/")):
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, rel))
    for rel in DECOYS:
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        with open(os.path.join(dest, rel), "w", encoding="utf-8") as handle:
            handle.write("decoy\n")
    return dest


def build_and_install(workdir: str) -> dict:
    """Build the tarball from a seeded copy and install it into an empty collections path."""
    src = copy_checkout(os.path.join(workdir, "src"))
    # As `make build` does: the docsite's extra docs are rendered from docs/*.md into the tree.
    run([sys.executable, os.path.join(src, "docs", "gen_docsite.py"), src], cwd=workdir)
    out = os.path.join(workdir, "dist")
    run([tool("ansible-galaxy"), "collection", "build", "--output-path", out, src], cwd=workdir)
    tarball, = glob.glob(os.path.join(out, "corral-nspawn-*.tar.gz"))
    collections = os.path.join(workdir, "collections")
    env = clean_env(ANSIBLE_COLLECTIONS_PATH=collections)
    run([tool("ansible-galaxy"), "collection", "install", "-p", collections, tarball], cwd=workdir, env=env)
    installed = os.path.join(collections, "ansible_collections", "corral", "nspawn")
    assert os.path.isfile(os.path.join(installed, "MANIFEST.json")), os.listdir(collections)
    return {"tarball": tarball, "collections": collections, "installed": installed, "env": env}
