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
from collections.abc import Sequence

from nudging import BaseTemplate, Nudger, NudgingError, Result
from nudging.cli.common import load_pair
from nudging.loading import EMBEDDED_BASE, EMBEDDED_NUDGER
from nudging.render import legend, summary, to_text
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


def compare(nudger: Nudger, question: str, *, gamma: float, max_new_tokens: int, console: Console) -> tuple[Result, Result]:
    """Answer one question base-only (gamma 0) and nudged; print both side by side."""
    with console.status(f"{question}  base model alone…"):
        alone = nudger.generate(question, gamma=0.0, max_new_tokens=max_new_tokens, base_template=PAPER_TEMPLATE)
    with console.status(f"{question}  nudged…"):
        nudged = nudger.generate(question, gamma=gamma, max_new_tokens=max_new_tokens, base_template=PAPER_TEMPLATE)
    table = Table(title=Text(question, style="bold"), show_lines=True, expand=True)
    table.add_column("Base model alone (gamma = 0)", ratio=1)
    table.add_column(f"Nudged (gamma = {gamma})", ratio=1)
    table.add_row(to_text(alone), to_text(nudged))
    table.add_row(Text(summary(alone.stats), style="dim"), Text(summary(nudged.stats), style="dim"))
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
    console.print("Base model: gemma-3-270m (pretrained only). Nudger: SmolLM2-135M-Instruct.")
    console.print(Text.assemble("Who wrote what: ", legend()))
    pairs = [compare(nudger, q, gamma=gamma, max_new_tokens=max_new_tokens, console=console) for q in questions]
    alone, nudged = [a for a, _ in pairs], [n for _, n in pairs]
    share = sum(r.stats.nudge_share for r in nudged) / len(nudged)
    console.print(
        f"Answers that ended by themselves: base alone {_ended(alone)}/{len(pairs)}, nudged {_ended(nudged)}/{len(pairs)}. "
        f"The nudger wrote {share:.0%} of the nudged tokens on average. "
        f"Speed: {_speed(alone):.1f} tokens/s base alone, {_speed(nudged):.1f} tokens/s nudged.",
        soft_wrap=True,
    )
    return pairs


def _ended(results: Sequence[Result]) -> int:
    return sum(r.stats.stop_reason == "eos" for r in results)


def _speed(results: Sequence[Result]) -> float:
    """Tokens per second over all answers together (long answers weigh more, as in wall time)."""
    seconds = sum(r.stats.seconds for r in results)
    return sum(r.stats.output_tokens for r in results) / seconds if seconds else 0.0


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
