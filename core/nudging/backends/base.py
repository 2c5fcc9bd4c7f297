"""Where a model runs. The engine needs only this much of one: a tokenizer, its EOS ids and
context window, and sessions that score new ids after a prefix and can be cut back."""

from __future__ import annotations

from typing import Any, Protocol

import torch


class Session(Protocol):
    length: int  # positions the session holds (scored ids, plus any lookahead)
    forwards: int
    seconds: float

    def forward(self, ids: list[int], keep: int = 1) -> torch.Tensor: ...
    def truncate(self, length: int) -> None: ...
    def close(self) -> None: ...


class Backend(Protocol):
    tokenizer: Any
    eos_ids: frozenset[int]
    context_window: int | None

    @property
    def name(self) -> str: ...
    @property
    def device(self) -> torch.device: ...
    def session(self) -> Session: ...
