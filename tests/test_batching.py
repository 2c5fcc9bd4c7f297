"""Batched nudging (DESIGN.md invariant 3): rows decoded together equal each prompt decoded alone."""

from __future__ import annotations

import threading

import pytest
import torch
from nudging import Nudger, NudgingConfig
from nudging.decoding.batching import BatchDecoder
from nudging.errors import InputError

PROMPTS = [
    "Give three tips for sleep.",
    "Hi",
    "What is the capital of France? Answer briefly, in one sentence, and then explain why it is the capital.",
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Explain rain to a child."}],
    "List five fruits.",
]


def same(a, b) -> None:
    assert a.text == b.text
    assert a.spans == b.spans
    assert a.stats.stop_reason == b.stats.stop_reason
    # the output's ids by writer (rounds are the schedule, not the output: a nudge may take more or fewer)
    assert (a.stats.base_tokens, a.stats.nudger_tokens) == (b.stats.base_tokens, b.stats.nudger_tokens)


@pytest.mark.parametrize("gamma", [0.0, 0.4, 0.7, 1.5])
def test_batched_greedy_equals_one_at_a_time(pair: Nudger, gamma: float, monkeypatch):
    """Mixed prompt lengths and stopping times: a 1-token budget, a stop string, EOS and the length limit."""
    configs = [
        NudgingConfig(gamma=gamma, max_new_tokens=1),
        NudgingConfig(gamma=gamma, max_new_tokens=48),
        NudgingConfig(gamma=gamma, max_new_tokens=30, stop=(" ",)),
        NudgingConfig(gamma=gamma, max_new_tokens=48, draft_tokens=6),
        NudgingConfig(gamma=gamma, max_new_tokens=12),
    ]
    widths = []
    real = type(pair.base).forward_batch

    def counting(self, sessions, ids, keeps):
        widths.append(len(sessions))
        return real(self, sessions, ids, keeps)

    monkeypatch.setattr(type(pair.base), "forward_batch", counting)
    batched = pair.generate_batch(PROMPTS, configs)
    monkeypatch.undo()
    assert max(widths) >= 3, "rows must share forwards"
    alone = [pair.generate(p, c) for p, c in zip(PROMPTS, configs)]
    for b, a in zip(batched, alone):
        same(b, a)
    assert batched[0].stats.output_tokens <= 1
    assert {r.stats.stop_reason for r in batched} >= {"length"}


def test_batched_stream_events_join_to_each_text(pair: Nudger):
    texts = {i: "" for i in range(len(PROMPTS))}
    results = {}
    for i, item in pair.stream_batch(PROMPTS, gamma=0.5, max_new_tokens=24):
        if hasattr(item, "stats"):
            results[i] = item
        else:
            assert i not in results, "no events after a row's result"
            texts[i] += item.text
    assert sorted(results) == list(range(len(PROMPTS)))
    for i, res in results.items():
        assert texts[i] == res.text


def test_rows_joining_mid_way_are_undisturbed(pair: Nudger):
    """Continuous batching: a row added after others have decoded for a while gets its solo output."""
    cfg = NudgingConfig(gamma=0.5, max_new_tokens=32)
    batch = BatchDecoder()
    done = {}
    batch.add(0, pair._run(PROMPTS[0], cfg, None, {}))
    batch.add(1, pair._run(PROMPTS[2], cfg, None, {}))
    steps = 0
    while len(batch):
        if steps == 5:
            batch.add(2, pair._run(PROMPTS[4], cfg, None, {}))
        for key, item in batch.step():
            assert not isinstance(item, BaseException)
            if hasattr(item, "stats"):
                done[key] = item
        steps += 1
    for key, prompt in ((0, PROMPTS[0]), (1, PROMPTS[2]), (2, PROMPTS[4])):
        same(done[key], pair.generate(prompt, cfg))


def test_sampled_rows_reproduce_their_single_runs(pair: Nudger):
    """Each row samples from its own seeded generators, so it does not depend on its neighbours."""
    configs = [NudgingConfig(gamma=0.5, temperature=0.9, top_p=0.95, seed=s, max_new_tokens=24) for s in (1, 2, 3)]
    prompts = PROMPTS[:3]
    batched = pair.generate_batch(prompts, configs)
    for b, p, c in zip(batched, prompts, configs):
        same(b, pair.generate(p, c))


def test_a_cancelled_row_ends_alone(pair: Nudger):
    cancel = threading.Event()
    cfg = NudgingConfig(gamma=0.5, max_new_tokens=24)
    batch = BatchDecoder()
    batch.add("stop", pair._run(PROMPTS[0], cfg, cancel, {}))
    batch.add("go", pair._run(PROMPTS[2], cfg, None, {}))
    done = {}
    while len(batch):
        for key, item in batch.step():
            if hasattr(item, "stats"):
                done[key] = item
        cancel.set()
    assert done["stop"].stats.stop_reason == "cancelled"
    same(done["go"], pair.generate(PROMPTS[2], cfg))


def test_batch_input_errors(pair: Nudger):
    with pytest.raises(InputError, match="empty"):
        pair.generate_batch(["fine", ""])
    with pytest.raises(InputError, match="2 configs for 3 prompts"):
        pair.generate_batch(["a", "b", "c"], [NudgingConfig(), NudgingConfig()])
    assert pair.generate_batch([]) == []


def test_forward_batch_matches_single_forwards(pair: Nudger):
    """Ragged caches (past the tiny Gemma's sliding window of 8) and ragged new ids, in one forward."""
    lm = pair.base
    seqs = [list(range(5, 5 + n)) for n in (3, 14, 9)]
    news = [[7, 8, 9, 10], [11], [12, 13]]
    single, rows = [], []
    for seq, new in zip(seqs, news):
        s = lm.session()
        s.forward(seq)
        single.append(s.forward(new, keep=len(new)))
        r = lm.session()
        r.forward(seq)
        rows.append(r)
    batched = lm.forward_batch(rows, news, [len(n) for n in news])
    for a, b in zip(single, batched):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # the split caches carry on exactly like the single ones
    for r, seq, new in zip(rows, seqs, news):
        assert r.length == len(seq) + len(new)
        s = lm.session()
        s.forward(seq + new)
        torch.testing.assert_close(r.forward([3]), s.forward([3]), rtol=1e-4, atol=1e-4)
