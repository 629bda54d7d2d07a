"""Make the checkout importable as ``ansible_collections.corral.nspawn`` for pytest.

The collection is exposed through a symlink in ``.collections`` (created by
``make collection`` too), so unit tests import exactly the files in this checkout.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "corral", "nspawn")

if not os.path.islink(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(ROOT, LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
