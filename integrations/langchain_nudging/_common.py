"""What NudgingLLM and ChatNudging share: the Nudger, per-call engine settings, result metadata.
(Running the engine off the event loop is the Nudger's own `agenerate`/`astream`.)"""

from __future__ import annotations

import dataclasses
from typing import Any

from nudging import Nudger, NudgingConfig, Result
from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import Self

_ENGINE_FIELDS = frozenset(f.name for f in dataclasses.fields(NudgingConfig))
Prompt = str | list[dict[str, str]]  # what the engine takes: text, or role/content messages


class NudgingParams(BaseModel):
    """Fields of both LangChain models. Unset (None) fields fall back to `nudger.config`."""

    nudger: Nudger = Field(exclude=True)
    """The engine: a base model nudged by a small chat model."""
    model_name: str = ""
    """Name reported to LangChain tracing; defaults to "<base>+<nudger>"."""
    gamma: float | None = None
    """The base writes while its top-1 probability is >= gamma; below it the nudger writes."""
    policy: Any = Field(default=None, exclude=True)
    """A policy that decides instead of gamma, e.g. `nudging.LearnedPolicy.load("head.safetensors")`."""
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    max_tokens: int | None = Field(default=None, alias="max_new_tokens")
    """Answer budget, counted in base-tokenizer ids (the engine's `max_new_tokens`)."""
    stop: list[str] | None = None
    """Default stop strings; a per-call `stop` replaces them. Cut exactly: never part of the output."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Any other NudgingConfig field, e.g. {"draft_tokens": 8, "system": "Be brief."}."""

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    @model_validator(mode="after")
    def _validate(self) -> Self:
        unknown = set(self.model_kwargs) - _ENGINE_FIELDS
        if unknown:
            raise ValueError(f"model_kwargs has fields NudgingConfig does not know: {sorted(unknown)}")
        if not self.model_name:
            self.model_name = f"{self.nudger.base.name}+{self.nudger.nudger.name}"
        self.engine_config()  # bad gamma / sampling values fail here, not at the first call
        return self

    @classmethod
    def from_pretrained(
        cls,
        base: Any,
        nudger: Any,
        *,
        base_tokenizer: Any = None,
        nudger_tokenizer: Any = None,
        device_map: Any = None,
        dtype: Any = "auto",
        config: NudgingConfig | None = None,
        **fields: Any,
    ) -> Self:
        """Load both models (HF ids, local dirs, .gguf files, or loaded models) and wrap them; `fields` are this class's fields."""
        engine = Nudger.from_pretrained(
            base, nudger, base_tokenizer=base_tokenizer, nudger_tokenizer=nudger_tokenizer, device_map=device_map, dtype=dtype, config=config
        )
        return cls(nudger=engine, **fields)

    @classmethod
    def default(cls, *, config: NudgingConfig | None = None, **fields: Any) -> Self:
        """The embedded offline pair: gemma-3-270m nudged by SmolLM2-135M-Instruct."""
        return cls(nudger=Nudger.default(config=config), **fields)

    def engine_overrides(self, stop: list[str] | None = None, kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        """Engine keyword overrides for one call: fields, then call kwargs (NudgingConfig names), then stop."""
        kwargs = dict(kwargs or {})
        if "max_tokens" in kwargs:
            kwargs["max_new_tokens"] = kwargs.pop("max_tokens")
        unknown = set(kwargs) - _ENGINE_FIELDS
        if unknown:
            raise TypeError(f"unexpected keyword arguments {sorted(unknown)}; per-call settings are NudgingConfig fields")
        params: dict[str, Any] = {
            "gamma": self.gamma,
            "policy": self.policy,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "seed": self.seed,
            "max_new_tokens": self.max_tokens,
            "stop": self.stop,
            **self.model_kwargs,
            **kwargs,
        }
        if stop is not None:
            params["stop"] = stop
        return {k: v for k, v in params.items() if v is not None}

    def engine_config(self) -> NudgingConfig:
        """The engine settings a call without overrides runs with."""
        return self.nudger.config.merged(**self.engine_overrides())

    def get_token_ids(self, text: str) -> list[int]:
        """`text` in the base model's tokenizer (offline; what budgets and usage count), no special tokens."""
        return self.nudger.base.tokenizer.encode(text, add_special_tokens=False)

    def get_num_tokens(self, text: str) -> int:
        return len(self.get_token_ids(text))

    @property
    def nudging_params(self) -> dict[str, Any]:
        """What identifies this model's outputs: both models, gamma, sampling and budget."""
        cfg = self.engine_config()
        params = {
            "model_name": self.model_name,
            "base": self.nudger.base.name,
            "nudger": self.nudger.nudger.name,
            "gamma": cfg.gamma,
            "draft_tokens": cfg.draft_tokens,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "top_k": cfg.top_k,
            "seed": cfg.seed,
            "max_new_tokens": cfg.max_new_tokens,
        }
        if cfg.policy is not None:  # outputs depend on the policy, not gamma
            params["policy"] = getattr(cfg.policy, "digest", None) or repr(cfg.policy)
        return params


def result_metadata(result: Result) -> dict[str, Any]:
    """Provenance and counts of one generation, as plain data (spans as dicts, stats, exact prompts).
    `finish_reason` is OpenAI's ("stop", "length", "tool_calls"); `stop_reason` the engine's own."""
    data = result.to_dict()
    return {
        "finish_reason": result.finish_reason,
        "stop_reason": result.stats.stop_reason,
        "nudge_share": result.stats.nudge_share,
        "spans": data["spans"],
        "stats": data["stats"],
        "prompts": data["prompts"],
    }
