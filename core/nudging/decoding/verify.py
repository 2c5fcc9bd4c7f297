"""The nudge rule as pure functions on offsets and verdicts, so each can be read (and tested) alone.

A nudge round: the nudger drafts text; both tokenizations give candidate word boundaries; one base
forward gives a verdict (confident or not) at each. `accept` picks how much of the draft becomes the
nudge, `cut_to_budget` trims it to `max_new_tokens`, `nudger_keep` says which of the nudger's own
draft ids survive, and `count_output` attributes the answer's base-view ids to their writers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Acceptance:
    """How much of a draft becomes the nudge: `end` characters; `eos`: the draft's EOS ends generation."""

    end: int
    eos: bool = False


def accept(bounds: Sequence[int], confident: Sequence[bool], text_len: int, draft_eos: bool) -> Acceptance:
    """The nudge ends at the first word boundary where the base is confident again. Where it never
    is: a draft that ended in EOS is taken whole and ends generation; otherwise the draft up to its
    last boundary (the word after it may still grow), or the whole draft when it has none."""
    hit = next((b for b, ok in zip(bounds, confident) if ok), None)
    if hit is not None:
        return Acceptance(hit)
    if draft_eos:
        return Acceptance(text_len, eos=True)
    return Acceptance(bounds[-1] if bounds else text_len)


def ids_until(ends: Sequence[int | None], offset: int) -> int:
    """How many ids of a tokenization (`ends[i]`: where id i ends, None mid-character) cover
    text[:offset] (ids that add no text there included); all of them when none ends there."""
    return max((i + 1 for i, e in enumerate(ends) if e == offset), default=len(ends))


def cut_to_budget(n_ids: int, end: int, ends: Sequence[int | None], room: int) -> tuple[int, int, bool]:
    """`max_new_tokens` counts base-view ids: a nudge of `n_ids` ids (ending at character `end`) that
    does not fit in `room` keeps the ids that fit up to the last whole character. Returns
    (ids kept, characters kept, whether it was cut)."""
    if n_ids <= room:
        return n_ids, end, False
    last = next((i for i in range(room - 1, -1, -1) if ends[i] is not None), -1)
    return last + 1, (ends[last] if last >= 0 else 0), True  # type: ignore[return-value]


def nudger_keep(ends: Sequence[int | None], end: int, ends_in_eos: bool) -> int:
    """The nudger's own draft ids inside the accepted text (all of them when the whole draft,
    EOS included, was accepted); the rest are cropped from its cache."""
    if ends_in_eos:
        return len(ends)
    return max((i + 1 for i, e in enumerate(ends) if e is not None and e <= end), default=0)


def count_output(ends: Sequence[int | None], foreign: Sequence[bool], text_len: int) -> tuple[int, int]:
    """(base ids, nudger ids) of the answer: every base-view id of a character that starts inside
    the final text counts, the byte pieces before a character's last id included. Ids after the
    last whole character (a multi-byte character cut off by the budget) count too unless a stop
    string cut the text before them: they were generated and spent budget, though they carry no text."""
    base_n = nudger_n = 0
    start = 0  # where the current character group starts in T
    held = [0, 0]  # ids of the current group: [base, nudger]
    for end, is_foreign in zip(ends, foreign):
        held[is_foreign] += 1
        if end is None:
            continue
        if start < text_len:
            base_n, nudger_n = base_n + held[0], nudger_n + held[1]
        start, held = end, [0, 0]
    if start <= text_len:
        base_n, nudger_n = base_n + held[0], nudger_n + held[1]
    return base_n, nudger_n
