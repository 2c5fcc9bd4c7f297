"""The nudge rule's pure functions (decoding/verify.py), on plain lists: no model needed."""

from __future__ import annotations

from nudging.decoding.verify import Acceptance, accept, count_output, cut_to_budget, ids_until, nudger_keep


def test_accept_first_confident_boundary():
    assert accept([3, 7, 12], [False, True, True], 20, draft_eos=False) == Acceptance(7)
    assert accept([3, 7, 12], [True, False, False], 20, draft_eos=True) == Acceptance(3)


def test_accept_without_a_confident_boundary():
    assert accept([3, 7], [False, False], 20, draft_eos=False) == Acceptance(7)  # up to the last boundary
    assert accept([3, 7], [False, False], 20, draft_eos=True) == Acceptance(20, eos=True)  # whole draft, then stop
    assert accept([], [], 5, draft_eos=False) == Acceptance(5)  # no boundary (e.g. Chinese): whole draft
    assert accept([], [], 0, draft_eos=True) == Acceptance(0, eos=True)


def test_ids_until():
    ends = [2, None, 5, 5, 9]  # id 1 ends mid-character; id 3 adds no text
    assert ids_until(ends, 2) == 1
    assert ids_until(ends, 5) == 4  # the id that adds no text goes with the text before it
    assert ids_until(ends, 9) == 5
    assert ids_until(ends, 7) == 5  # no id ends there: all of them


def test_cut_to_budget():
    ends = [2, None, None, 5, 9]
    assert cut_to_budget(5, 9, ends, room=8) == (5, 9, False)
    assert cut_to_budget(5, 9, ends, room=4) == (4, 5, True)
    # the budget ends inside a character: keep only the whole characters before it
    assert cut_to_budget(5, 9, ends, room=3) == (1, 2, True)
    assert cut_to_budget(5, 9, [None, None, 3, 4, 9], room=2) == (0, 0, True)


def test_nudger_keep():
    ends = [3, None, 6, 10]
    assert nudger_keep(ends, 6, ends_in_eos=False) == 3
    assert nudger_keep(ends, 5, ends_in_eos=False) == 1  # id 2 ends past the accepted text
    assert nudger_keep(ends, 0, ends_in_eos=False) == 0
    assert nudger_keep(ends, 10, ends_in_eos=True) == 4


def test_count_output_counts_every_byte_piece():
    # base ids: "Hi" (own), a 3-byte CJK character from the nudger (3 ids, the last ends it), "!" (own)
    ends = [2, None, None, 3, 4]
    foreign = [False, True, True, True, False]
    assert count_output(ends, foreign, 4) == (2, 3)
    # a stop string cut the text after "Hi": only that id counts
    assert count_output(ends, foreign, 2) == (1, 0)
    # a character that straddles the cut counts whole (it started inside the text)
    assert count_output([2, None, 6], [False, False, False], 4) == (3, 0)


def test_count_output_counts_trailing_partial_character():
    # the budget ended two byte pieces into a character: they were generated and spent budget
    assert count_output([2, None, None], [False, False, False], 2) == (3, 0)
    assert count_output([2, None, None], [False, True, True], 2) == (1, 2)
    # ...unless a stop string cut the text before them
    assert count_output([2, 4, None], [False, False, False], 2) == (1, 0)
