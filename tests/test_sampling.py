"""Sampling filters: top-p keeps exactly the smallest most-likely set reaching p; seeds reproduce."""

from __future__ import annotations

import pytest
import torch
from nudging.config import SamplingParams
from nudging.decoding.sampling import Sampler


def _reference_top_p(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    probs = torch.softmax(logits / temperature, -1)
    sorted_p, order = torch.sort(probs, descending=True)
    sorted_p = sorted_p.masked_fill((torch.cumsum(sorted_p, -1) - sorted_p) >= top_p, 0.0)
    out = torch.zeros_like(probs).scatter(0, order, sorted_p)
    return out / out.sum()


@pytest.mark.parametrize("vocab", [50, 49152, 262144])
@pytest.mark.parametrize("temperature, top_p", [(0.7, 0.9), (1.0, 0.5), (3.0, 0.95), (1.0, 0.999)])
def test_top_p_matches_a_full_sort(vocab, temperature, top_p):
    logits = torch.randn(vocab, generator=torch.Generator().manual_seed(vocab)) * 3
    got = Sampler(SamplingParams(temperature=temperature, top_p=top_p), seed=0).probs(logits)
    want = _reference_top_p(logits, temperature, top_p)
    assert torch.equal(got > 0, want > 0)
    assert torch.allclose(got, want, atol=1e-6)


def test_top_k_and_seed():
    logits = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    probs = Sampler(SamplingParams(temperature=1.0, top_k=5), seed=0).probs(logits)
    assert int((probs > 0).sum()) == 5 and set(torch.nonzero(probs).flatten().tolist()) == set(torch.topk(logits, 5).indices.tolist())
    a = [Sampler(SamplingParams(temperature=1.0), seed=3).pick(logits) for _ in range(3)]
    assert len(set(a)) == 1
    draws = Sampler(SamplingParams(temperature=1.0), seed=3)
    assert len({draws.pick(logits) for _ in range(30)}) > 1


def test_greedy_is_argmax():
    logits = torch.tensor([0.1, 2.0, -1.0])
    assert Sampler(SamplingParams(), seed=None).pick(logits) == 1
