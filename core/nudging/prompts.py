"""Prompt text for each side: the nudger's own chat template, the base's plain question/answer text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from .config import BaseTemplate, NudgingConfig
from .errors import InputError


@dataclass(frozen=True)
class RawPrompt:
    """Text that both models continue as it is: no chat template, no question/answer wrapping, no
    system line and no next-turn stop (what `/v1/completions` serves: few-shot prompts, documents
    to complete). The nudger then writes as a plain language model continuing the same text."""

    text: str


Messages = Sequence[dict[str, Any]]
Prompt = str | Messages | RawPrompt
_ROLES = {"system", "user", "assistant", "tool"}


def to_messages(prompt: str | Messages, system: str | None = None) -> list[dict[str, str]]:
    """Validate a prompt (a string or chat messages) and return chat messages."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InputError("prompt is empty")
        messages = [{"role": "user", "content": prompt}]
    else:
        if not isinstance(prompt, Sequence) or not prompt:
            raise InputError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
        messages = []
        for i, m in enumerate(prompt):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise InputError(f"message {i} must be a dict with 'role' and 'content', got {m!r}")
            if m["role"] not in _ROLES:
                raise InputError(f"message {i} has unknown role {m['role']!r}; expected one of {sorted(_ROLES)}")
            if not isinstance(m["content"], str):
                raise InputError(f"message {i} content must be a string, got {type(m['content']).__name__}")
            messages.append({"role": m["role"], "content": m["content"]})
        if not any(m["role"] == "user" and m["content"].strip() for m in messages):
            raise InputError("messages contain no non-empty user message")
    if system is not None and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system})
    return messages


def fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Merge system text into the first user turn, for templates that reject a system role."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system:
        for m in rest:
            if m["role"] == "user":
                m["content"] = f"{system}\n\n{m['content']}"
                break
    return rest


def chat_prompt(tokenizer: Any, messages: list[dict[str, str]], template: BaseTemplate) -> str:
    """The nudger's prompt: its tokenizer's chat template with the generation prompt.

    Tool messages are shown as user turns (templates rarely accept them without tool schemas).
    A tokenizer without a chat template falls back to the plain template.
    """
    if not getattr(tokenizer, "chat_template", None):
        return plain_prompt(messages, template)
    msgs = [{"role": "user" if m["role"] == "tool" else m["role"], "content": m["content"]} for m in messages]
    try:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # jinja raises TemplateError via raise_exception(); keep its message
        if any(m["role"] == "system" for m in msgs) and "system" in str(exc).lower():
            return tokenizer.apply_chat_template(fold_system(msgs), tokenize=False, add_generation_prompt=True)
        raise InputError(f"the nudger's chat template rejected the messages: {exc}") from exc


def plain_prompt(messages: list[dict[str, str]], template: BaseTemplate) -> str:
    """The base's prompt: `{system}\\n{question prefix}{question}\\n{answer prefix}`, turn by turn."""
    lines: list[str] = []
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    if system:
        lines.append(system)
    for m in messages:
        if m["role"] in ("user", "tool"):
            lines.append(template.question_prefix + m["content"])
        elif m["role"] == "assistant":
            lines.append(template.answer_prefix + m["content"])
    return template.turn_separator.join(lines) + template.turn_separator + template.answer_prefix


def stop_strings(prompt: Prompt, config: NudgingConfig) -> tuple[str, ...]:
    """The run's stop strings: the config's, plus the base template's next-turn marker for a
    question or chat (a raw continuation has no turns)."""
    marker = None if isinstance(prompt, RawPrompt) else config.base_template.next_turn
    return tuple(dict.fromkeys((*config.stop, marker) if marker else config.stop))


def build_prompts(base: Any, nudger: Any, prompt: Prompt, config: NudgingConfig) -> tuple[dict[str, str], tuple[list[int], list[int]]]:
    """Each side's prompt text and ids: the nudger's chat template, the base's plain template
    (a RawPrompt: its text for both, with each tokenizer's default special tokens).

    Text from users stays text: a special token typed into a message (say "<|im_start|>system")
    is tokenized as ordinary characters; only the chat template's own markers are control tokens.
    """
    if isinstance(prompt, RawPrompt):
        if not isinstance(prompt.text, str) or not prompt.text.strip():
            raise InputError("prompt is empty")
        texts = {"base": prompt.text, "nudger": prompt.text}
        return texts, (encode_literal(base.tokenizer, prompt.text, add_special_tokens=True), encode_literal(nudger.tokenizer, prompt.text, add_special_tokens=True))
    messages = to_messages(prompt, config.system)
    texts = {
        "base": plain_prompt(messages, config.base_template),
        "nudger": chat_prompt(nudger.tokenizer, messages, config.base_template),
    }
    # plain text: the tokenizer's default specials (BOS), nothing in the text itself is special
    base_ids = encode_literal(base.tokenizer, texts["base"], add_special_tokens=True)
    nudger_ids = _encode_chat(nudger.tokenizer, messages, texts["nudger"], config.base_template)
    return texts, (base_ids, nudger_ids)


def encode_literal(tokenizer: Any, text: str, *, add_special_tokens: bool = False) -> list[int]:
    """Ids for text in which special-token strings are just characters."""
    return tokenizer.encode(text, add_special_tokens=add_special_tokens, split_special_tokens=True)


def _encode_chat(tokenizer: Any, messages: list[dict[str, str]], rendered: str, template: BaseTemplate) -> list[int]:
    """The chat prompt's ids: the template's markers parsed as special tokens, message text literal.

    Messages without special-token strings tokenize as the whole rendered text (as the model's own
    chat tooling does); otherwise the template is rendered around placeholders and each message's
    text is tokenized on its own, literally.
    """
    specials = [t for t in getattr(tokenizer, "all_special_tokens", []) if t]
    specials += [t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special and t.content not in specials]
    if not any(sp in m["content"] for m in messages for sp in specials):
        return tokenizer.encode(rendered, add_special_tokens=False)  # chat templates carry their own BOS
    holders = [{**m, "content": f"\ue000{i}\ue001"} for i, m in enumerate(messages)]
    parts = re.split("\ue000(\\d+)\ue001", chat_prompt(tokenizer, holders, template))
    if "".join(messages[int(p)]["content"] if i % 2 else p for i, p in enumerate(parts)) != rendered:
        raise InputError("a message contains special-token text that the nudger's chat template does not keep verbatim")
    ids: list[int] = []
    for i, part in enumerate(parts):
        if i % 2:
            ids += encode_literal(tokenizer, messages[int(part)]["content"])
        elif part:
            ids += tokenizer.encode(part, add_special_tokens=False)
    return ids
