"""The static-cache backend (GPU fast path) against the dynamic one: same logits, same tokens."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from nudging import Nudger, NudgingConfig
from nudging.backends.local import KVSession, LocalModel
from nudging.backends.static import StaticModel, fast_local, self_check

PROMPTS = ["Give three tips for better sleep.", "Hi", "Explain photosynthesis to a ten-year-old in a few short sentences, please."]


def _static_pair(pair: Nudger, **kw) -> Nudger:
    b, n = pair.base, pair.nudger
    return Nudger(StaticModel(b.model, b.tokenizer, **kw), None, StaticModel(n.model, n.tokenizer, **kw), None)


@pytest.mark.parametrize("buckets", [False, True])
def test_sessions_agree_through_rollbacks_past_the_sliding_window(pair, buckets):
    """Prefill, decode, verify, rollbacks of more than the window (tiny Gemma3: 8), several rows."""
    for lm in (pair.base, pair.nudger):
        fast = StaticModel(lm.model, lm.tokenizer, buckets=buckets, length=16)  # small: the pool must grow
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(5, 500, (3, 80), generator=g).tolist()
        ref = [KVSession(fast) for _ in range(3)]
        mine = [fast.session() for _ in range(3)]
        plan = [(0, 7, None), (3, 1, None), (5, 16, None), (1, 30, None), (2, 1, None), (0, 4, 3), (1, 1, 12), (2, 20, 20), (0, 9, None)]
        for step, (n0, n, cut) in enumerate(plan):
            rows = [0, 1, 2] if step % 2 else [step % 3]
            chunks = []
            for r in rows:
                if cut is not None:
                    ref[r].truncate(ref[r].length - cut)
                    mine[r].truncate(mine[r].length - cut)
                chunks.append(ids[r][ref[r].length : ref[r].length + n + r])
            keeps = [len(c) for c in chunks]
            a = LocalModel.forward_batch(fast, [ref[r] for r in rows], chunks, keeps)
            b = fast.forward_batch([mine[r] for r in rows], chunks, keeps)
            for x, y in zip(a, b):
                torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-4)
        assert max(s.length for s in mine) > 40 and fast.length_limit >= 64
        for s in mine:
            s.close()
        assert not fast._live and fast._slots == 0 and fast.capacity == 1  # closed sessions give their rows back, the pool shrinks


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_static_nudging_is_token_for_token_the_dynamic_one(pair, gamma):
    fast = _static_pair(pair, buckets=True)
    cfg = NudgingConfig(gamma=gamma, max_new_tokens=32)
    want, got = pair.generate(PROMPTS[0], cfg), fast.generate(PROMPTS[0], cfg)
    assert got.text == want.text and got.spans == want.spans
    assert got.stats.base_forwards == want.stats.base_forwards


def test_static_batch_of_ragged_rows_matches_one_at_a_time(pair):
    fast = _static_pair(pair, buckets=True)
    cfg = NudgingConfig(gamma=0.5, max_new_tokens=30)
    want = [pair.generate(p, cfg).text for p in PROMPTS]
    assert [r.text for r in fast.generate_batch(PROMPTS, cfg)] == want
    assert [r.text for r in fast.generate_batch(PROMPTS, cfg)] == want  # the pool's rows are reused


def test_learned_policies_read_the_same_hidden_states(pair):
    fast = StaticModel(pair.base.model, pair.base.tokenizer, buckets=True)
    ref, mine = KVSession(fast, keep_hidden=True), fast.session(hidden=True)
    for chunk, cut in (([5, 6, 7, 8, 9, 10], None), ([11], None), ([12, 13, 14], 4)):
        for s in (ref, mine):
            if cut is not None:
                s.truncate(cut)
        LocalModel.forward_batch(fast, [ref], [chunk], [1])
        mine.forward(chunk)
    torch.testing.assert_close(mine.hidden, ref.hidden, rtol=1e-4, atol=1e-4)


def test_default_off_on_cpu_and_fallback_is_logged(pair, caplog, monkeypatch):
    lm = pair.nudger
    assert type(fast_local(lm.model, lm.tokenizer, None)) is LocalModel  # CPU: off unless asked
    assert self_check(StaticModel(lm.model, lm.tokenizer)) is None
    monkeypatch.setattr("nudging.backends.static.self_check", lambda fast: "broken on purpose")
    with caplog.at_level(logging.WARNING, logger="nudging.backends.static"):
        assert type(fast_local(lm.model, lm.tokenizer, True)) is LocalModel
    assert "broken on purpose" in caplog.text


@pytest.mark.skipif(not os.environ.get("NUDGING_TEST_COMPILE"), reason="torch.compile on the CPU takes minutes per tiny model (~5 min on the shared 2-core box); NUDGING_TEST_COMPILE=1 runs it")
def test_compiled_static_path_on_cpu_matches_the_dynamic_one(tokenizers):
    from tiny_models import tiny_llama

    _, smol = tokenizers
    a, b = tiny_llama(smol, seed=3, layers=3), tiny_llama(smol, seed=4)
    plain = Nudger(a, smol, b, smol)
    fast = Nudger.from_pretrained(a, b, base_tokenizer=smol, nudger_tokenizer=smol, compile=True)
    assert isinstance(fast.base, StaticModel) and fast.base.compiled  # its self-check passed
    cfg = NudgingConfig(gamma=0.5, max_new_tokens=24)
    assert fast.generate(PROMPTS[0], cfg).spans == plain.generate(PROMPTS[0], cfg).spans


@pytest.mark.slow
def test_gpu_script_smoke_run_on_cpu(tokenizers, tmp_path):
    """benchmarks/gpu/run.py --smoke end to end (tiny shapes, CPU), so the GPU run cannot die of a typo."""
    tok_dir = tmp_path / "tok"
    tokenizers[1].save_pretrained(tok_dir)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root / 'core'}"}
    proc = subprocess.run([sys.executable, str(root / "benchmarks/gpu/run.py"), "--tokenizer", str(tok_dir), "--out", str(tmp_path / "out"), "--smoke"], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "out" / "fast.json").read_text())["rows"]
    assert {(r["method"], r["batch"]) for r in rows} == {(m, b) for m in ("hf-eager", "hf-static-compile", "nudged-eager", "nudged-compiled") for b in (1, 2)}
    assert all(r["tokens_per_s"] > 0 for r in rows)
