# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the Markdown guides in docs/ as the docsite's extra docs (docs/docsite/rst/*.rst).

The Markdown files are the one source. The RST copies are build output (ignored by git):
`make build`, `make docs` and `make docs-lint` write them before antsibull-docs or
ansible-galaxy read the collection, so the tarball and the docsite carry them.

    python docs/gen_docsite.py [COLLECTION_ROOT]   # writes COLLECTION_ROOT/docs/docsite/rst/

Needs pandoc (the pypandoc_binary wheel of requirements-dev.txt brings it).
"""

from __future__ import annotations

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABEL = "ansible_collections.corral.nspawn.docsite."
# Markdown guide -> docsite page name (extra-docs.yml lists the same names).
GUIDES = {
    "user-guide.md": "user_guide",
    "networking.md": "networking",
    "security.md": "security",
    "reliability.md": "reliability",
    "execution-environments.md": "execution_environments",
    "testing.md": "testing",
    "architecture.md": "architecture",
}
GENERATED = re.compile(r"<!-- BEGIN generated variables reference.*?<!-- END generated variables reference -->",
                       re.S)
ROLE_LINKS = ("The variables of each role are documented, from the same source (the role's"
              " `meta/argument_specs.yml`), in the role reference:\n\n"
              + "".join(f"- ROLELINK({role})\n" for role in ("host", "network", "fleet")))
DOC_LINK = re.compile(r"\]\(([a-z-]+)\.md(#[^)]*)?\)")


def markdown_for_site(text: str) -> str:
    """The guide as the site shows it: role tables replaced by links to the role reference."""
    text = GENERATED.sub(ROLE_LINKS, text)
    # A link to another guide points at its docsite page.
    return DOC_LINK.sub(lambda m: f"]({GUIDES.get(m.group(1) + '.md', m.group(1))}.html{m.group(2) or ''})", text)


def to_rst(markdown: str, name: str) -> str:
    import pypandoc  # pylint: disable=import-outside-toplevel
    body = pypandoc.convert_text(markdown_for_site(markdown), "rst", format="gfm-gfm_auto_identifiers",
                                 extra_args=["--wrap=preserve", "--columns=110"])
    body = re.sub(r"ROLELINK\((\w+)\)", r":ansplugin:`corral.nspawn.\1#role`", body)
    return f".. _{LABEL}{name}:\n\n..\n   Generated from docs/{source_of(name)} by docs/gen_docsite.py: edit the Markdown.\n\n{body}"


def source_of(name: str) -> str:
    return next(md for md, page in GUIDES.items() if page == name)


def main(argv) -> int:
    root = os.path.abspath(argv[0]) if argv else ROOT
    dest = os.path.join(root, "docs", "docsite", "rst")
    os.makedirs(dest, exist_ok=True)
    for md, name in GUIDES.items():
        with open(os.path.join(root, "docs", md), encoding="utf-8") as handle:
            rendered = to_rst(handle.read(), name)
        with open(os.path.join(dest, f"{name}.rst"), "w", encoding="utf-8") as handle:
            handle.write(rendered)
    print(f"{len(GUIDES)} guides rendered into {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
