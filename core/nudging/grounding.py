"""Is a tool call supported by the conversation? (`NudgingConfig.grounded_calls`)

A small model forced to call writes *some* call: on a request its tools cannot serve it fills the
arguments with zeros, empty strings and lists, the first example that comes to mind, or one phrase
of the request copied into every argument. A call worth making takes its argument values from the
conversation (the user's words, a tool's result), each from a place of its own. So a call is
grounded when every value it chose is found there as often as it is used, by this call and the
calls made since the user's last message (an agent that chains calls spends each value once): a
number among the conversation's numbers (a percentage also as a fraction), a string whose words
all occur in it. Values the schema offers (an enum member, the default) and zero need not be found
(they count where they are), booleans and null are not checked; but a call with arguments must
take at least one value from the conversation (a tool without parameters has nothing to check).
A call that repeats one the conversation already holds (same tool, same arguments) is not made
again: its answer is in the conversation.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from .tools import call_parts

_NUMBER = re.compile(r"-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")
_WORD = re.compile(r"[^\W_]+")


def _numbers(text: str) -> list[float]:
    out = []
    for m in _NUMBER.findall(text):
        try:
            out.append(float(m.replace(",", "")))
        except ValueError:
            continue
    return out


def _count(numbers: list[float], x: float) -> int:
    """How many of the conversation's numbers are x (as written, or as a percentage of it)."""
    return sum(abs(x - y) <= 1e-9 * max(1.0, abs(y)) or abs(x - y / 100) <= 1e-9 * max(1.0, abs(y / 100)) for y in numbers)


def _leaves(value: Any, schema: Any) -> list[tuple[Any, dict[str, Any]]]:
    """(value, its schema) for every scalar inside an argument value."""
    schema = schema if isinstance(schema, dict) else {}
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        return [leaf for k, v in value.items() for leaf in _leaves(v, props.get(k))]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v, schema.get("items"))]
    return [(value, schema)]


def _key(value: Any) -> Any:
    """What a value is counted as: a number, or the words of a string."""
    return float(value) if isinstance(value, (int, float)) else tuple(sorted(_WORD.findall(str(value).lower())))


def unsupported(call: dict[str, Any], tools: Any, messages: list[dict[str, Any]]) -> list[str]:
    """Why `call` (OpenAI form) is not grounded in `messages`: the arguments whose values the
    conversation does not hold (counting the values the calls since the user's last message
    already took), or that it repeats an earlier call; [] when it is grounded."""
    name, args = call_parts(call)
    for m in messages:
        if any(call_parts(c) == (name, args) for c in m.get("tool_calls") or ()):
            return [f"repeats the earlier call {name}({json.dumps(args, ensure_ascii=False)})"]
    text = "\n".join(m["content"] for m in messages if m["role"] != "assistant" and isinstance(m.get("content"), str))
    words, numbers = Counter(_WORD.findall(text.lower())), _numbers(text)
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    earlier = [call_parts(c)[1] for m in messages[last_user + 1 :] for c in m.get("tool_calls") or ()]
    used: Counter[Any] = Counter(_key(v) for a in earlier for v, _ in _leaves(a, None) if v is not None and not isinstance(v, bool))
    schema = next((t["function"].get("parameters") for t in tools or () if t["function"]["name"] == name), None)
    missing, found = [], 0
    for value, sub in _leaves(args, schema):
        if value is None or isinstance(value, bool):
            continue
        neutral = value == 0 or value in (sub.get("enum") or ()) or ("default" in sub and sub["default"] == value)
        key = _key(value)
        if isinstance(key, float):
            have = _count(numbers, key)
        else:
            have = min((max(words[t], _count(numbers, float(t)) if _NUMBER.fullmatch(t) else 0) for t in key), default=0)
        used[key] += 1
        if neutral and used[key] > have:
            continue  # offered by the schema (or zero): it may come from the conversation, it need not
        if used[key] > have:
            where = "in more arguments than the conversation holds it" if have else "not in the conversation"
            missing.append(f"{name} argument {json.dumps(value, ensure_ascii=False)} is {where}")
        else:
            found += 1
    if missing:
        return missing
    if args and not found:
        return [f"{name} takes no value from the conversation"]
    return []
