"""Token choice for one model: argmax, or a seeded sample from the temperature/top-k/top-p filtered distribution."""

from __future__ import annotations

import torch

from ..config import SamplingParams


class Sampler:
    """Picks tokens for one model with its own random generator, so each model's draws are reproducible.

    `support`: the backend's rows are exact only for their top `support` ids (a remote server's
    logprobs, Capabilities.top_k), so sampling is top-k over those, renormalised; temperature and
    top-p apply within them.

    The distribution is computed and sampled where the logits are (a GPU's logits never cross to the
    host; only the chosen id does), with a generator on that device: the same seed gives the same
    draws on the same device (CPU and CUDA generators draw different streams).
    """

    def __init__(self, params: SamplingParams, seed: int | None, support: int | None = None) -> None:
        self.params = params
        self.support = support
        self.seed = None if seed is None else seed % 2**64  # any 64-bit seed; the nudger's is seed + 1
        self.generator: torch.Generator | None = None
        if not params.greedy:
            self.generator = self._generator(torch.device("cpu"))

    def _generator(self, device: torch.device) -> torch.Generator:
        gen = torch.Generator(device=device)
        if self.seed is None:
            gen.seed()
        else:
            gen.manual_seed(self.seed)
        return gen

    def pick(self, logits: torch.Tensor) -> int:
        """One token id from a [vocab] logits row."""
        if self.params.greedy:
            return int(torch.argmax(logits))
        if self.generator is None or self.generator.device != logits.device:
            self.generator = self._generator(logits.device)  # first draw on this device
        return int(torch.multinomial(self.probs(logits), 1, generator=self.generator))

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """The filtered sampling distribution (float32, on the logits' device), used by `pick`."""
        p = self.params
        scores = logits.float()
        # shift before scaling: a tiny temperature sends every non-top score to -inf (the greedy
        # limit), never to inf/inf = NaN; float64 keeps temperatures below float32's range nonzero
        scores = ((scores - scores.max()).double() / p.temperature).float()
        if self.support is not None and self.support < scores.numel():
            kth = torch.topk(scores, self.support).values[-1]
            keep = scores >= kth
            if int(keep.sum()) > self.support and bool((scores > kth).any()):
                # fewer ids came back than asked: the k-th place is the fill shared by every id the
                # server did not report, so only the returned ids (those above it) are sampled
                keep = scores > kth
            scores = scores.masked_fill(~keep, float("-inf"))
        k = p.top_k or scores.numel()
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
