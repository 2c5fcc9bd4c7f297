"""Drafting for the base's own stretches (DESIGN.md "Drafting ..."): the table learns only what the
view holds, drafting never changes a greedy output, and a sampled output keeps its distribution."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from nudging import Nudger, NudgingConfig
from nudging.decoding.drafting import Drafter, NgramTable

REPEATS = "Repeat after me: the cat sat on the mat, the cat sat on the mat, the cat sat on the mat, the cat"
PROMPTS = ["Give three tips for sleep.", REPEATS, [{"role": "user", "content": "Say hello, hello, hello, hello."}]]


# -- the table ------------------------------------------------------------------------------
def test_table_counts_the_view_and_proposes_from_it():
    d = Drafter(max_len=4, cost_per_id=0.01)
    assert d.propose([5, 1, 2, 3, 4, 9, 1, 2], room=4) == [3, 4, 9, 1]  # a path through the tri-grams
    assert d.table.next[(1, 2)] == {3: Drafter.LOCAL_WEIGHT}
    d = Drafter(max_len=3, cost_per_id=0.01)
    assert d.propose([7, 1, 2, 3, 8, 1, 2, 3], room=3) == [8, 1, 2]  # prompt lookup: a three-id match, copied
    assert d.propose([7, 1, 2, 3, 8, 1, 2, 3], room=1) == [8]


def _state(d: Drafter):
    return {k: dict(v) for k, v in d.table.next.items()}, {k: list(v) for k, v in d.where.items()}


def test_a_rejected_draft_never_enters_the_table():
    d = Drafter(max_len=4, cost_per_id=0.01)
    ids = [1, 2, 3, 4, 1, 2]
    assert d.propose(ids, room=4) == [3, 4, 1, 2]
    d.observe(ids + [7])  # the base wrote 7, not the drafted 3
    fresh = Drafter()
    fresh.observe(ids + [7])
    assert _state(d) == _state(fresh)  # the table holds the view's ids, nothing of the draft
    assert d.accepted == 0 and d.proposed == 4
    assert d.hits / d.tried < 0.5  # the rejection lowered the acceptance estimate
    assert d.edges[(1, 2, 3)] == [1.0, 0.0]  # and that edge's own record


def test_rollback_restores_the_table_exactly():
    d = Drafter()
    d.observe([1, 2, 3, 4])
    snapshot = _state(d)
    d.observe([1, 2, 3, 4, 5, 6, 3, 4])
    d.observe([1, 2, 3, 4, 9])  # the view was cut back to 4 ids, then took another
    d.rollback(4)
    assert _state(d) == snapshot
    assert d.ids == [1, 2, 3, 4]


def test_acceptance_sets_the_draft_length():
    d = Drafter(max_len=8, cost_per_id=0.07)
    d.hits, d.tried = 1, 20
    low = d.length()
    d.hits, d.tried = 19, 20
    assert d.length() > low
    d.cost_per_id = 1.0  # a position costs a whole forward: drafting cannot pay
    assert d.length() == 0


def test_corpus_table_backs_the_local_one(tmp_path):
    corpus = NgramTable("tok")
    corpus.fill([1, 2, 3, 4, 5])
    path = corpus.save(tmp_path / "t.pt")
    loaded = NgramTable.load(path)
    assert loaded.next == corpus.next and loaded.name == "tok"
    d = Drafter(loaded, max_len=3, cost_per_id=0.01)
    assert d.propose([9, 1, 2], room=3) == [3, 4, 5]
    assert Drafter(None, max_len=3, cost_per_id=0.01).propose([9, 1, 2], room=3) == []


# -- exactness on the tiny pairs -------------------------------------------------------------
def _same(a, b) -> None:
    assert a.text == b.text
    assert a.spans == b.spans
    assert a.stats.stop_reason == b.stats.stop_reason
    assert a.stats.output_tokens == b.stats.output_tokens


@pytest.mark.parametrize("gamma", [0.0, 0.4, 0.7])
def test_drafting_on_equals_off_greedy(pair: Nudger, gamma: float):
    """Budget cuts, stop strings and EOS, on both pairs; the cross pair's base is a Gemma3 with an
    8-token sliding window, exceeded in every run. Drafts must have been used, or this proves nothing."""
    used = 0
    for prompt in PROMPTS:
        for kw in ({"max_new_tokens": 60}, {"max_new_tokens": 7}, {"max_new_tokens": 60, "stop": (" the",)}, {"max_new_tokens": 60, "stop": ("\n",)}):
            on = pair.generate(prompt, gamma=gamma, **kw)
            off = pair.generate(prompt, gamma=gamma, drafter="off", **kw)
            _same(on, off)
            assert on.stats.base_forwards <= off.stats.base_forwards
            used += on.stats.draft_accepted_tokens
    if gamma == 0.0:
        assert used > 0


def test_a_draft_through_eos_changes_nothing(pair: Nudger, monkeypatch):
    """Drafts that hold the base's EOS (and ids after it) leave the output as drafting off does."""
    eos = min(pair.base.eos_ids)
    real = Drafter.propose

    def propose(self, ids, room):
        return (real(self, ids, room) + [eos, 5, 6])[: max(room, 0)]

    monkeypatch.setattr(Drafter, "propose", propose)
    for prompt in PROMPTS:
        _same(pair.generate(prompt, gamma=0.0, max_new_tokens=30), pair.generate(prompt, gamma=0.0, max_new_tokens=30, drafter="off"))


