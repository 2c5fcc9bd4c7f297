"""A call is kept only where it is grounded (`NudgingConfig.grounded_calls`).

Under tool_choice "auto", the run decides (`call_threshold`) and, where it chose text, writes it as
usual. Where it chose a call it stops there, and the call is written by a run as under "required"
(its prompt and grammar: the best call the pair writes), with stream events held back; the finished
call is checked against the conversation (nudging/grounding.py). A grounded call is released as it
was written; otherwise the answer is written from the start as text, as if the decision had chosen
text, and its Result carries what all runs cost and why the call was not kept. Every run is a plain
run served through this coroutine, so the batch decoder and `drive` serve them like any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from ..grounding import unsupported
from ..prompts import RawPrompt, to_messages
from ..results import Result, StreamEvent
from ..text import Forward


def _relay(steps: Iterator[Any], held: list[StreamEvent] | None) -> Iterator[Any]:
    """Pass `steps`' forward requests (and its events, unless `held` keeps them) through this
    coroutine; returns its Result, closing it (which frees its caches)."""
    try:
        item = next(steps)
        while not isinstance(item, Result):
            if held is not None and isinstance(item, StreamEvent):
                held.append(item)
                item = next(steps)
            else:
                item = steps.send((yield item))  # type: ignore[attr-defined]
        return item
    finally:
        steps.close()  # type: ignore[attr-defined]


def rejection(run: Any, res: Result) -> str | None:
    """Why the call written for `run` (in `res`) is not kept (None: keep it)."""
    if res.stats.stop_reason == "cancelled":
        return None
    if not res.tool_calls:
        return "the call was not completed: " + "; ".join(c.get("error", "") for c in res.invalid_tool_calls) if res.invalid_tool_calls else "no call was written"
    prompt = run.args[3]
    messages = [{"role": "user", "content": prompt.text}] if isinstance(prompt, RawPrompt) else to_messages(prompt, run.cfg.system)
    reasons = [why for call in res.tool_calls for why in unsupported(call, run.cfg.tools, messages)]
    return "; ".join(reasons) or None


def _costs(res: Result, runs: list[Result], **more: Any) -> Result:
    """`res` with the forwards and seconds of all `runs` (res among them)."""
    seconds = sum(r.stats.seconds for r in runs)
    total = {k: sum(getattr(r.stats, k) for r in runs) for k in ("base_forwards", "nudger_forwards", "base_seconds", "nudger_seconds", "mask_seconds")}
    res.stats = replace(res.stats, **total, seconds=seconds, tokens_per_second=res.stats.output_tokens / seconds if seconds > 0 else 0.0, **more)
    return res


def checked(run: Any) -> Iterator[Any]:
    """A `Run`'s steps, a call it decides on written and checked before anything of it is released."""
    decided = yield from _relay(run.body(), None)
    if not run.trial:
        yield decided
        return
    base, nudger, policy, prompt, cfg, cancel = run.args
    held: list[StreamEvent] = []
    call = yield from _relay(type(run)(base, nudger, policy, prompt, cfg.merged(tool_choice="required"), cancel).body(), held)
    why = rejection(run, call)
    if why is None:
        yield from held
        yield _costs(call, [decided, call], call_probability=decided.stats.call_probability)
        return
    again = type(run)(*run.args)
    again.forced = False
    text = yield from _relay(again.body(), None)
    yield _costs(text, [decided, call, text], call_probability=decided.stats.call_probability, call_rejected=why)
