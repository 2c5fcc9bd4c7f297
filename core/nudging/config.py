"""NudgingConfig: every knob of one nudged generation, validated once, up front."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ConfigError
from .tools import check_response_format, check_tool_choice, check_tools


@dataclass(frozen=True)
class SamplingParams:
    """How one model picks a token. temperature 0 means greedy (argmax)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, (int, float)) and self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not (isinstance(self.top_k, int) and self.top_k >= 0):
            raise ConfigError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class BaseTemplate:
    """Plain-text prompt for the base model, as in the paper: `{system}\\n{question prefix}{question}\\n{answer prefix}`.

    Earlier turns of a conversation are rendered as question/answer pairs in the same format.
    A base model knows no end of turn: after its answer it tends to write the template's next
    question itself ("\\nQuestion: ..."). `next_turn` is that marker, and chat answers end there
    (a stop string, as a chat template's end-of-turn token ends a chat model's answer) unless
    `stop_at_next_turn` is False.
    """

    question_prefix: str = "Question: "
    answer_prefix: str = "Answer: "
    turn_separator: str = "\n"
    stop_at_next_turn: bool = True

    @property
    def next_turn(self) -> str | None:
        """The text that starts the base's own next question: separator + question prefix without
        its trailing whitespace ("\\nQuestion:"); None when off or the prefix is blank."""
        prefix = self.question_prefix.rstrip()
        return self.turn_separator + prefix if self.stop_at_next_turn and prefix else None


