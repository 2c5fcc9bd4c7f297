"""Proxy-tuning (Liu et al., 2024), the NUDGING paper's baseline for pairs that share a vocabulary.

Every token is the base's pick from base logits + (chat logits − chat-base logits): the small chat
model and its own base (the "anti-expert") steer the large base token by token. Three forwards per
token and one vocabulary for all three models, where nudging needs neither. The base and the
chat-base read the plain template, the chat model its chat template (as in nudging).
"""

from __future__ import annotations

import time
from typing import Any

from ..backends.local import LocalModel
from ..config import NudgingConfig
from ..decoding.sampling import Sampler
from ..decoding.transcript import Transcript
from ..errors import ConfigError
from ..nudger import Nudger
from ..prompts import Prompt, build_prompts
from ..results import Result, Span, Stats
from ..text.sync import IncrementalDecoder


def as_backend(model: Any, tokenizer: Any = None) -> LocalModel:
    return model if isinstance(model, LocalModel) else LocalModel(model, tokenizer)


def check_vocabulary(*models: LocalModel) -> None:
    """Proxy-tuning adds logits id by id: every tokenizer must map the same strings to the same ids."""
    first = models[0].tokenizer.get_vocab()
    for lm in models[1:]:
        if lm.tokenizer.get_vocab() != first:
            raise ConfigError(f"proxy-tuning needs one vocabulary, but {lm.name} and {models[0].name} tokenize differently (use nudging for such pairs)")


def proxy_generate(pair: Nudger, chat_base: LocalModel, prompt: Prompt, config: NudgingConfig | None = None, **overrides: Any) -> Result:
    """Answer `prompt` with pair.base steered by pair.nudger (the chat expert) against `chat_base`.

    Honours max_new_tokens, stop, EOS and the base's sampling settings. The Result has one span,
    labelled "base" (every token is the base's pick from the mixed logits); nudge counts are 0.
    """
    cfg = pair._config(config, overrides)
    base, chat = pair.base, pair.nudger
    if not all(isinstance(m, LocalModel) for m in (base, chat, chat_base)):
        raise ConfigError("proxy-tuning needs three local models (it reads every model's full logits)")
    check_vocabulary(base, chat, chat_base)
    texts, (base_ids, chat_ids) = build_prompts(base, chat, prompt, cfg)
    sessions = [base.session(), chat.session(), chat_base.session()]
    pending = [base_ids, chat_ids, base_ids]
    sampler = Sampler(cfg.base_sampling, cfg.seed)
    eos = base.eos_ids | chat.eos_ids
    transcript = Transcript(cfg.stop)
    ids = list(base_ids)
    decoder = IncrementalDecoder(base.tokenizer, ids)
    reason, n = "length", 0
    t0 = time.perf_counter()
    try:
        while n < cfg.max_new_tokens:
            lb, lc, la = (s.forward(p, keep=1)[0] for s, p in zip(sessions, pending))
            vocab = min(len(lb), len(lc), len(la))  # output layers may be padded past the vocabulary
            token = sampler.pick(lb[:vocab] + lc[:vocab] - la[:vocab])
            if token in eos:
                reason = "eos"
                break
            ids.append(token)
            n += 1
            if transcript.add(decoder.step(ids), "base"):
                reason = "stop"
                break
            pending = [[token]] * 3
    finally:
        forwards = sessions[0].forwards
        for s in sessions:
            s.close()
    seconds = time.perf_counter() - t0
    text = transcript.text
    stats = Stats(
        prompt_tokens=len(base_ids),
        output_tokens=n,
        base_tokens=n,
        base_forwards=forwards,
        nudger_forwards=forwards,
        seconds=seconds,
        tokens_per_second=n / seconds if seconds > 0 else 0.0,
        stop_reason=reason,
    )
    return Result(text, [Span(text, "base")] if text else [], stats, dict(texts))
