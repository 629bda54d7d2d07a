"""Prepare an ``ansible-test sanity`` run that needs no outside host.

1. Copy the collection's files (tracked and untracked-but-not-ignored) into
   DEST, which ends in ``ansible_collections/corral/nspawn``, as a git work tree.
2. Place a stand-in for ansible-test's get-pip bootstrap in CACHE: it bootstraps
   pip with ``ensurepip`` and installs the pinned packages from the registry.
"""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STANDIN = '''#!/usr/bin/env python3
"""Stand-in for get-pip.py written by corral.nspawn tests/sanity/prepare.py."""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
'''


def pip_versions():
    """pip versions ansible-test may bootstrap, read from its own source."""
    import re
    from ansible_test._internal import python_requirements as reqs
    with open(reqs.__file__, encoding="utf-8") as handle:
        return set(re.findall(r"pip='([0-9.]+)'", handle.read()))


def copy_tree(dest):
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    for rel in filter(None, files):
        src = os.path.join(ROOT, rel)
        if not os.path.isfile(src) or rel.startswith((".venv/", ".collections/", ".build/")):
            continue
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(src, target)
    git = ["git", "-c", "user.name=sanity", "-c", "user.email=sanity@invalid"]
    subprocess.run(git + ["init", "-q"], cwd=dest, check=True)
    subprocess.run(git + ["add", "-A"], cwd=dest, check=True)
    subprocess.run(git + ["commit", "-qm", "sanity snapshot"], cwd=dest, check=True)


def main():
    dest, cache = sys.argv[1], sys.argv[2]
    if not dest.rstrip("/").endswith("ansible_collections/corral/nspawn"):
        sys.exit(f"destination must end in ansible_collections/corral/nspawn: {dest}")
    copy_tree(dest)
    os.makedirs(cache, exist_ok=True)
    for version in pip_versions() or {"0"}:
        path = os.path.join(cache, f"get_pip_{version.replace('.', '_')}.py")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(STANDIN)
    print(f"sanity tree ready at {dest}")


if __name__ == "__main__":
    main()