@dataclass(frozen=True)
class NudgingConfig:
    """Settings of one nudged generation.

    gamma: the base writes while its top-1 probability is >= gamma. gamma = 0 means the base
        always writes (pure base decoding); any gamma > 1 means the nudger always writes.
    draft_tokens: K, the most nudger tokens drafted per nudge round.
    max_new_tokens: budget counted in base-tokenizer ids of the answer.
    stop: strings that end generation; the stop string itself is not returned.
    speculation: reuse the unused tail of a nudger draft as a speculative draft for the base.
        Exact: outputs are identical with it on or off.
    adaptive_draft: draft a word at a time and verify where one more word is not worth its forwards
        (measured forward costs and acceptance: decoding/costs.py); the rounds together give the
        nudge one K-id draft gives, so greedy text is the same except where the base tokenizes the
        shorter draft's text before a boundary differently. False: every round drafts K ids.
    paper_compat: the authors' two heuristics: the nudger always writes the first word, and a nudge
        also ends where the base's top token is a prefix of the nudger's next word.
    repetition_limit: stop when the same nudge is accepted this many rounds in a row (paper: 3).
    system: system text for both prompts (None: the nudger template's default, no base line).
    policy: decides where the nudger writes instead of `gamma` (e.g. `LearnedPolicy.load(path)`);
        None: the paper's rule, `TopProbPolicy(gamma)`.
    response_format: constrain the answer: {"type": "json_object"}, {"type": "json_schema",
        "json_schema": {"schema": {...}}} (OpenAI's forms), a bare JSON schema, {"type": "regex",
        "pattern": ...} or {"type": "lark", "grammar": ...}. Both models' logits are masked by the
        grammar; the policy reads the masked, renormalised distribution (so gamma compares the
        base's top-1 probability among the allowed ids).
    tools / tool_choice / parallel_tool_calls: OpenAI-style function tools, described to both
        models (nudging/tools.py); the answer is parsed into `Result.tool_calls`. tool_choice:
        "auto" (text or calls), "required" (or "any"), "none", or a tool name / {"type": "function",
        "function": {"name": ...}}. When constrained, a grammar forces well-formed calls.
    tool_opener: who writes the first word of an answer to a request with tools under tool_choice
        "auto" in a nudged run (0 < gamma <= 1), where the call-or-text decision is made: "policy"
        (the gamma rule, as everywhere else), "nudger" or "base" (measured in
        benchmarks/tools/decision.py; gamma 0 and gamma > 1 keep one writer whatever it says).
    call_threshold: under tool_choice "auto" with the grammar on, the call-or-text decision made
        once at the answer's start by the nudger's probability of opening a call (its masked,
        renormalised distribution): at or above it the answer is calls only, below it text only
        (no call). Runs the nudger on the prompt even where the base would write the first word;
        base-only runs (gamma 0) ignore it. None: no decision, each model writes either as it goes.
        The embedded pair's value is calibrated with `benchmarks/tools/calibrate.py` (docs/tools.md).
    grounded_calls: with call_threshold, a call the decision chose is written first and kept only
        when it is grounded (nudging/grounding.py: its argument values come from the conversation,
        and it repeats no call the conversation already holds); otherwise the answer is written
        again as text. A kept call's text reaches a stream once it is checked.
    call_gamma: gamma inside an answer that is tool calls (tool_choice "required" or a named tool,
        or "auto" once call_threshold decided a call) with the grammar on, in nudged and
        nudger-only runs: e.g. 2 lets the nudger write every call where it writes better calls than
        the base (the embedded pair, docs/tools.md). None: gamma (or the policy) as everywhere.
    constrained: False keeps tools/response_format in the prompts and parsing but masks nothing
        (the unconstrained baseline of the measurements).
    drafter: drafts for the base's own stretches, verified in the forward that runs the base's
        chosen id (exact: outputs are identical with it on or off). "ngram": an adaptive tri-gram
        table over the answer's base ids plus prompt lookup; an `NgramTable` (built from a corpus
        with `nudging draft-table`): the same, backed by that table; "off" (or None): no drafts.
    draft_max: the most ids one base-stretch draft proposes (fewer while acceptance is low).
    """

    gamma: float = 0.4
    draft_tokens: int = 16
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    nudger_temperature: float | None = None
    nudger_top_p: float | None = None
    seed: int | None = None
    speculation: bool = True
    adaptive_draft: bool = True
    paper_compat: bool = False
    repetition_limit: int = 3
    system: str | None = None
    base_template: BaseTemplate = field(default_factory=BaseTemplate)
    policy: Any = field(default=None, compare=False)
    response_format: Any = None
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: bool = True
    tool_opener: str = "policy"
    call_threshold: float | None = None
    call_gamma: float | None = None
    grounded_calls: bool = False
    constrained: bool = True
    drafter: Any = field(default="ngram", compare=False)
    draft_max: int = 8

    def __post_init__(self) -> None:
        if self.policy is not None and not callable(getattr(self.policy, "confident", None)):
            raise ConfigError(f"policy must have a confident(logits, hidden=None) method, got {self.policy!r}")
        if not (self.drafter in (None, "off", "ngram") or callable(getattr(self.drafter, "fill", None))):
            raise ConfigError(f"drafter must be 'ngram', 'off' (or None) or an NgramTable, got {self.drafter!r}")
        if not (isinstance(self.draft_max, int) and self.draft_max >= 1):
            raise ConfigError(f"draft_max must be an integer >= 1, got {self.draft_max!r}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        g = self.gamma
        if isinstance(g, bool) or not isinstance(g, (int, float)) or math.isnan(g) or g < 0:
            raise ConfigError(
                f"gamma must be a number >= 0 (0: base only, 0..1: nudge when the base's top-1 "
                f"probability is below gamma, >1: always nudge), got {g!r}"
            )
        if not (isinstance(self.draft_tokens, int) and self.draft_tokens >= 1):
            raise ConfigError(f"draft_tokens must be an integer >= 1, got {self.draft_tokens!r}")
        if not (isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1):
            raise ConfigError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if any(not isinstance(s, str) or s == "" for s in self.stop):
            raise ConfigError(f"stop strings must be non-empty strings, got {self.stop!r}")
        if not (isinstance(self.repetition_limit, int) and self.repetition_limit >= 0):
            raise ConfigError(f"repetition_limit must be an integer >= 0 (0 = off), got {self.repetition_limit!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool) or not -(2**63) <= self.seed < 2**64):
            raise ConfigError(f"seed must be an integer in [-2**63, 2**64) or None, got {self.seed!r}")
        object.__setattr__(self, "response_format", check_response_format(self.response_format))
        if self.tools is not None:
            object.__setattr__(self, "tools", check_tools(self.tools) or None)
        object.__setattr__(self, "tool_choice", check_tool_choice(self.tool_choice, self.tools or ()))
        if self.tool_opener not in ("policy", "nudger", "base"):
            raise ConfigError(f"tool_opener must be 'policy', 'nudger' or 'base', got {self.tool_opener!r}")
        t = self.call_threshold
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1):
            raise ConfigError(f"call_threshold must be a probability in [0, 1] or None, got {t!r}")
        c = self.call_gamma
        if c is not None and (isinstance(c, bool) or not isinstance(c, (int, float)) or math.isnan(c) or c < 0):
            raise ConfigError(f"call_gamma must be a number >= 0 (a gamma for tool calls) or None, got {c!r}")
        if not isinstance(self.grounded_calls, bool):
            raise ConfigError(f"grounded_calls must be True or False, got {self.grounded_calls!r}")
        # Build both sampling params now so bad values fail here, not mid-generation.
        self.base_sampling
        self.nudger_sampling

    @property
    def base_sampling(self) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_p, self.top_k)

    @property
    def nudger_sampling(self) -> SamplingParams:
        t = self.temperature if self.nudger_temperature is None else self.nudger_temperature
        p = self.top_p if self.nudger_top_p is None else self.nudger_top_p
        return SamplingParams(t, p, self.top_k)

    def merged(self, **overrides: Any) -> NudgingConfig:
        """A copy with the given fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def with_tool_settings(self, pair: NudgingConfig) -> NudgingConfig:
        """A copy with `pair`'s call_threshold, call_gamma and grounded_calls (a loaded pair's measured tool
        settings), for configs built afresh: the CLI's, the evaluations'."""
        return self.merged(call_threshold=pair.call_threshold, call_gamma=pair.call_gamma, grounded_calls=pair.grounded_calls)
