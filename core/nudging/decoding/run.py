"""The nudging decoding loop (DESIGN.md "The algorithm").

The base writes while the policy says it is confident; where it is not, the nudger drafts up to K
tokens, one base forward scores every word boundary of the draft, and the nudge is the draft up to
the first boundary where the base is confident again (else up to the last boundary). The draft's
unused tail stays in the base cache as lookahead: base tokens that reproduce it cost no forward.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import torch

from ..backends import Backend
from ..config import NudgingConfig
from ..errors import ConfigError, InputError
from ..policies import NudgingPolicy
from ..prompts import Prompt, build_prompts, stop_strings
from ..results import Result, Span, Stats, StopReason, StreamEvent, word_share
from ..text import Forward, View, encode_continuation, word_boundaries
from ..tools import parse_tool_calls
from .grammar import matchers
from .drafting import Drafter
from .sampling import Sampler
from .transcript import Transcript
from .verify import accept, count_output, cut_to_budget, ids_until, nudger_keep

Steps = Iterator[Forward | StreamEvent | Result]  # a run's output: forward requests, events, then the Result


@dataclass
class _Draft:
    """A nudger draft: its complete-character text, where its ids end, whether it ended in EOS."""

    text: str
    n_ids: int
    ends: list[int | None]
    eos: bool
    logits: list[torch.Tensor]  # logits[i]: the nudger's next-position logits after its first i draft ids


def drive(steps: Steps) -> Iterator[StreamEvent | Result]:
    """Serve one run's forward requests as they come; pass its events (and Result) on."""
    try:
        item = next(steps)
        while True:
            if isinstance(item, Forward):
                item = steps.send(item.session.forward(item.ids, item.keep, item.rows))
            else:
                yield item
                item = next(steps)
    except StopIteration:
        return
    finally:
        steps.close()


