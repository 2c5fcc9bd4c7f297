"""What a generation returns: text with provenance, counts, and the exact prompts used."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Source = Literal["base", "nudger"]
StopReason = Literal["eos", "stop", "length", "repetition", "cancelled"]


@dataclass(frozen=True)
class Span:
    """A run of answer text written by one model."""

    text: str
    source: Source


@dataclass
class Stats:
    """Counts of one generation. Token counts are ids of the base model's view of the answer."""

    prompt_tokens: int = 0
    output_tokens: int = 0
    base_tokens: int = 0
    nudger_tokens: int = 0
    nudge_share: float = 0.0
    word_share: float = 0.0
    rounds: int = 0
    base_forwards: int = 0
    nudger_forwards: int = 0
    speculated_tokens: int = 0  # base tokens whose logits came from a draft (nudger tail or drafter) without a forward of their own
    drafted_tokens: int = 0  # ids the base-stretch drafter proposed
    draft_accepted_tokens: int = 0  # of those, ids the base then wrote itself
    base_seconds: float = 0.0  # time in base forwards
    nudger_seconds: float = 0.0  # time in nudger forwards
    seconds: float = 0.0
    tokens_per_second: float = 0.0
    stop_reason: StopReason = "eos"
    mask_seconds: float = 0.0  # time computing and applying grammar masks (constrained output)
    call_probability: float | None = None  # the nudger's probability of opening a call, where call_threshold decided
    call_rejected: str | None = None  # why a written call was not kept and the answer became text (grounded_calls)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Result:
    """`text` is everything generated (spans join to it). With tools, `tool_calls` holds the valid
    calls parsed from it in OpenAI's form, `invalid_tool_calls` the others (each with an "error":
    cut by the budget, or arguments that do not match the tool's schema), and `content` the text
    before the calls (else content == text)."""

    text: str
    spans: list[Span]
    stats: Stats
    prompts: dict[str, str] = field(default_factory=dict)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    content: str | None = None
    invalid_tool_calls: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.content is None:
            self.content = self.text

    @property
    def finish_reason(self) -> Literal["stop", "length", "tool_calls"]:
        """OpenAI's finish reason: "length" when the budget or a context window cut the answer
        (constrained output may then be incomplete), "tool_calls" when it holds calls, else "stop"."""
        if self.stats.stop_reason == "length":
            return "length"
        return "tool_calls" if self.tool_calls else "stop"

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "spans": [asdict(s) for s in self.spans],
            "stats": self.stats.to_dict(),
            "prompts": dict(self.prompts),
            "tool_calls": list(self.tool_calls),
            "content": self.content,
            "invalid_tool_calls": list(self.invalid_tool_calls),
            "finish_reason": self.finish_reason,
        }


@dataclass(frozen=True)
class StreamEvent:
    """A piece of newly accepted text; the deltas of a stream concatenate to the final text."""

    text: str
    source: Source


def word_share(spans: list[Span]) -> float:
    """The paper's measure: words whose first character the nudger wrote ÷ all words."""
    owners: list[Source] = []
    for span in spans:
        owners.extend([span.source] * len(span.text))
    text = "".join(s.text for s in spans)
    starts = [m.start() for m in re.finditer(r"\S+", text)]
    if not starts:
        return 0.0
    return sum(owners[i] == "nudger" for i in starts) / len(starts)
