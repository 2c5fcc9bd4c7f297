"""DESIGN.md invariants 1-6 on two tiny pairs: one sharing a tokenizer, one cross-family."""

from __future__ import annotations

import pytest
import torch
from nudging import Nudger, NudgingConfig
from nudging.text.sync import decode

PROMPTS = [
    "Give three tips for sleep.",
    "What is the capital of France? Answer briefly.",
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Explain rain to a child."}],
]


def own_generate(model, ids: list[int], max_new_tokens: int, eos: set[int]) -> list[int]:
    out = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=sorted(eos))
    return out[0, len(ids) :].tolist()


@pytest.mark.parametrize("prompt", PROMPTS)
def test_gamma_zero_is_base_greedy(pair, prompt):
    """Invariant 1: gamma = 0 gives the base model's own greedy generate, token for token."""
    nudger: Nudger = pair
    run = nudger.run(prompt, gamma=0.0, max_new_tokens=40)
    res = list(run.events())[-1]
    tok, eos = nudger.base.tokenizer, set(nudger.base.eos_ids)
    ids = tok.encode(res.prompts["base"])
    assert run.B.prompt_ids == ids
    ref = own_generate(nudger.base.model, ids, 40, eos)
    if ref and ref[-1] in eos:
        ref = ref[:-1]  # the view stops at EOS without appending it
    assert not eos & set(ref)
    assert run.B.answer_ids == ref
    assert res.stats.stop_reason == ("length" if len(ref) == 40 else "eos")
    assert res.text == decode(tok, ids + ref)[len(decode(tok, ids)) :]
    assert res.stats.output_tokens == len(ref)
    assert res.stats.nudger_tokens == 0 and res.stats.rounds == 0
    assert [s.source for s in res.spans] in (["base"], [])


@pytest.mark.parametrize("prompt", PROMPTS)
def test_gamma_above_one_is_nudger_greedy(pair, prompt):
    """Invariant 2: gamma > 1 gives the nudger's own greedy generate (a prefix when the budget ends first)."""
    nudger: Nudger = pair
    res = nudger.generate(prompt, gamma=1.5, max_new_tokens=40)
    tok = nudger.nudger.tokenizer
    ids = tok.encode(res.prompts["nudger"], add_special_tokens=False)
    ref = own_generate(nudger.nudger.model, ids, 120, set(nudger.nudger.eos_ids))
    ref_text = decode(tok, ids + [t for t in ref if t not in nudger.nudger.eos_ids])[len(decode(tok, ids)) :]
    if res.stats.stop_reason == "eos":
        assert res.text == ref_text
    else:
        assert res.stats.stop_reason == "length"
        assert ref_text.startswith(res.text) and res.text
    assert res.stats.base_tokens == 0
    assert all(s.source == "nudger" for s in res.spans)


def _on_off(nudger, prompt, **kw):
    kw.setdefault("drafter", "off")  # the nudger's tails alone (the drafter's own exactness: test_drafting.py)
    on = nudger.generate(prompt, speculation=True, **kw)
    off = nudger.generate(prompt, speculation=False, **kw)
    assert on.text == off.text
    assert on.spans == off.spans
    assert on.stats.output_tokens == off.stats.output_tokens and on.stats.stop_reason == off.stats.stop_reason
    assert on.stats.base_forwards <= off.stats.base_forwards
    assert off.stats.speculated_tokens == 0
    return on, off


@pytest.mark.parametrize(
    "gamma, adaptive", [(0.2, True), (0.4, True), (0.6, True), (0.8, True), (0.4, False), (0.7, False)]
)
def test_speculation_is_exact(pair, gamma, adaptive):
    """Invariant 3 (greedy): speculation on and off give the same text and spans, adaptive drafting or not.
    (The random tiny pairs rarely agree, so speculation seldom fires here: see the agreeing pairs below.)"""
    nudger: Nudger = pair
    for prompt in PROMPTS:
        _on_off(nudger, prompt, gamma=gamma, max_new_tokens=60, adaptive_draft=adaptive)