class Run:
    """One generation: both views, the transcript, the counters. Yields events, then the Result."""

    def __init__(self, base: Backend, nudger: Backend, policy: NudgingPolicy, prompt: Prompt, config: NudgingConfig, cancel: threading.Event | None) -> None:
        self.base, self.nudger, self.policy, self.cfg, self.cancel = base, nudger, policy, config, cancel
        self.prompts, (base_ids, nudger_ids) = build_prompts(base, nudger, prompt, config)
        for lm, ids, side in ((base, base_ids, "base"), (nudger, nudger_ids, "nudger")):
            if lm.context_window and len(ids) >= lm.context_window:
                raise InputError(
                    f"prompt is {len(ids)} tokens for the {side} model, longer than its context window of {lm.context_window}"
                )
        self._hidden = bool(getattr(policy, "needs_hidden", False))
        if self._hidden and not base.capabilities.hidden_states:
            raise ConfigError(f"{policy!r} reads the base model's hidden states, which {base.name} does not expose (a remote base?)")
        self.grammars = matchers(config, base, nudger)  # (base, nudger) matchers, or (None, None)
        self.B = View(base, base_ids, hidden=self._hidden, grammar=self.grammars[0], cancel=cancel)
        self.N = View(nudger, nudger_ids, grammar=self.grammars[1], cancel=cancel)
        self.T = Transcript(stop_strings(prompt, config))  # with the base template's next-turn marker
        self.base_sampler = Sampler(config.base_sampling, config.seed, base.capabilities.top_k)
        self.nudger_sampler = Sampler(config.nudger_sampling, None if config.seed is None else config.seed + 1, nudger.capabilities.top_k)
        limits = [config.max_new_tokens]
        if base.context_window:
            limits.append(base.context_window - len(base_ids))
        self.budget = min(limits)
        self.rounds = 0
        self.reason: StopReason = "eos"
        self._last_nudge: str | None = None
        self._repeats = 0
        # adaptive drafting: a running estimate of how many draft tokens a round puts to use
        self._useful = (config.draft_tokens - 2) / 1.5
        self._last_kept = 0  # nudger ids the last round accepted
        self._last_tail = 0  # base ids of the last draft's tail that the base's top choice reproduces
        self.drafter = self._make_drafter(config, base)

    # -- the loop ---------------------------------------------------------------------------
    def events(self) -> Iterator[StreamEvent | Result]:
        """Events then the Result, running this run's forwards one at a time."""
        return drive(self.steps())

    def steps(self) -> Steps:
        """The run as a coroutine: yields `Forward` requests (send back their logits), StreamEvents
        and finally the Result. `drive` serves one run; `batching.BatchDecoder` serves many at once."""
        t0 = time.perf_counter()
        try:
            while not (yield from self._step()):
                yield from self.T.flush()
            yield from self.T.flush(final=True)
            yield self._result(time.perf_counter() - t0)
        finally:
            self.B.close()
            self.N.close()

    def _step(self) -> Iterator[Forward]:
        """One base token or one nudge round; returns True when generation is over."""
        if self.cancel is not None and self.cancel.is_set():
            return self._stop("cancelled")
        logits = yield from self.B.next_logits(self._base_draft())
        first_word = self.cfg.paper_compat and self.rounds == 0 and not self.T.text
        if self.B.pending or (not first_word and bool(self._confident(logits[None], [len(self.B.ids) - 1])[0])):
            return self._base_writes(logits)
        return (yield from self._nudge())

    @staticmethod
    def _make_drafter(config: NudgingConfig, base: Backend) -> Drafter | None:
        """A base-stretch drafter, unless it is off or the backend brings its own lookahead."""
        if config.drafter in (None, "off") or base.capabilities.lookahead:
            return None
        corpus = None if config.drafter == "ngram" else config.drafter
        return Drafter(corpus, max_len=config.draft_max, eos_ids=base.eos_ids)

    def _base_draft(self) -> list[int]:
        """Ids to run behind the base's next forward, if one is due (within budget and window)."""
        if self.drafter is None or self.B.logits is not None:
            return []
        room = self.budget - self.B.n_answer - 1
        if self.base.context_window:
            room = min(room, self.base.context_window - len(self.B.ids) - 1)
        return self.drafter.propose(self.B.ids, room)

    def _confident(self, logits: torch.Tensor, positions: list[int]) -> torch.Tensor:
        """The policy's verdict on base logits rows, which came from these base-view positions."""
        if self._hidden:
            return self.policy.confident(logits, self.B.hidden_at(positions))
        return self.policy.confident(logits)

    def _stop(self, reason: StopReason) -> bool:
        self.reason = reason
        return True

    def _base_writes(self, logits: torch.Tensor) -> bool:
        token = self.base_sampler.pick(logits)
        if token in self.base.eos_ids:
            return self._stop("eos")
        delta = self.B.append_own(token)
        if self.T.add(delta, "base"):
            return self._stop("stop")
        if self.B.n_answer >= self.budget:
            return self._stop("length")
        return False

    def _nudge(self) -> Iterator[Forward]:
        """One round: the nudger drafts, one base forward verifies its word boundaries, the accepted
        nudge joins both views (the draft's tail stays in the base cache as lookahead)."""
        self.rounds += 1
        draft = yield from self._draft()
        if draft is None:
            return self._stop("length")
        if not draft.text:
            self.N.truncate(self.N.n_answer - draft.n_ids, draft.logits[0])
            if draft.eos:
                return self._stop("eos")
            # only part of a character in K tokens: let the base write instead of looping
            return self._base_writes((yield from self.B.next_logits()))
        b_ids, b_ends = encode_continuation(self.base.tokenizer, draft.text)
        bounds = word_boundaries(draft.text, draft.ends, b_ends)
        rows = yield from self._verify(b_ids, b_ends, bounds, draft)
        verdicts = self._verdicts(rows, b_ends, bounds, draft.text)
        acc = accept(bounds, verdicts, len(draft.text), draft.eos)
        m, end, over = cut_to_budget(ids_until(b_ends, acc.end), acc.end, b_ends, self.budget - self.B.n_answer)
        eos = acc.eos and not over
        keep = nudger_keep(draft.ends, end, eos)
        self._last_kept = keep
        self.N.truncate(self.N.n_answer - draft.n_ids + keep, draft.logits[keep] if keep < len(draft.logits) else None)
        if self.cfg.adaptive_draft:
            self._last_tail = self._tail_agreement(rows, b_ids, m)
        if m:
            ahead = b_ids[m:] if (self.cfg.speculation and not over and not eos) else []
            self.B.append_verified(b_ids[:m], b_ends[:m], end, rows[m - 1], ahead, rows[m : m + len(ahead)])
        else:
            self.B.drop_ahead()
        nudge = draft.text[:end]
        if self.T.add(nudge, "nudger"):
            return self._stop("stop")
        if over or self.B.n_answer >= self.budget:
            return self._stop("length")
        if eos:
            return self._stop("eos")
        return self._repeated(nudge)

    def _verify(self, b_ids: list[int], b_ends: list[int | None], bounds: list[int], draft: _Draft) -> Generator[Forward, torch.Tensor, torch.Tensor]:
        """Base rows [len(b_ids), vocab] for a draft. Where each row costs a request's prefill (a
        remote base), only the rows this round reads are asked for, in two phases: the first
        boundary alone (a confident base there ends the nudge, the common case), then the rest only
        if it was not; rows the server's greedy continuation covered cost nothing either way."""
        if not self.base.capabilities.sparse_rows:
            return (yield from self.B.forward_draft(b_ids))
        need = sorted({ids_until(b_ends, c) - 1 for c in bounds} | ({len(b_ids) - 1} if draft.eos or not bounds else set()))
        rows = yield from self.B.forward_draft(b_ids, need[:1])
        if len(need) > 1 and not (bounds and self._verdicts(rows, b_ends, bounds[:1], draft.text)[0]):  # only that row is scored yet
            rows = yield from self.B.forward_draft(b_ids, need)
        return rows

    def _verdicts(self, rows: torch.Tensor, b_ends: list[int | None], bounds: list[int], text: str) -> list[bool]:
        """The policy's verdict at each boundary of a verified draft (rows[i]: after base draft id i)."""
        if not bounds:
            return []
        idx = [ids_until(b_ends, c) - 1 for c in bounds]
        at = rows[idx]
        ok = self._confident(at, [len(self.B.ids) + i for i in idx])
        if self.cfg.paper_compat:
            ok = ok | self._base_agrees(at, text, bounds)
        return ok.tolist()

    @staticmethod
    def _tail_agreement(rows: torch.Tensor, b_ids: list[int], m: int) -> int:
        """How many ids of the draft's tail the base's argmax reproduces in a row (speculation's
        best case). Computed the same with speculation on or off, so adaptive drafting keeps them equal."""
        if m == 0 or m >= len(b_ids):
            return 0
        tail = rows[m - 1 : len(b_ids) - 1]
        match = ((tail.argmax(dim=-1).cpu() == torch.tensor(b_ids[m:])) & ~tail.isnan().any(dim=-1).cpu()).tolist()  # unscored rows (NaN) agree on nothing
        return next((i for i, ok in enumerate(match) if not ok), len(match))

    def _base_agrees(self, rows: torch.Tensor, text: str, bounds: list[int]) -> torch.Tensor:
        """paper_compat: at each boundary, is the base's top token a prefix of the nudger's next word?"""
        tops = rows.argmax(dim=-1).tolist()
        agree = []
        for c, nxt, t in zip(bounds, bounds[1:] + [len(text)], tops):
            piece = self.base.tokenizer.decode([t]).strip()
            agree.append(bool(piece) and t not in self.base.eos_ids and text[c:nxt].lstrip().startswith(piece))
        return torch.tensor(agree, device=rows.device)

    def _repeated(self, nudge: str) -> bool:
        """The paper's guard: the same nudge accepted `repetition_limit` rounds in a row ends generation."""
        self._repeats = self._repeats + 1 if nudge == self._last_nudge else 1
        self._last_nudge = nudge
        limit = 0 if self.grammars[0] else self.cfg.repetition_limit  # a grammar ends itself (JSON repeats ", ")
        return bool(limit) and self._repeats >= limit and self._stop("repetition")

    def _draft_len(self) -> int:
        """K, or fewer when recent rounds used few draft tokens (as nudge or as speculation)."""
        K = self.cfg.draft_tokens
        if not self.cfg.adaptive_draft:
            return K
        if self.rounds > 1:
            self._useful = 0.5 * self._useful + 0.5 * (self._last_kept + self._last_tail)
        return max(min(K, 4), min(K, round(1.5 * self._useful) + 2))

    def _draft(self) -> Generator[Forward, torch.Tensor, _Draft | None]:
        """Up to K nudger tokens after T (the nudger first catches up with T in the same forward);
        returns a _Draft, or None when the nudger's context window cannot hold T any more."""
        self.N.sync(self.T.text)
        room = (self.nudger.context_window or len(self.N.ids) + self.cfg.draft_tokens) - len(self.N.ids)
        if room <= 0:
            return None
        start_ids, start_len = self.N.n_answer, self.N.text_len
        text, ends, eos, seen = "", [], False, []
        for _ in range(min(room, self._draft_len())):
            seen.append((yield from self.N.next_logits()))
            token = self.nudger_sampler.pick(seen[-1])
            if token in self.nudger.eos_ids:
                eos = True
                break
            text += self.N.append_own(token)
            ends.append(None if self.N.pending else self.N.text_len - start_len)
        n_ids = self.N.n_answer - start_ids
        return _Draft(text, n_ids, ends, eos, seen)

    # -- the result ------------------------------------------------------------------------
    def _result(self, seconds: float) -> Result:
        T = self.T
        if self.drafter is not None:
            self.drafter.settle(self.B.ids)
        base_n, nudger_n = count_output(self.B.ends, self.B.foreign, len(T.text))
        out = base_n + nudger_n
        stats = Stats(
            prompt_tokens=len(self.B.prompt_ids),
            output_tokens=out,
            base_tokens=base_n,
            nudger_tokens=nudger_n,
            nudge_share=nudger_n / out if out else 0.0,
            word_share=word_share(T.spans),
            rounds=self.rounds,
            base_forwards=self.B.forwards,
            nudger_forwards=self.N.forwards,
            speculated_tokens=self.B.reused,
            drafted_tokens=self.drafter.proposed if self.drafter else 0,
            draft_accepted_tokens=self.drafter.accepted if self.drafter else 0,
            base_seconds=self.B.kv.seconds,
            nudger_seconds=self.N.kv.seconds,
            seconds=seconds,
            tokens_per_second=out / seconds if seconds > 0 else 0.0,
            stop_reason=self.reason,
            mask_seconds=sum(g.seconds for g in self.grammars if g is not None),
        )
        res = Result(T.text, [Span(s.text, s.source) for s in T.spans if s.text], stats, dict(self.prompts))
        if self.cfg.tools:
            res.content, res.tool_calls = parse_tool_calls(T.text, self.cfg.tools)
        return res
