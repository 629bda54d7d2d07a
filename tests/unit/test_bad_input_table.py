# Copyright (c) corral.nspawn contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/reliability.md's table of refused values is what the code says today (see gen_bad_input_table.py)."""

import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))
_SPEC = importlib.util.spec_from_file_location("corral_gen_bad_input_table", os.path.join(HERE, "gen_bad_input_table.py"))
gen = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(gen)


def test_every_source_test_exists_and_has_cases():
    for source in gen.SOURCES:
        module = gen.load_test_module(source.test_file)
        assert list(gen.cases(module, source.test_name)), f"{source.test_file}::{source.test_name} has no cases"


def test_every_case_is_refused():
    """A case the code accepts would document '(accepted...)' as a refusal."""
    for source in gen.SOURCES:
        module = gen.load_test_module(source.test_file)
        for case in gen.cases(module, source.test_name):
            assert not source.call(module, case)[0].startswith("(accepted"), (source.test_name, case)


def test_the_doc_section_matches_the_generator():
    with open(gen.DOC, encoding="utf-8") as handle:
        doc = handle.read()
    assert gen.START in doc and gen.END in doc, f"{gen.DOC}: bad-input markers missing"
    current = doc.split(gen.START, 1)[1].split(gen.END, 1)[0]
    assert current == "\n" + gen.render() + "\n", "docs/reliability.md bad-input table is out of date: run make bad-input-table"
