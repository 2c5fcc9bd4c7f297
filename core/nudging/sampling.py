"""Token choice for one model: argmax, or a seeded sample from the temperature/top-k/top-p filtered distribution."""

from __future__ import annotations

import torch

from .config import SamplingParams


class Sampler:
    """Picks tokens for one model with its own random generator, so each model's draws are reproducible."""

    def __init__(self, params: SamplingParams, seed: int | None) -> None:
        self.params = params
        self.generator: torch.Generator | None = None
        if not params.greedy:
            self.generator = torch.Generator(device="cpu")
            if seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(seed)

    def pick(self, logits: torch.Tensor) -> int:
        """One token id from a [vocab] logits row."""
        if self.params.greedy:
            return int(torch.argmax(logits))
        return int(torch.multinomial(self.probs(logits), 1, generator=self.generator))

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """The filtered sampling distribution (CPU float32), used by `pick`."""
        p = self.params
        scores = logits.float().cpu() / p.temperature
        if p.top_k and p.top_k < scores.numel():
            kth = torch.topk(scores, p.top_k).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        if p.top_p < 1.0:
            sorted_p, order = torch.sort(probs, descending=True)
            # keep the smallest prefix whose mass reaches top_p (always at least one token)
            drop = (torch.cumsum(sorted_p, dim=-1) - sorted_p) >= p.top_p
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
            probs = probs / probs.sum()
        return probs
