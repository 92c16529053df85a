"""`benchmarks/mutation_check.py` still aims at the code it means to break."""

import re
from pathlib import Path

import pytest

from benchmarks.mutation_check import MUTATIONS

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_every_mutation_matches_exactly_once(mutation):
    text = (REPO / mutation.path).read_text(encoding="utf-8")
    assert len(re.findall(mutation.pattern, text)) == 1, mutation.path
    for test in mutation.tests:
        assert (REPO / test).is_file(), test
