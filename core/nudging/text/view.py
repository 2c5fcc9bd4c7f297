"""One model's token view of the shared answer text T.

A view holds the model's prompt ids plus ids covering T, a KV cache over (a prefix of) them, and
the logits for the next position once computed. Its own tokens are kept exactly as generated;
text from the other model is tokenized in context and appended. It may also hold *lookahead*:
ids already run through the cache beyond T (a verified draft's unused tail), with their logits,
so a base token that reproduces them costs no forward.

A view never runs its model itself: methods that need a forward are generators that yield a
`Forward` request and receive the logits, so one driver can serve many views in shared batches.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from ..backends import Backend, Session
from .sync import IncrementalDecoder, decode, encode_continuation


@dataclass
class Forward:
    """A request to run `session`'s model over `ids` after its cached positions; the driver sends
    back the logits [keep, vocab] of the last `keep` positions (`rows`: the ones the caller reads,
    None for all; see Session.forward)."""

    session: Session
    ids: list[int]
    keep: int
    rows: list[int] | None = None


Needs = Generator[Forward, torch.Tensor, torch.Tensor]  # yields forward requests, returns logits


class Grammar(Protocol):
    """What a view needs of a constraint (decoding/grammar.py's Matcher): it follows the view's
    answer ids, and masks the logits the view hands out."""

    def consume(self, ids: list[int]) -> None: ...
    def rollback(self, n: int) -> None: ...
    def mask(self, logits: torch.Tensor) -> torch.Tensor: ...
    def mask_along(self, rows: torch.Tensor, ids: list[int]) -> tuple[torch.Tensor, int]: ...


class View:
    def __init__(self, lm: Backend, prompt_ids: list[int], hidden: bool = False, grammar: Grammar | None = None, cancel: threading.Event | None = None) -> None:
        self.lm = lm
        self.grammar = grammar  # when set: consumes every answer id, masks every logits row handed out
        self.tok = lm.tokenizer
        # `cancel`: a backend whose forwards wait (a remote request) stops waiting when it is set
        self.kv: Session = lm.session(hidden=hidden, cancel=cancel) if cancel is not None and lm.capabilities.cancellable else lm.session(hidden=hidden)
        self.prompt_ids = list(prompt_ids)
        self.ids: list[int] = list(prompt_ids)
        self.ends: list[int | None] = []  # per answer id: offset in T where it ends (None: mid-character)
        self.foreign: list[bool] = []  # per answer id: appended from the other model's text
        self.text_len = 0  # characters of T these ids cover
        self.decoder = IncrementalDecoder(self.tok, self.ids)
        self.logits: torch.Tensor | None = None  # next-position logits after self.ids
        self.ahead_ids: list[int] = []
        self.ahead_logits: torch.Tensor | None = None
        self.reused = 0  # own ids whose logits came from lookahead (no forward)

    # -- reading -------------------------------------------------------------------------
    @property
    def n_answer(self) -> int:
        return len(self.ids) - len(self.prompt_ids)

    @property
    def answer_ids(self) -> list[int]:
        return self.ids[len(self.prompt_ids) :]

    @property
    def pending(self) -> bool:
        """True while the newest own ids end inside a character."""
        return self.decoder.pending > 0

    @property
    def forwards(self) -> int:
        return self.kv.forwards

    def next_logits(self, draft: Sequence[int] = ()) -> Needs:
        """Logits [vocab] for the position after self.ids, running the model over uncached ids.

        `draft`: ids guessed to follow, run in the same forward and kept as lookahead (used only
        if the model's own choices reproduce them); ignored when no forward is due.
        """
        if self.logits is None:
            self.drop_ahead()
            if self.kv.length == len(self.ids):  # cached, but its logits were not kept: redo the last position
                self.kv.truncate(len(self.ids) - 1)
            rows = yield Forward(self.kv, self.ids[self.kv.length :] + list(draft), 1 + len(draft))
            self.logits = rows[0]
            if draft:
                self.ahead_ids, self.ahead_logits = list(draft), rows[1:]
            elif self.kv.lookahead:  # a lookahead backend's greedy continuation
                self.ahead_ids, self.ahead_logits = self.kv.lookahead
            if self.grammar is not None:
                self.logits = self.grammar.mask(self.logits)
                if self.ahead_ids:  # keep the lookahead only as far as the grammar allows it
                    self.ahead_logits, n = self.grammar.mask_along(self.ahead_logits, self.ahead_ids)
                    self.ahead_ids = self.ahead_ids[:n]
        return self.logits

    def decoded(self) -> str:
        return decode(self.tok, self.ids)

    # -- writing -------------------------------------------------------------------------
    def append_own(self, token: int) -> str:
        """Append an id this model chose; returns the text it completes ('' mid-character)."""
        if self.ahead_ids and self.ahead_ids[0] == token and self.ahead_logits is not None:
            self.logits = self.ahead_logits[0]
            self.reused += 1
            self.ahead_ids = self.ahead_ids[1:]
            self.ahead_logits = self.ahead_logits[1:] if self.ahead_ids else None
        else:
            self.drop_ahead()
            self.logits = None
        if self.grammar is not None:
            self.grammar.consume([token])
        self.ids.append(token)
        self.foreign.append(False)
        delta = self.decoder.step(self.ids)
        self.ends.append(None)
        if delta:
            self.text_len += len(delta)
            # every id held back for this character ends where it completes
            i = len(self.ends) - 1
            while i >= 0 and self.ends[i] is None:
                self.ends[i] = self.text_len
                i -= 1
        return delta

    def append_text(self, text: str) -> list[int]:
        """Append text the other model wrote (tokenized in context); returns the new ids."""
        ids, ends = encode_continuation(self.tok, text)
        self.drop_ahead()
        self.logits = None
        self._extend_foreign(ids, ends, len(text))
        return ids

    def append_verified(self, ids: list[int], ends: list[int | None], text_len: int, logits: torch.Tensor, ahead: list[int], ahead_logits: torch.Tensor) -> None:
        """Append foreign ids that a forward already ran (a verified nudge), keeping the draft's tail as
        lookahead up to its first row the backend left unscored (NaN: a sparse-rows backend).
        Any NaN marks a row unscored: a grammar's mask writes -inf over part of an unscored row."""
        self._extend_foreign(ids, ends, text_len)
        self.logits = None if bool(logits.isnan().any()) else logits  # unscored: a forward will get it
        if ahead:
            scored = ahead_logits.isnan().any(dim=-1).logical_not().tolist()
            ahead = ahead[: next((i for i, ok in enumerate(scored) if not ok), len(ahead))]
        self.ahead_ids = list(ahead)
        self.ahead_logits = ahead_logits[: len(ahead)] if ahead else None

    def _extend_foreign(self, ids: list[int], ends: list[int | None], text_len: int) -> None:
        base = self.text_len
        if self.grammar is not None:
            self.grammar.consume(ids)
        self.ids.extend(ids)
        self.foreign.extend([True] * len(ids))
        self.ends.extend(None if e is None else base + e for e in ends)
        self.text_len += text_len
        self.decoder.reset(self.ids)

    def sync(self, text: str) -> None:
        """Catch up with T (lazy: only tokenizes; the forward happens when logits are needed)."""
        if len(text) > self.text_len:
            self.append_text(text[self.text_len :])

    def forward_draft(self, ids: list[int], rows: list[int] | None = None) -> Needs:
        """Run the model over ids appended (tentatively) after self.ids; logits [len(ids), vocab].

        Row i predicts the position after ids[i]; `rows` names the rows the caller reads (None: all).
        The view itself is not changed: commit with append_verified, or the positions are dropped
        on the next truncate/forward. Under a grammar, row i is masked for the state after
        ids[:i+1] (the ids are text the other model wrote under the same grammar, so every one is
        allowed).
        """
        yield from self.next_logits()  # the cache covers self.ids (and maybe stale lookahead) ...
        self.drop_ahead()  # ... now exactly self.ids
        out = yield Forward(self.kv, ids, len(ids), rows)
        if self.grammar is not None:
            out, n = self.grammar.mask_along(out, ids)
            if n < len(ids):
                raise RuntimeError(f"the grammar rejects the other model's text after {n} of {len(ids)} ids")
        return out

    def hidden_at(self, positions: list[int]) -> torch.Tensor:
        """The model's last hidden state [n, d] at cached positions (views built with hidden=True)."""
        return self.kv.hidden[positions]

    def truncate(self, n_answer: int, logits: torch.Tensor | None = None) -> None:
        """Keep only the first n_answer answer ids (rejected draft positions are dropped).

        `logits`, if known, are the next-position logits after the kept ids (saves a forward).
        """
        n = len(self.prompt_ids) + n_answer
        if n >= len(self.ids):
            return
        if self.grammar is not None:
            self.grammar.rollback(len(self.ids) - n)
        self.ids = self.ids[:n]
        self.ends = self.ends[:n_answer]
        self.foreign = self.foreign[:n_answer]
        self.text_len = next((e for e in reversed(self.ends) if e is not None), 0)
        self.drop_ahead()
        self.kv.truncate(min(self.kv.length, len(self.ids)))
        self.logits = logits if logits is not None and self.kv.length == len(self.ids) else None
        self.decoder.reset(self.ids)

    def drop_ahead(self) -> None:
        self.kv.truncate(min(self.kv.length, len(self.ids)))
        self.ahead_ids = []
        self.ahead_logits = None

    def close(self) -> None:
        self.kv.close()
        self.logits = self.ahead_logits = None
