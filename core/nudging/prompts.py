"""Prompt text for each side: the nudger's own chat template, the base's plain question/answer text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

from .config import BaseTemplate, NudgingConfig
from .errors import InputError
from .tools import base_tools_turns, call_parts, offered, render_calls, render_tool_result, tools_system_text


@dataclass(frozen=True)
class RawPrompt:
    """Text that both models continue as it is: no chat template, no question/answer wrapping, no
    system line and no next-turn stop (what `/v1/completions` serves: few-shot prompts, documents
    to complete). The nudger then writes as a plain language model continuing the same text."""

    text: str


Messages = Sequence[dict[str, Any]]
Prompt = str | Messages | RawPrompt
_ROLES = {"system", "user", "assistant", "tool"}


def to_messages(prompt: str | Messages, system: str | None = None) -> list[dict[str, Any]]:
    """Validate a prompt (a string or chat messages) and return chat messages (an assistant turn
    may carry OpenAI `tool_calls`, its content then may be empty)."""
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
            calls = m.get("tool_calls") if m["role"] == "assistant" else None
            if calls:
                _check_calls(i, calls)
            content = "" if calls and m["content"] is None else m["content"]
            if not isinstance(content, str):
                raise InputError(f"message {i} content must be a string, got {type(m['content']).__name__}")
            messages.append({"role": m["role"], "content": content, **({"tool_calls": list(calls)} if calls else {})})
        if not any(m["role"] == "user" and m["content"].strip() for m in messages):
            raise InputError("messages contain no non-empty user message")
    if system is not None and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system})
    return messages


def _check_calls(i: int, calls: Any) -> None:
    """An assistant turn's OpenAI tool_calls: each {"function": {"name": str, "arguments": a JSON
    object, or its text}} (or the bare {"name", "arguments"}); an error names the field."""
    if not isinstance(calls, Sequence) or isinstance(calls, str):
        raise InputError(f"message {i} tool_calls must be a list of calls, got {type(calls).__name__}")
    for j, c in enumerate(calls):
        where = f"message {i} tool_calls[{j}]"
        fn = c.get("function", c) if isinstance(c, dict) else None
        if not isinstance(fn, dict):
            raise InputError(f"{where} must be {{'type': 'function', 'function': {{'name': ..., 'arguments': ...}}}}, got {c!r}")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise InputError(f"{where}.function.name must be a non-empty string, got {fn.get('name')!r}")
        args = fn.get("arguments")
        if isinstance(args, str) and args.strip():
            try:
                args = json.loads(args)
            except ValueError as exc:
                raise InputError(f"{where}.function.arguments is not valid JSON ({exc}): {fn['arguments'][:80]!r}") from None
        if args not in (None, "") and not isinstance(args, dict):
            raise InputError(f"{where}.function.arguments must be a JSON object, got {args!r}"[:300])


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


def as_text_turns(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Messages with tool calls and results written out as text (tools.py's format), for
    templates without native tool turns: a tool result becomes a user turn."""
    out = []
    for m in messages:
        content = m["content"]
        if m.get("tool_calls"):
            content = "\n".join(p for p in (content, render_calls(m["tool_calls"])) if p)
        if m["role"] == "tool":
            out.append({"role": "user", "content": render_tool_result(content)})
        else:
            out.append({"role": m["role"], "content": content})
    return out


def native_tools(tokenizer: Any) -> bool:
    """Whether a chat template renders `tools=` itself."""
    return "tools" in (getattr(tokenizer, "chat_template", None) or "")


def with_system(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """`text` appended to the system turn (one is added first when there is none)."""
    if any(m["role"] == "system" for m in messages):
        return [{**m, "content": f"{m['content']}\n\n{text}"} if m["role"] == "system" else m for m in messages]
    return [{"role": "system", "content": text}, *messages]


def chat_prompt(tokenizer: Any, messages: list[dict[str, Any]], template: BaseTemplate, tools: Any = None, tool_choice: Any = None) -> str:
    """The nudger's prompt: its tokenizer's chat template with the generation prompt.

    Tools go through the template's `tools=` when it has one, else into the system text
    (tools.TOOLS_PROMPT); tool calls and results are then written out as text turns.
    A tokenizer without a chat template falls back to the plain template.
    """
    if not getattr(tokenizer, "chat_template", None):
        return plain_prompt(messages, template, tools, tool_choice)
    kwargs: dict[str, Any] = {}
    if tools and native_tools(tokenizer):
        kwargs["tools"] = list(tools)
        msgs = [_native_turn(m) for m in messages]
    else:
        msgs = as_text_turns(messages)
        if tools:
            msgs = with_system(msgs, tools_system_text(tools, tool_choice))
    try:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, **kwargs)
    except Exception as exc:  # jinja raises TemplateError via raise_exception(); keep its message
        if any(m["role"] == "system" for m in msgs) and "system" in str(exc).lower():
            return tokenizer.apply_chat_template(fold_system(msgs), tokenize=False, add_generation_prompt=True, **kwargs)
        raise InputError(f"the nudger's chat template rejected the messages: {exc}") from exc


def _native_turn(m: dict[str, Any]) -> dict[str, Any]:
    """A message for a template with tool support: HF templates take call arguments as dicts."""
    if not m.get("tool_calls"):
        return m
    calls = [{"type": "function", "function": dict(zip(("name", "arguments"), call_parts(c)))} for c in m["tool_calls"]]
    return {**m, "tool_calls": calls}


def plain_prompt(messages: list[dict[str, Any]], template: BaseTemplate, tools: Any = None, tool_choice: Any = None) -> str:
    """The base's prompt: `{system}\\n{question prefix}{question}\\n{answer prefix}`, turn by turn
    (calls and results written out as text). Tools make it a document the base continues: their
    listing after the system text, then a worked question -> call turn (tools.base_tools_turns)."""
    if tools:
        header, worked = base_tools_turns(tools, tool_choice)
        system = [m for m in messages if m["role"] == "system"]
        messages = with_system(system, header) + worked + [m for m in messages if m["role"] != "system"]
    messages = as_text_turns(messages)
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
    tools = offered(config)  # tool_choice "none": no tool prompt
    texts = {
        "base": plain_prompt(messages, config.base_template, tools, config.tool_choice),
        "nudger": chat_prompt(nudger.tokenizer, messages, config.base_template, tools, config.tool_choice),
    }
    # plain text: the tokenizer's default specials (BOS), nothing in the text itself is special
    base_ids = encode_literal(base.tokenizer, texts["base"], add_special_tokens=True)
    nudger_ids = _encode_chat(nudger.tokenizer, messages, texts["nudger"], config)
    return texts, (base_ids, nudger_ids)


def encode_literal(tokenizer: Any, text: str, *, add_special_tokens: bool = False) -> list[int]:
    """Ids for text in which special-token strings are just characters."""
    return tokenizer.encode(text, add_special_tokens=add_special_tokens, split_special_tokens=True)


def _encode_chat(tokenizer: Any, messages: list[dict[str, Any]], rendered: str, config: NudgingConfig) -> list[int]:
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
    parts = re.split("\ue000(\\d+)\ue001", chat_prompt(tokenizer, holders, config.base_template, offered(config), config.tool_choice))
    if "".join(messages[int(p)]["content"] if i % 2 else p for i, p in enumerate(parts)) != rendered:
        raise InputError("a message contains special-token text that the nudger's chat template does not keep verbatim")
    ids: list[int] = []
    for i, part in enumerate(parts):
        if i % 2:
            ids += encode_literal(tokenizer, messages[int(part)]["content"])
        elif part:
            ids += tokenizer.encode(part, add_special_tokens=False)
    return ids
