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
    batched: bool = False  # forward_batch runs several sessions in one padded model call (else one call each: in turn, or concurrent requests)
    lookahead: bool = False  # a forward may also return the model's own greedy continuation (Session.lookahead)
    # forward(..., rows=) scores only the rows asked for (each row costs a prompt: a remote server)
    sparse_rows: bool = False
    # rows are exact only for their top-k ids (a server's returned logprobs): sampling is top-k over them
    top_k: int | None = None
    # session(cancel=event) gives up a forward that waits (a remote request) once the event is set;
    # forward_batch then puts a failed row's exception in its place, its neighbours go on
    cancellable: bool = False


@runtime_checkable
class Session(Protocol):
    length: int  # positions the session holds (scored ids, plus any lookahead)
    forwards: int
    seconds: float
    # after a forward with keep == 1 on a lookahead backend: the model's greedy ids beyond the
    # scored ones and their logits [len, vocab]; None otherwise
    lookahead: tuple[list[int], torch.Tensor] | None

    def forward(self, ids: list[int], keep: int = 1, rows: Sequence[int] | None = None) -> torch.Tensor:
        """Extend by ids; logits [keep, vocab] of the last `keep` new positions. `rows`: the indices
        (into those keep) the caller will read, None for all; a `sparse_rows` backend leaves
        the rows it cannot derive cheaply NaN."""
        ...

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

    def forward_batch(self, sessions: Sequence[Any], ids: Sequence[list[int]], keeps: Sequence[int], rows: Sequence[Sequence[int] | None] | None = None) -> list[torch.Tensor]:
        """Each session's `forward` (ids, keep, rows), together where the backend can. A backend
        whose rows fail on their own (`cancellable`: remote requests) returns a failed row's exception
        in its place."""
        ...
