"""Tool calling in text: how tools reach each prompt, and how answers become OpenAI-style calls.

The call format is the Hermes one, which many chat templates already teach: one block per call,
```
<tool_call>
{"name": "get_weather", "arguments": {"city": "Paris"}}
</tool_call>
```
A nudger whose chat template takes `tools=` gets the descriptions that way; otherwise (and always
for the base's plain prompt) they go into the system text as `TOOLS_PROMPT` says. The grammar
(decoding/grammar.py) forces this format when output is constrained.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from .errors import ConfigError

TOOLS_PROMPT = (
    "You can call these tools:\n<tools>\n{tools}\n</tools>\n"
    "To call a tool, answer with one <tool_call></tool_call> block per call, each holding a JSON object "
    'with the tool\'s "name" and its "arguments", for example:\n{example}\n{rule}'
)
RULES = {
    "auto": "If no tool is needed, answer in plain text.",
    "required": "You must call at least one tool.",
    "named": 'You must call the tool "{name}".',
}
# The base's plain prompt: a document it continues, a worked request -> call turn before the question
# (a base model copies instructions it is shown, placeholders and rules included).
BASE_TOOLS_PROMPT = "An assistant that answers questions, calling one of these tools when one fits:\n<tools>\n{tools}\n</tools>"
_EXAMPLE_VALUE = re.compile(r"\be\.g\.,?\s*['\"]?([\w:/@+-]+)")
_EMPTY = {"string": "", "integer": 0, "number": 0, "boolean": False, "array": [], "object": {}}
_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_RESPONSE_FORMATS = ("text", "json_object", "json_schema", "regex", "lark")


def check_tools(tools: Any) -> tuple[dict[str, Any], ...]:
    """Tools in OpenAI's form ({"type": "function", "function": {"name", "description", "parameters"}});
    a bare {"name", ...} function is wrapped. Raises ConfigError otherwise."""
    out = []
    for t in tools:
        if not isinstance(t, dict):
            raise ConfigError(f"tools must be dicts in OpenAI's function format, got {t!r}")
        fn = t.get("function", t) if t.get("type", "function") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ConfigError(f'tools must be {{"type": "function", "function": {{"name": ..., "parameters": ...}}}}, got {t!r}')
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, dict):
            raise ConfigError(f"tools must give parameters as a JSON schema object; {fn['name']!r} does not")
        out.append({"type": "function", "function": {**fn, "parameters": params}})
    names = [t["function"]["name"] for t in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"tools must have unique names, got {names}")
    return tuple(out)


def check_tool_choice(choice: Any, tools: tuple[dict[str, Any], ...]) -> Any:
    """"auto" | "none" | "required" ("any" is LangChain's word for it) | {"type": "function",
    "function": {"name": ...}} (a bare name is accepted too)."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if choice == "any":
        return "required"
    name = choice if isinstance(choice, str) else (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if name not in {t["function"]["name"] for t in tools}:
        raise ConfigError(f"tool_choice must be 'auto', 'none', 'required' or one of the given tools, got {choice!r}")
    return {"type": "function", "function": {"name": name}}


def check_response_format(fmt: Any) -> dict[str, Any] | None:
    """OpenAI's {"type": "text" | "json_object"} or {"type": "json_schema", "json_schema": {"schema": ...}};
    also {"type": "regex", "pattern": ...}, {"type": "lark", "grammar": ...}, or a bare JSON schema."""
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise ConfigError(f"response_format must be a dict, got {type(fmt).__name__}")
    kind = fmt.get("type")
    if kind == "json_schema" and not isinstance((fmt.get("json_schema") or {}).get("schema"), dict):
        raise ConfigError('response_format json_schema needs {"json_schema": {"name": ..., "schema": {...}}}')
    if kind == "regex" and not isinstance(fmt.get("pattern"), str):
        raise ConfigError('response_format regex needs {"pattern": "..."}')
    if kind == "lark" and not isinstance(fmt.get("grammar"), str):
        raise ConfigError('response_format lark needs {"grammar": "..."}')
    if isinstance(kind, str) and kind.startswith(("json_", "text")) and kind not in _RESPONSE_FORMATS:
        raise ConfigError(f"response_format type must be one of {_RESPONSE_FORMATS}, got {kind!r}")
    return fmt


def call_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """JSON schema of one call {"name": <a tool>, "arguments": <its parameters>}."""
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": t["function"]["name"]}, "arguments": t["function"]["parameters"]},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def _sample(schema: dict[str, Any]) -> Any:
    """A value of an argument's own schema: its const, first enum value, default or "e.g." example,
    else the empty value of its type (never markup such as "..." a small model would copy)."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    example = _EXAMPLE_VALUE.search(str(schema.get("description", "")))
    if example and kind in (None, "string"):
        return example.group(1)
    return _EMPTY.get(kind, "")


def example_call(tool: dict[str, Any]) -> dict[str, Any]:
    """A call of a real tool with its real argument names (the required ones, else all), each set to
    a value its schema gives (`_sample`): the example the prompts show."""
    fn = tool["function"]
    props = (fn.get("parameters") or {}).get("properties") or {}
    names = [n for n in (fn.get("parameters") or {}).get("required") or props if n in props]
    return {"name": fn["name"], "arguments": {n: _sample(props[n]) for n in names}}


def tools_listing(tools: tuple[dict[str, Any], ...]) -> str:
    """The tools as the prompts list them: one JSON object per line."""
    return "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)


def tools_system_text(tools: tuple[dict[str, Any], ...], choice: Any) -> str:
    """The system-prompt description of the tools (for prompts whose template has no `tools=`)."""
    if isinstance(choice, dict):
        rule = RULES["named"].format(name=choice["function"]["name"])
        tool = next(t for t in tools if t["function"]["name"] == choice["function"]["name"])
    else:
        rule = RULES["required" if choice == "required" else "auto"]
        tool = tools[0]
    return TOOLS_PROMPT.format(tools=tools_listing(tools), example=render_calls([example_call(tool)]), rule=rule)


def base_tools_turns(tools: tuple[dict[str, Any], ...], choice: Any) -> tuple[str, list[dict[str, Any]]]:
    """The base's tools as a document: (header text, a worked user -> assistant turn in which the
    tool's own description is the request and the assistant calls it)."""
    tool = tools[0]
    if isinstance(choice, dict):
        tool = next(t for t in tools if t["function"]["name"] == choice["function"]["name"])
    request = (tool["function"].get("description") or "").strip() or f"Use {tool['function']['name']}."
    call = example_call(tool)
    turns = [{"role": "user", "content": request}, {"role": "assistant", "content": "", "tool_calls": [{"function": call}]}]
    return BASE_TOOLS_PROMPT.format(tools=tools_listing(tools)), turns


def render_calls(calls: list[dict[str, Any]]) -> str:
    """An assistant turn's OpenAI tool_calls as the text the model would have written."""
    blocks = []
    for c in calls:
        fn = c.get("function", c)
        args = fn.get("arguments", {})
        args = json.loads(args) if isinstance(args, str) and args.strip() else (args or {})
        blocks.append("<tool_call>\n" + json.dumps({"name": fn["name"], "arguments": args}, ensure_ascii=False) + "\n</tool_call>")
    return "\n".join(blocks)


def render_tool_result(content: str) -> str:
    """A `role: tool` message's content as text, for prompts without native tool turns."""
    return f"<tool_response>\n{content}\n</tool_response>"


def parse_tool_calls(text: str, tools: tuple[dict[str, Any], ...]) -> tuple[str, list[dict[str, Any]]]:
    """(content, calls): the `<tool_call>` blocks of an answer that name a given tool with JSON
    object arguments, as OpenAI tool calls; the content is the rest of the text."""
    names = {t["function"]["name"] for t in tools}
    calls: list[dict[str, Any]] = []
    rest = text
    for m in _CALL.finditer(text):
        try:
            obj = json.loads(m.group(1))
        except json.JSONDecodeError:
            continue
        if not (isinstance(obj, dict) and obj.get("name") in names and isinstance(obj.get("arguments", {}), dict)):
            continue
        calls.append({
            "id": "call_" + secrets.token_hex(12),
            "type": "function",
            "function": {"name": obj["name"], "arguments": json.dumps(obj.get("arguments", {}), ensure_ascii=False)},
        })
        rest = rest.replace(m.group(0), "", 1)
    return (rest.strip() if calls else text), calls


def could_be_call(text: str) -> bool:
    """True while a stream's text may still turn out to be tool calls (hold it back from content)."""
    head = text.lstrip()
    return head.startswith("<tool_call>") or "<tool_call>".startswith(head)


class CallFilter:
    """Streams an answer's content while it cannot be tool calls, and holds back text that may be
    (under the "auto" grammar an answer is either calls or text not starting with "<")."""

    def __init__(self, active: bool) -> None:
        self.open = not active  # True once the answer is known to be plain text
        self.held = ""

    def feed(self, text: str) -> str:
        """The content to show now for a new delta."""
        if self.open:
            return text
        self.held += text
        if could_be_call(self.held):
            return ""
        self.open, out, self.held = True, self.held, ""
        return out

    def finish(self, result: Any) -> str:
        """The content still to show when the answer is complete (its text outside any calls)."""
        return "" if self.open else (result.content or "")
