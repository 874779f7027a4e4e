"""The disjoint-seed check's rule: only a call each way on one claim is a contradiction."""

import pytest

from benchmarks.disjoint_seeds import calls, consistent
from repsim.claims import tally_words


@pytest.mark.parametrize("words, expected", [
    (["agrees", "agrees"], (2, 0, 0)),
    (["agrees", "too close to call"], (1, 0, 1)),
    (["agrees", "does not agree", "too close to call"], (1, 1, 1)),
    (["does not agree", "too close to call"], (0, 1, 1)),
    (["too close to call"], (0, 0, 1)),
    (["does not agree", "does not agree"], (0, 2, 0)),
])
def test_calls_reads_back_what_claims_wrote(words, expected):
    assert calls(tally_words(words)) == expected
    assert calls(tally_words(words, one_seed=True)) == expected


@pytest.mark.parametrize("published, disjoint, expected", [
    ("agrees (2 of 2)", "agrees only in part (1 of 2; 1 too close to call)", "too close to call on one side"),
    ("agrees (2 of 2)", "agrees only in part (1 of 2; 1 against)", "different"),
    ("agrees", "too close to call", "too close to call on one side"),
    ("agrees", "does not agree", "different"),
    ("agrees (3 of 3)", "agrees (3 of 3)", "same"),
    ("agrees only in part (1 of 3; 2 against)", "agrees only in part (1 of 3; 2 against)", "same"),
    ("agrees only in part (1 of 3; 2 against)", "agrees only in part (2 of 3; 1 against)", "different"),
    ("does not agree (0 of 2; 1 too close to call)", "too close to call (2 of 2)", "too close to call on one side"),
    ("agrees only in part (2 of 3)", "agrees (3 of 3)", "different"),  # claims.tally: the third held on one side only
    ("not measurable", "agrees", "different"),
    ("6 of 21 residual networks with a block", "4 of 21 residual networks with a block", "a count, not called"),
    ("agrees", None, "missing"),
])
def test_only_a_call_each_way_contradicts(published, disjoint, expected):
    assert consistent(published, disjoint) == expected
