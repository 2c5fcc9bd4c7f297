"""Provenance made visible: who wrote which words, in a terminal (rich) or a notebook (HTML).

The point of nudging is that the small model writes only a few words; showing them in colour is the
quickest way to see where the base model was uncertain.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from rich.text import Text

from .results import Result, Span, Stats, StreamEvent

Pieces = Result | Iterable[Span | StreamEvent]

NUDGER_STYLE = "bold magenta"
"""rich style of the nudger's words; the base model's words keep the terminal's default style."""

HTML_STYLE = ".nudging{white-space:pre-wrap}.nudging .nudger{color:#b0279b;font-weight:bold}"
"""CSS for `to_html`: keeps the answer's line breaks and colours the nudger's spans."""


def _spans(answer: Pieces) -> Iterable[Span | StreamEvent]:
    return answer.spans if isinstance(answer, Result) else answer


def to_text(answer: Pieces) -> Text:
    """The answer as a rich Text, the nudger's spans in NUDGER_STYLE."""
    text = Text()
    for span in _spans(answer):
        text.append(span.text, style=NUDGER_STYLE if span.source == "nudger" else "")
    return text


def legend() -> Text:
    """A key for `to_text`: the two sources, each in its own style."""
    return Text.assemble("base model", " · ", ("nudger", NUDGER_STYLE))


def to_html(answer: Pieces, *, css: bool = True) -> str:
    """The answer as HTML: nudger spans in `<span class="nudger">`, all text escaped.

    With `css`, a `<style>` block is prepended so the snippet renders on its own (e.g. in a notebook
    via `IPython.display.HTML`); pass `css=False` to style `.nudging .nudger` yourself.
    """
    parts = []
    for span in _spans(answer):
        escaped = html.escape(span.text)
        parts.append(f'<span class="nudger">{escaped}</span>' if span.source == "nudger" else escaped)
    body = f'<div class="nudging">{"".join(parts)}</div>'
    return f"<style>{HTML_STYLE}</style>{body}" if css else body


def summary(stats: Stats) -> str:
    """One line of stats: tokens, nudge share (of tokens and of words), rounds, speed, why it stopped."""
    return (
        f"{stats.output_tokens} tokens · nudged {stats.nudge_share:.0%} of tokens, "
        f"{stats.word_share:.0%} of words · {stats.rounds} round{'' if stats.rounds == 1 else 's'} · "
        f"{stats.tokens_per_second:.1f} tokens/s · stop: {stats.stop_reason}"
    )
