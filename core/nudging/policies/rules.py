"""When to nudge: a small pluggable object that looks at the base's next-token logits.

The engine asks one question, "is the base confident here?", for a batch of positions at once
(the verification forward scores every word boundary of a draft together). A policy that sets
`needs_hidden = True` also gets the base's last hidden state at those positions (local bases only).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class NudgingPolicy(Protocol):
    def confident(self, logits: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """Bool tensor [n]: True where the base may write the next token itself (logits: [n, vocab];
        hidden: [n, d], the base's final hidden states there, passed only to policies with needs_hidden)."""
        ...


class TopProbPolicy:
    """The paper's rule: the base writes while its top-1 probability is >= gamma."""

    def __init__(self, gamma: float) -> None:
        self.gamma = gamma

    def confident(self, logits: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        if self.gamma <= 0:  # base only: skip a softmax over the vocabulary per token
            return torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
        logits = logits.float()
        top1 = torch.exp(logits.max(dim=-1).values - torch.logsumexp(logits, dim=-1))
        return top1 >= self.gamma

    def __repr__(self) -> str:
        return f"TopProbPolicy(gamma={self.gamma})"


class EntropyPolicy:
    """Nudge where the base's predictive entropy (in nats) exceeds a threshold."""

    def __init__(self, max_entropy: float) -> None:
        if not (max_entropy >= 0 and math.isfinite(max_entropy)):
            raise ValueError(f"max_entropy must be a finite number >= 0, got {max_entropy!r}")
        self.max_entropy = max_entropy

    def confident(self, logits: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        logp = torch.log_softmax(logits.float(), dim=-1)
        entropy = -(logp.exp() * logp).sum(dim=-1)
        return entropy <= self.max_entropy

    def __repr__(self) -> str:
        return f"EntropyPolicy(max_entropy={self.max_entropy})"