def test_batched_rows_with_drafting_equal_one_at_a_time(pair: Nudger):
    configs = [NudgingConfig(gamma=g, max_new_tokens=n) for g, n in ((0.0, 40), (0.4, 25), (0.0, 5), (0.7, 40))]
    prompts = [REPEATS, PROMPTS[0], REPEATS, PROMPTS[2]]
    batched = pair.generate_batch(prompts, configs)
    for p, c, b in zip(prompts, configs, batched):
        _same(b, pair.generate(p, c, drafter="off"))


# -- sampling: exact in distribution ----------------------------------------------------------
def _chi_square_p(a: Counter, b: Counter) -> float:
    """Two-sample chi-square test of homogeneity (categories seen < 5 times pooled); the p-value."""
    keys = [k for k in set(a) | set(b) if a[k] + b[k] >= 5]
    rows = [[a[k] for k in keys] + [sum(a.values()) - sum(a[k] for k in keys)], [b[k] for k in keys] + [sum(b.values()) - sum(b[k] for k in keys)]]
    obs = torch.tensor(rows, dtype=torch.float64)
    obs = obs[:, obs.sum(0) > 0]
    expected = obs.sum(1, keepdim=True) * obs.sum(0, keepdim=True) / obs.sum()
    stat = ((obs - expected) ** 2 / expected).sum()
    df = obs.shape[1] - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), stat / 2))


def _first_tokens(nudger: Nudger, seeds: range, k: int, **kw) -> tuple[Counter, int]:
    cfg = NudgingConfig(gamma=0.0, temperature=0.3, max_new_tokens=k, repetition_limit=0)  # peaked enough that starts repeat
    seen, used = Counter(), 0
    for s in seeds:
        res = nudger.generate(REPEATS, cfg, seed=s, **kw)
        seen[res.text] += 1
        used += res.stats.speculated_tokens  # base ids whose logits came from a draft (no nudger at γ 0)
    return seen, used


def test_sampling_with_drafts_keeps_the_distribution(pair: Nudger, monkeypatch):
    """First-3-token frequencies, drafting on vs off, disjoint fixed seeds: a chi-square test does
    not tell them apart. The drafter is made to propose the likeliest continuation so drafts are
    accepted often; the same test rejects a sampler that takes a drafted id without drawing."""
    k, n = 3, 150
    off, _ = _first_tokens(pair, range(n), k, drafter="off")
    top = off.most_common(1)[0][0]
    prompt = pair.prompt_ids(REPEATS)["base"]
    from nudging.text.view import View

    real_append, guess = View.append_own, []
    monkeypatch.setattr(View, "append_own", lambda view, token: (guess.append(token), real_append(view, token))[1])
    seed = next(s for s in range(n) if _first_tokens(pair, range(s, s + 1), k, drafter="off")[0][top])
    guess.clear()
    _first_tokens(pair, range(seed, seed + 1), k, drafter="off")  # the base ids of the likeliest start
    monkeypatch.setattr(View, "append_own", real_append)
    real = Drafter.propose

    def propose(self, ids, room):
        real(self, ids, room)
        done = len(ids) - len(prompt)
        return guess[done : done + max(room, 0)]

    monkeypatch.setattr(Drafter, "propose", propose)
    on, used = _first_tokens(pair, range(n, 2 * n), k)
    assert used > n // 4  # drafts were taken often
    assert _chi_square_p(on, off) > 1e-3

    # the test has power: a sampler that keeps drafted ids without drawing is caught
    def greedy_on_draft(view, token):
        if view.ahead_ids:
            token = view.ahead_ids[0]
        return real_append(view, token)

    monkeypatch.setattr(View, "append_own", greedy_on_draft)
    biased, _ = _first_tokens(pair, range(2 * n, 3 * n), k)
    assert _chi_square_p(biased, off) < 1e-3