@pytest.fixture(scope="module")
def agreeing(pair):
    """A base that leans towards " the" (but still reads its context), nudged by a model that always
    writes " the": the nudger's drafts run on past the nudge with text the confident base repeats,
    so speculation has something to reuse. Same tokenizers as `pair` (one pair shared, one cross)."""
    from tiny_models import favour, real_tokenizers, stuck_llama, tiny_gemma3, tiny_llama

    gemma_tok, smol_tok = real_tokenizers()
    if len(pair.base.tokenizer) == len(pair.nudger.tokenizer):
        base, base_tok = favour(tiny_llama(smol_tok, seed=3, layers=3), smol_tok, " the", 20.0), smol_tok
    else:
        base, base_tok = favour(tiny_gemma3(gemma_tok, seed=1), gemma_tok, " the", 20.0), gemma_tok
    return Nudger(base, base_tok, stuck_llama(smol_tok, " the"), smol_tok)


@pytest.mark.parametrize("adaptive", [True, False])
def test_speculation_reuses_draft_tails_exactly(agreeing, adaptive):
    """Where the base agrees with the nudger's draft tail, speculation takes tokens from it without a
    forward of their own (fewer base forwards), and the output is still exactly that without it.
    (Adaptive drafts stop after two words here: see `_on_off`.)"""
    runs = [_on_off(agreeing, p, gamma=0.5, max_new_tokens=40, adaptive_draft=adaptive) for p in PROMPTS[:2]]
    assert all(on.stats.rounds >= 1 and on.stats.base_tokens > 0 for on, _ in runs)  # both models wrote
    assert all(on.stats.speculated_tokens > 0 for on, _ in runs)
    saved = sum(off.stats.base_forwards - on.stats.base_forwards for on, off in runs)
    assert saved >= sum(on.stats.speculated_tokens for on, _ in runs) // 2 > 0


@pytest.mark.parametrize("gamma", [0.3, 0.5, 0.7])
def test_spans_and_views_cover_the_text(pair, gamma):
    """Invariant 4: spans join to the text; each view decodes to its prompt + the text."""
    nudger: Nudger = pair
    for prompt in PROMPTS:
        run = nudger._run(prompt, None, None, {"gamma": gamma, "max_new_tokens": 60})
        events = list(run.events())
        res = events[-1]
        assert "".join(s.text for s in res.spans) == res.text
        assert all(s.text for s in res.spans)
        assert all(a.source != b.source for a, b in zip(res.spans, res.spans[1:]))
        for view in (run.B, run.N):
            if view.pending:
                continue  # stopped mid-character: the held-back bytes are not text
            view.sync(res.text)
            assert view.decoded() == decode(view.tok, view.prompt_ids) + res.text


def test_mid_gamma_really_mixes(pair):
    """The tiny pairs are built so mid-gamma runs use both models (otherwise the tests above prove little)."""
    nudger: Nudger = pair
    shares = [nudger.generate(p, gamma=0.5, max_new_tokens=60).stats.nudge_share for p in PROMPTS]
    assert any(0 < s < 1 for s in shares), shares


def test_same_seed_same_sample(pair):
    """Invariant 5: same seed -> same sampled output; the seed matters."""
    nudger: Nudger = pair
    cfg = NudgingConfig(gamma=0.5, temperature=0.9, top_p=0.95, max_new_tokens=40)
    a = nudger.generate(PROMPTS[0], cfg, seed=7)
    b = nudger.generate(PROMPTS[0], cfg, seed=7)
    assert a.text == b.text and a.spans == b.spans
    others = {nudger.generate(PROMPTS[0], cfg, seed=s).text for s in (8, 9, 10)}
    assert others != {a.text}


def _stream(nudger, prompt, **kw):
    stream = nudger.stream(prompt, **kw)
    deltas = list(stream)
    return deltas, stream.result


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.5])
def test_stream_concatenates_to_text(pair, gamma):
    """Invariant 6: deltas concatenate to the text, with provenance, whatever ends the stream."""
    nudger: Nudger = pair
    for prompt in PROMPTS:
        deltas, res = _stream(nudger, prompt, gamma=gamma, max_new_tokens=50)
        assert "".join(d.text for d in deltas) == res.text
        assert all(d.text for d in deltas)
        assert res.text == nudger.generate(prompt, gamma=gamma, max_new_tokens=50).text


