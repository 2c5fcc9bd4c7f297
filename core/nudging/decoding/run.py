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
from ..policies import NudgingPolicy, TopProbPolicy
from ..prompts import Prompt, build_prompts, stop_strings
from ..results import Result, Span, Stats, StopReason, StreamEvent, word_share
from ..text import Forward, View, encode_continuation, word_boundaries
from ..tools import offered, parse_tool_calls
from .checking import checked
from .costs import another_word, cost_fit, round_stats, tail_agreement
from .grammar import decision, matchers
from .drafting import make_drafter
from .sampling import Sampler
from .transcript import Transcript
from .verify import Acceptance, accept, count_output, cut_to_budget, ids_until, nudger_keep

Steps = Iterator[Forward | StreamEvent | Result]  # a run's output: forward requests, events, then the Result


@dataclass
class _Draft:
    """A nudger draft: its complete-character text, where its ids end, whether it ended in EOS."""

    text: str
    n_ids: int
    ends: list[int | None]
    eos: bool
    logits: list[torch.Tensor]  # logits[i]: the nudger's next-position logits after its first i draft ids
    full: bool = False  # it holds all the ids the nudge had left (else it stopped at a boundary or EOS)


def drive(steps: Steps) -> Iterator[StreamEvent | Result]:
    """Serve one run's forward requests as they come; pass its events (and Result) on."""
    try:
        item = next(steps)
        while True:
            if isinstance(item, Forward):
                t0 = time.perf_counter()
                logits = item.session.forward(item.ids, item.keep, item.rows)
                cost_fit(item.session.lm).add(len(item.ids), time.perf_counter() - t0)
                item = steps.send(logits)
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
        self.args = (base, nudger, policy, prompt, config, cancel)  # what the runs of checking.py start from
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
        self.fits = (cost_fit(base), cost_fit(nudger))
        self.B = View(base, base_ids, hidden=self._hidden, grammar=self.grammars[0], cancel=cancel)
        self.N = View(nudger, nudger_ids, grammar=self.grammars[1], cancel=cancel)
        self.T = Transcript(stop_strings(prompt, config))  # with the base template's next-turn marker
        self.base_sampler = Sampler(config.base_sampling, config.seed, base.capabilities.top_k)
        self.nudger_sampler = Sampler(config.nudger_sampling, None if config.seed is None else config.seed + 1, nudger.capabilities.top_k)
        limits = [config.max_new_tokens]
        if base.context_window:
            limits.append(base.context_window - len(base_ids))
        self.budget = min(limits)
        if self.grammars[0] is not None:  # budget-aware closing: the base view's ids are what the budget counts
            self.grammars[0].limit = self.budget
        self.rounds = 0
        self.reason: StopReason = "eos"
        self._last_nudge: str | None = None
        self._repeats = 0
        # the nudge being written: a round ending at a boundary the base was unsure at goes on in the next
        self._open, self._open_ids, self._open_bounds = "", 0, 0
        self._base_top: int | None = None  # the base's top id where it last handed over
        self.stats = round_stats(base, nudger)
        self.drafter = make_drafter(config, base)
        self.nudger_drafter = make_drafter(config, nudger, max_len=4)
        decides = config.tools and config.tool_choice in (None, "auto") and 0 < config.gamma <= 1
        self._opener = config.tool_opener if decides else "policy"  # who writes an "auto" answer's first word
        # tool calls under a grammar: decided once under "auto" (call_threshold, grounded_calls), written by call_gamma's rule
        tool_grammar = bool(config.tools) and self.grammars[0] is not None  # never under "none"
        auto = config.tool_choice in (None, "auto")
        self._undecided = tool_grammar and auto and config.call_threshold is not None and config.gamma > 0
        self.call_probability: float | None = None
        self.forced: bool | None = None  # the decision, where it is already made (checking.py)
        self.trial = False  # a decided call goes to a run that checks it (config.grounded_calls)
        self._mask_seconds = 0.0  # spent by matchers a decision replaced
        if tool_grammar and not auto:
            self._calls_policy()

    # -- the loop ---------------------------------------------------------------------------
    def events(self) -> Iterator[StreamEvent | Result]:
        """Events then the Result, running this run's forwards one at a time."""
        return drive(self.steps())

    def steps(self) -> Steps:
        """The run as a coroutine: yields `Forward` requests (send back their logits), StreamEvents
        and finally the Result. `drive` serves one run; `batching.BatchDecoder` serves many at once."""
        return checked(self) if self._undecided and self.cfg.grounded_calls else self.body()

    def body(self) -> Steps:
        """The steps of this run alone (`steps` adds the check of a decided call)."""
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
        if self._undecided and (yield from self._decide()):
            return True  # the call is written and checked by another run (checking.py)
        logits = yield from self.B.next_logits(self._base_draft())
        opening = self.rounds == 0 and not self.T.text
        first_word = opening and (self.cfg.paper_compat or self._opener == "nudger")
        if self.B.pending or (opening and self._opener == "base") or (not first_word and bool(self._confident(logits[None], [len(self.B.ids) - 1])[0])):
            return self._base_writes(logits)
        self._base_top = int(logits.argmax())
        return (yield from self._nudge())

    def _decide(self) -> Generator[Forward, torch.Tensor, bool]:
        """Calls or text, once, before the first id: the nudger's probability of the ids that open a
        call (under the "auto" mask) against `call_threshold`; from then on both views follow the
        grammar of that choice, masked over the logits they already hold. True: a call that
        `grounded_calls` checks, which this run leaves to another."""
        self._undecided = False
        self.call_probability, chosen, calls = decision(self.cfg, self.base, self.nudger, (yield from self.N.next_logits()), self.forced)
        self.trial = calls and self.cfg.grounded_calls
        if self.trial:
            return True
        if calls:
            self._calls_policy()
        self._mask_seconds += sum(g.seconds for g in self.grammars if g is not None)
        self.grammars = chosen
        chosen[0].limit = self.budget
        for view, grammar in ((self.B, chosen[0]), (self.N, chosen[1])):
            view.grammar = grammar
            if view.logits is not None:
                view.logits = grammar.mask(view.logits)
        return False

    def _calls_policy(self) -> None:
        """The answer is tool calls: they are written by `call_gamma`'s rule where one is set (a
        base-only run stays the base's)."""
        if self.cfg.call_gamma is not None and self.cfg.gamma > 0:
            self.policy = TopProbPolicy(self.cfg.call_gamma)

    def _base_draft(self) -> list[int]:
        """Ids to run behind the base's next forward, if one is due (within budget and window)."""
        if self.drafter is None or self.B.logits is not None:
            return []
        room = self.budget - self.B.n_answer - 1
        if self.base.context_window:
            room = min(room, self.base.context_window - len(self.B.ids) - 1)
        if self.fits[0].known and self.grammars[0] is None:
            self.drafter.cost_per_id = self.fits[0].per_id()
        return self.drafter.propose(self.B.ids, room)

    def _nudger_draft(self, room: int, first: bool) -> list[int]:
        """Ids to run behind the nudger's next forward while it drafts: what its own drafter
        predicts, else (for a round's first id) the base's top word where it handed over, in the
        nudger's ids. Used only where the nudger's own choices reproduce them."""
        if self.N.logits is not None or room <= 0 or self.grammars[1] is not None:  # under a grammar: no guesses (the closing mask moves)
            return []
        guess: list[int] = []
        if self.nudger_drafter is not None:
            if self.fits[1].known:
                self.nudger_drafter.cost_per_id = self.fits[1].per_id()
            guess = self.nudger_drafter.propose(self.N.ids, room)
        if not guess and first and self.cfg.drafter not in (None, "off") and self._base_top is not None and self._base_top not in self.base.eos_ids:
            word = self.base.tokenizer.decode([self._base_top])
            if word.strip() and "\ufffd" not in word:
                guess = encode_continuation(self.nudger.tokenizer, word)[0][:room]
        return guess

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
            if self._open:  # the nudge's K ids are spent mid-character: it ends at its last boundary
                return self._close("")
            # only part of a character in K tokens: let the base write instead of looping
            return self._base_writes((yield from self.B.next_logits()))
        b_ids, b_ends = encode_continuation(self.base.tokenizer, draft.text)
        bounds = word_boundaries(draft.text, draft.ends, b_ends)
        rows = yield from self._verify(b_ids, b_ends, bounds, draft)
        verdicts = self._verdicts(rows, b_ends, bounds, draft.text)
        acc = accept(bounds, verdicts, len(draft.text), draft.eos)
        goes_on = not (any(verdicts) or draft.eos or draft.full)  # stopped early at a boundary the base was unsure at
        if not bounds and self._open and not draft.eos:
            acc = Acceptance(0)  # a continued nudge ends at the boundary it already reached
        m, end, over = cut_to_budget(ids_until(b_ends, acc.end), acc.end, b_ends, self.budget - self.B.n_answer) if acc.end else (0, 0, False)
        eos = acc.eos and not over
        keep = nudger_keep(draft.ends, end, eos)
        self.N.truncate(self.N.n_answer - draft.n_ids + keep, draft.logits[keep] if keep < len(draft.logits) else None)
        self._learn(verdicts, bounds, draft, rows, b_ids, m)
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
        if goes_on and bounds:
            self._open += nudge
            self._open_ids += keep
            self._open_bounds += len(bounds)
            return False
        return self._close(nudge)

    def _close(self, nudge: str) -> bool:
        """The nudge is complete (the base was confident again, or its K ids are spent)."""
        nudge, self._open, self._open_ids, self._open_bounds = self._open + nudge, "", 0, 0
        return self._repeated(nudge)

    def _learn(self, verdicts: list[bool], bounds: list[int], draft: _Draft, rows: torch.Tensor, b_ids: list[int], m: int) -> None:
        """Feed the round's outcome to the pair's statistics (what later draft lengths read)."""
        self.stats.record(verdicts, first=self._open_bounds + 1)
        if bounds:
            self.stats.record_words(nudger_keep(draft.ends, bounds[-1], False), len(bounds))
        if m and any(verdicts) and m < len(b_ids):
            self.stats.record_tail(tail_agreement(rows, b_ids, m), len(b_ids) - m)

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

    def _more(self, j: int) -> bool:
        """After the nudge's j-th word boundary: draft another word before verifying?"""
        return not self.cfg.adaptive_draft or another_word(self.stats, j, *self.fits)

    def _draft(self) -> Generator[Forward, torch.Tensor, _Draft | None]:
        """Nudger tokens after T, up to the next word boundary worth verifying at (`_more`) or the
        nudge's K ids (the nudger first catches up with T in the same forward); returns a _Draft, or
        None when the nudger's context window cannot hold T any more."""
        self.N.sync(self.T.text)
        if self.grammars[1] is not None:  # the nudger's room, as if its ids were the base's
            self.grammars[1].limit = self.N.n_answer + self.budget - self.B.n_answer
        room = (self.nudger.context_window or len(self.N.ids) + self.cfg.draft_tokens) - len(self.N.ids)
        if room <= 0:
            return None
        K = min(room, self.cfg.draft_tokens - self._open_ids)
        start_ids, start_len = self.N.n_answer, self.N.text_len
        text, ends, eos, seen, found = "", [], False, [], 0
        while len(ends) < K:
            seen.append((yield from self.N.next_logits(self._nudger_draft(K - len(ends) - 1, not ends))))
            token = self.nudger_sampler.pick(seen[-1])
            if token in self.nudger.eos_ids:
                eos = True
                break
            piece = self.N.append_own(token)
            text += piece
            ends.append(None if self.N.pending else self.N.text_len - start_len)
            if piece[:1].isspace() and len(text) > len(piece) and not text[-len(piece) - 1].isspace():
                n = len(word_boundaries(text, ends, encode_continuation(self.base.tokenizer, text)[1]))
                if n > found:
                    found = n
                    if not self._more(self._open_bounds + n):
                        break
        n_ids = self.N.n_answer - start_ids
        return _Draft(text, n_ids, ends, eos, seen, full=len(ends) >= K)

    # -- the result ------------------------------------------------------------------------
    def _result(self, seconds: float) -> Result:
        T = self.T
        if self.reason == "length" and self.grammars[0] is not None and self.grammars[0].finished:
            self.reason = "eos"  # the budget ended exactly where the grammar did: complete, not cut
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
            mask_seconds=self._mask_seconds + sum(g.seconds for g in self.grammars if g is not None),
            call_probability=self.call_probability,
        )
        res = Result(T.text, [Span(s.text, s.source) for s in T.spans if s.text], stats, dict(self.prompts))
        tools = offered(self.cfg)
        if tools:
            res.content, res.tool_calls, res.invalid_tool_calls = parse_tool_calls(T.text, tools, cut=self.reason == "length")
        return res
