"""Where a model runs. The engine needs only this much of one: a tokenizer, its EOS ids and
context window, sessions that score new ids after a prefix and can be cut back, and a declared
list of what else it can do (read from `capabilities`, never probed with hasattr)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import torch


@dataclass(frozen=True)
class Capabilities:
    """What a backend offers beyond scoring ids."""

    hidden_states: bool = False  # sessions can keep the last hidden state per position (learned policies)
    batched: bool = False  # forward_batch runs several sessions in one model call (else it serves them in turn)
    lookahead: bool = False  # a forward may also return the model's own greedy continuation (Session.lookahead)


@runtime_checkable
class Session(Protocol):
    length: int  # positions the session holds (scored ids, plus any lookahead)
    forwards: int
    seconds: float
    # after a forward with keep == 1 on a lookahead backend: the model's greedy ids beyond the
    # scored ones and their logits [len, vocab]; None otherwise
    lookahead: tuple[list[int], torch.Tensor] | None

    def forward(self, ids: list[int], keep: int = 1) -> torch.Tensor: ...
    def truncate(self, length: int) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class Backend(Protocol):
    tokenizer: Any
    eos_ids: frozenset[int]
    context_window: int | None
    capabilities: Capabilities

    @property
    def name(self) -> str: ...
    @property
    def device(self) -> torch.device: ...
    def session(self, hidden: bool = False) -> Session:
        """A new empty sequence; `hidden=True` needs `capabilities.hidden_states`."""
        ...

    def forward_batch(self, sessions: Sequence[Any], ids: Sequence[list[int]], keeps: Sequence[int]) -> list[torch.Tensor]:
        """Extend each session by its ids; per session, logits [keep, vocab] of its last `keep` new positions."""
        ...