def test_stop_string_across_a_model_switch(pair):
    """A stop string spanning a base/nudger boundary cuts exactly before it, in text, spans, stream and counts."""
    nudger: Nudger = pair
    full = None
    for prompt in PROMPTS:
        res = nudger.generate(prompt, gamma=0.5, max_new_tokens=80)
        if len(res.spans) >= 3:
            full = (prompt, res)
            break
    assert full is not None, "no mixed output to cut"
    prompt, res = full
    k = len(res.spans[0].text)
    stop = res.text[k - 2 : k + 2]  # two characters of each side
    cut = res.text.index(stop)
    deltas, stopped = _stream(nudger, prompt, gamma=0.5, max_new_tokens=80, stop=[stop, "\x00never"])
    assert stopped.text == res.text[:cut]
    assert "".join(d.text for d in deltas) == stopped.text
    assert stop not in stopped.text
    assert "".join(s.text for s in stopped.spans) == stopped.text
    assert stopped.stats.stop_reason == "stop"
    assert stopped.stats.output_tokens <= res.stats.output_tokens


def test_stop_string_inside_one_token(pair):
    nudger: Nudger = pair
    res = nudger.generate(PROMPTS[0], gamma=0.0, max_new_tokens=30)
    word = next(w for w in res.text.split() if len(w) >= 3)
    stop = word[1:3]
    cut = res.text.index(stop)
    stopped = nudger.generate(PROMPTS[0], gamma=0.0, max_new_tokens=30, stop=stop)
    assert stopped.text == res.text[:cut]


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.5])
def test_max_new_tokens_counts_base_view_ids(pair, gamma):
    nudger: Nudger = pair
    for n in (1, 7, 23):
        res = nudger.generate(PROMPTS[1], gamma=gamma, max_new_tokens=n)
        assert res.stats.output_tokens <= n
        if res.stats.stop_reason == "length":
            assert res.stats.output_tokens >= n - 1  # a character split across ids may be dropped
        assert res.stats.base_tokens + res.stats.nudger_tokens == res.stats.output_tokens


def test_stats_are_consistent(pair):
    nudger: Nudger = pair
    res = nudger.generate(PROMPTS[0], gamma=0.5, max_new_tokens=60)
    s = res.stats
    assert s.output_tokens == s.base_tokens + s.nudger_tokens
    assert s.nudge_share == pytest.approx(s.nudger_tokens / s.output_tokens)
    assert 0 <= s.word_share <= 1
    assert s.base_forwards >= 1 and s.seconds > 0 and s.tokens_per_second > 0
    assert (s.rounds > 0) == (s.nudger_tokens > 0 or s.nudger_forwards > 0)
    assert set(res.prompts) == {"base", "nudger"}


@pytest.mark.parametrize("gamma", [0.3, 0.6])
def test_adaptive_drafts_give_the_full_drafts_text(pair, gamma, monkeypatch):
    """A nudge drafted a word or two at a time (the measured rule, or a fixed one) is the nudge one
    K-id draft gives: same text, same spans, same stop (greedy)."""
    from nudging.decoding import costs


    for rule in (costs.another_word, lambda stats, j, *fits: False, lambda stats, j, *fits: j < 3):
        monkeypatch.setattr("nudging.decoding.run.another_word", rule)
        for prompt in PROMPTS:
            full = pair.generate(prompt, gamma=gamma, max_new_tokens=60, adaptive_draft=False)
            short = pair.generate(prompt, gamma=gamma, max_new_tokens=60)
            assert (short.text, short.spans, short.stats.stop_reason) == (full.text, full.spans, full.stats.stop_reason)
            assert short.stats.nudger_forwards <= full.stats.nudger_forwards or full.stats.nudger_tokens == 0
