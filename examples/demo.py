"""`make demo`: the same questions answered by the base model alone and nudged, side by side.

The base model (gemma-3-270m, not instruction-tuned) knows facts but not how to answer a chat
question or when to stop: alone it keeps inventing new "Question:" lines until the token budget
runs out. Nudged by SmolLM2-135M-Instruct, which writes only the words where the base is unsure
(coloured), it answers and stops. As in the paper, neither side is cut at the base template's
next "Question:" line here (chat answers are by default: `BaseTemplate.stop_at_next_turn`), so the
comparison shows which answers end by themselves.

    python examples/demo.py [--gamma 0.4] [--max-new-tokens 96] ["your question" ...]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from nudging import BaseTemplate, Nudger, NudgingError, Result, Stats
from nudging.cli.common import load_pair
from nudging.loading import EMBEDDED_BASE, EMBEDDED_NUDGER
from nudging.render import legend, to_text
from rich.console import Console
from rich.table import Table
from rich.text import Text

QUESTIONS = (
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What is the boiling point of water in Celsius?",
    "How many days are in a week?",
)
PAPER_TEMPLATE = BaseTemplate(stop_at_next_turn=False)


class Timed(NamedTuple):
    """An answer with what its user waited: `seconds` from the call to the finished answer, and
    `reading` the seconds its models took to read their prompts (one forward each, timed apart just
    before; the nudger's only if it was asked to write)."""

    result: Result
    seconds: float
    reading: float

    @property
    def past_prompt(self) -> float:
        """Tokens per second once the prompts are read."""
        return self.result.stats.output_tokens / max(self.seconds - self.reading, 1e-9)


def _reading(model: Any, ids: list[int]) -> float:
    """Seconds for one forward over a prompt: what the model pays to read it before writing."""
    session = model.session()
    try:
        t0 = time.perf_counter()
        session.forward(ids)
        return time.perf_counter() - t0
    finally:
        session.close()


def answer(nudger: Nudger, question: str, *, gamma: float, max_new_tokens: int) -> Timed:
    """One answer, timed from the call to the finished answer, with its prompt reading timed apart."""
    config = nudger.config.merged(gamma=gamma, max_new_tokens=max_new_tokens, base_template=PAPER_TEMPLATE)
    ids = nudger.prompt_ids(question, config)
    base_reads = _reading(nudger.base, ids["base"])
    nudger_reads = _reading(nudger.nudger, ids["nudger"])
    t0 = time.perf_counter()
    result = nudger.generate(question, config)
    seconds = time.perf_counter() - t0
    return Timed(result, seconds, base_reads + (nudger_reads if result.stats.nudger_forwards else 0.0))


def _ending(stats: Stats, max_new_tokens: int) -> str:
    return {"eos": "ended by itself", "length": f"cut at the {max_new_tokens}-token budget"}.get(stats.stop_reason, f"stopped: {stats.stop_reason}")


def compare(nudger: Nudger, question: str, *, gamma: float, max_new_tokens: int, console: Console) -> tuple[Timed, Timed]:
    """Answer one question base-only (gamma 0) and nudged; print both side by side with their times."""
    with console.status(f"{question}  base model alone…"):
        alone = answer(nudger, question, gamma=0.0, max_new_tokens=max_new_tokens)
    with console.status(f"{question}  nudged…"):
        nudged = answer(nudger, question, gamma=gamma, max_new_tokens=max_new_tokens)
    a, n = alone.result.stats, nudged.result.stats
    table = Table(title=Text(question, style="bold"), show_lines=True, expand=True)
    table.add_column("Base model alone (gamma = 0)", ratio=1)
    table.add_column(f"Nudged (gamma = {gamma})", ratio=1)
    table.add_row(to_text(alone.result), to_text(nudged.result))
    table.add_row(
        Text(f"{alone.seconds:.1f} s to the finished answer · {a.output_tokens} tokens, {_ending(a, max_new_tokens)}", style="dim"),
        Text(
            f"{nudged.seconds:.1f} s to the finished answer · {n.output_tokens} tokens, {_ending(n, max_new_tokens)} · "
            f"{nudged.reading:.2f} s reading the prompts, then {nudged.past_prompt:.1f} tokens/s · "
            f"the nudger wrote {n.nudge_share:.0%} of the tokens, {n.word_share:.0%} of the words, in {n.rounds} round{'' if n.rounds == 1 else 's'}",
            style="dim",
        ),
    )
    console.print(table)
    return alone, nudged


def main(
    questions: Sequence[str] = QUESTIONS,
    *,
    nudger: Nudger | None = None,
    gamma: float = 0.4,
    max_new_tokens: int = 96,
    console: Console | None = None,
) -> list[tuple[Result, Result]]:
    """Run the comparison; returns (base-only, nudged) results per question."""
    console = console or Console()
    if nudger is None:
        nudger = load_pair(EMBEDDED_BASE, EMBEDDED_NUDGER, console=console)
    dtype = str(getattr(nudger.base.model, "dtype", "")).removeprefix("torch.")
    console.print(f"Base model: gemma-3-270m (pretrained only). Nudger: SmolLM2-135M-Instruct. Weights in {dtype}, on {nudger.base.device}.")
    console.print(Text.assemble("Who wrote what: ", legend()))
    timed = [compare(nudger, q, gamma=gamma, max_new_tokens=max_new_tokens, console=console) for q in questions]
    alone, nudged = [a for a, _ in timed], [n for _, n in timed]
    share = sum(t.result.stats.nudge_share for t in nudged) / len(nudged)
    cut = sum(t.result.stats.stop_reason == "length" for t in alone)
    reading = sum(t.reading for t in nudged)
    decoding = sum(t.result.stats.output_tokens for t in nudged) / max(sum(t.seconds for t in nudged) - reading, 1e-9)
    console.print(
        f"Answers that ended by themselves: base alone {_ended(alone)}/{len(timed)}, nudged {_ended(nudged)}/{len(timed)}. "
        f"The nudger wrote {share:.0%} of the nudged tokens on average. "
        f"Waiting for all {len(timed)} answers: {sum(t.seconds for t in alone):.1f} s base alone"
        + (f" ({cut} cut at the {max_new_tokens}-token budget)" if cut else "")
        + f", {sum(t.seconds for t in nudged):.1f} s nudged, of which {reading:.1f} s reading the prompts; "
        f"past the prompts the nudged answers were written at {decoding:.1f} tokens/s.",
        soft_wrap=True,
    )
    return [(a.result, n.result) for a, n in timed]


def _ended(answers: Sequence[Timed]) -> int:
    return sum(t.result.stats.stop_reason == "eos" for t in answers)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("questions", nargs="*", default=QUESTIONS)
    parser.add_argument("--gamma", type=float, default=0.4)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    args = parser.parse_args()
    try:
        main(args.questions, gamma=args.gamma, max_new_tokens=args.max_new_tokens)
    except NudgingError as exc:  # a missing model package, a bad --gamma
        Console(stderr=True).print(Text.assemble(("Error: ", "bold red"), str(exc)))
        raise SystemExit(2) from None
