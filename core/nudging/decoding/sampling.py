"""Token choice for one model: argmax, or a seeded sample from the temperature/top-k/top-p filtered distribution."""

from __future__ import annotations

import torch

from ..config import SamplingParams


class Sampler:
    """Picks tokens for one model with its own random generator, so each model's draws are reproducible.

    `support`: the backend's rows are exact only for their top `support` ids (a remote server's
    logprobs, Capabilities.top_k), so sampling is top-k over those, renormalised; temperature and
    top-p apply within them.
    """

    def __init__(self, params: SamplingParams, seed: int | None, support: int | None = None) -> None:
        self.params = params
        self.support = support
        self.generator: torch.Generator | None = None
        if not params.greedy:
            self.generator = torch.Generator(device="cpu")
            if seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(seed % 2**64)  # any 64-bit seed; the nudger's is seed + 1

    def pick(self, logits: torch.Tensor) -> int:
        """One token id from a [vocab] logits row."""
        if self.params.greedy:
            return int(torch.argmax(logits))
        return int(torch.multinomial(self.probs(logits), 1, generator=self.generator))

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """The filtered sampling distribution (CPU float32), used by `pick`."""
        p = self.params
        scores = logits.float().cpu()
        # shift before scaling: a tiny temperature sends every non-top score to -inf (the greedy
        # limit), never to inf/inf = NaN; float64 keeps temperatures below float32's range nonzero
        scores = ((scores - scores.max()).double() / p.temperature).float()
        k = min(p.top_k or scores.numel(), self.support or scores.numel())
        if k < scores.numel():
            kth = torch.topk(scores, k).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        if p.top_p < 1.0:
            # the smallest set of most likely tokens whose mass reaches top_p (at least one token);
            # grow a top-k window instead of sorting a 262k vocabulary for every token
            k = 64
            while True:
                top, order = torch.topk(probs, min(k, probs.numel()))
                if float(top.sum()) >= p.top_p or k >= probs.numel():
                    break
                k *= 8
            keep = (torch.cumsum(top, dim=-1) - top) < p.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], top[keep])
            probs = probs / probs.sum()
        return probs
