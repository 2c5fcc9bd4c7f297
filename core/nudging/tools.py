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
OPENER, CLOSER = "<tool_call>", "</tool_call>"
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
    """JSON schema of one call {"name": <a tool>, "arguments": <its parameters>}. Local `$ref`s of
    the parameters (`#/$defs/...`, `#`) are rewritten to where the parameters now sit."""
    options = []
    for i, t in enumerate(tools):
        at = ("#/anyOf/%d" % i if len(tools) > 1 else "#") + "/properties/arguments"
        options.append({
            "type": "object",
            "properties": {"name": {"const": t["function"]["name"]}, "arguments": _moved(t["function"]["parameters"], at)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        })
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


_DATA = ("const", "enum", "default", "examples")  # keys whose values are JSON data, not schemas


def _moved(schema: Any, at: str) -> Any:
    """`schema` with its document-local `$ref`s pointing under the JSON pointer `at`."""
    if isinstance(schema, list):
        return [_moved(s, at) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: v if k in _DATA else _moved(v, at) for k, v in schema.items()}
    ref = schema.get("$ref")
    if isinstance(ref, str) and (ref == "#" or ref.startswith("#/")):
        out["$ref"] = at + ref[1:]
    return out


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


def call_parts(call: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A call's name and arguments (a dict), whichever OpenAI form it comes in ({"function": {...}}
    or bare; arguments as JSON text or a dict; messages' calls are validated by prompts.to_messages)."""
    fn = call.get("function", call)
    args = fn.get("arguments") or {}
    return fn["name"], json.loads(args) if isinstance(args, str) and args.strip() else (args or {})


def render_calls(calls: list[dict[str, Any]]) -> str:
    """An assistant turn's OpenAI tool_calls as the text the model would have written."""
    blocks = []
    for c in calls:
        name, args = call_parts(c)
        blocks.append("<tool_call>\n" + json.dumps({"name": name, "arguments": args}, ensure_ascii=False) + "\n</tool_call>")
    return "\n".join(blocks)


def render_tool_result(content: str) -> str:
    """A `role: tool` message's content as text, for prompts without native tool turns."""
    return f"<tool_response>\n{content}\n</tool_response>"


def offered(cfg: Any) -> tuple[dict[str, Any], ...] | None:
    """The tools a config offers the models: none under tool_choice "none" (no tool prompt, no grammar,
    no parsing: an agent that forces a final answer gets text back)."""
    return cfg.tools if cfg.tools and cfg.tool_choice != "none" else None


_BLOCK = re.compile(re.escape(OPENER) + r"\s*(.*?)\s*" + re.escape(CLOSER), re.DOTALL)
_HEAD = re.compile(r'\{"name": "([^"\\]*)", "arguments": ')  # how the grammar writes a call's start


def parse_tool_calls(text: str, tools: tuple[dict[str, Any], ...], cut: bool = False) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """(content, calls, invalid): an answer split as the "auto" grammar writes it, text then calls.

    The content is the text before the first `<tool_call>` (trailing whitespace dropped when calls
    follow); everything after it is calls. A call is valid when its block is complete, names a
    given tool and its arguments validate against that tool's parameters; the others (cut by the
    budget, unknown tool, bad arguments: possible where output is unconstrained) are returned in
    `invalid`, each with an "error", and never as calls. Arguments are the JSON as written.
    `cut`: the budget ended the answer, so a trailing part of the opener is a call it cut too.
    """
    at = text.find(OPENER)
    if at < 0:
        held = next((k for k in range(len(OPENER) - 1, 0, -1) if text.endswith(OPENER[:k])), 0) if cut else 0
        if not held:
            return text, [], []
        call = {"id": "call_" + secrets.token_hex(12), "type": "function", "function": {"name": None, "arguments": ""}}
        return text[:-held].rstrip(), [], [{**call, "error": "the answer ended inside this call"}]
    calls: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    end = at
    for m in _BLOCK.finditer(text, at):
        call, error = _call(m.group(1), tools)
        (invalid if error else calls).append(call)
        end = m.end()
    rest = text[end:]
    if OPENER in rest:  # a block that never closed
        call, _ = _call(rest[rest.find(OPENER) + len(OPENER) :].strip(), tools)
        invalid.append({**call, "error": "the answer ended inside this call"})
    return text[:at].rstrip(), calls, invalid


def _call(body: str, tools: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], str | None]:
    """One block's JSON as an OpenAI call, and what is wrong with it (None when it is valid)."""
    head = _HEAD.match(body)
    name = head.group(1) if head else None
    raw = (body[head.end() : -1] if body.endswith("}") else body[head.end() :]) if head else body
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as exc:
        obj, error = None, f"the call is not valid JSON: {exc}"
    if obj is not None:
        if isinstance(obj, dict) and set(obj) <= {"name", "arguments"} and isinstance(obj.get("name"), str):
            name, args = obj["name"], obj.get("arguments", {})
            raw = raw if _same(raw, args) else json.dumps(args, ensure_ascii=False)
            error = check_arguments(name, args, tools)
        else:
            error = 'a call must be a JSON object {"name": ..., "arguments": {...}}'
    call = {"id": "call_" + secrets.token_hex(12), "type": "function", "function": {"name": name, "arguments": raw}}
    return (call if error is None else {**call, "error": error}), error


def _same(raw: str, value: Any) -> bool:
    try:
        return json.loads(raw) == value
    except json.JSONDecodeError:
        return False


def check_arguments(name: Any, args: Any, tools: tuple[dict[str, Any], ...]) -> str | None:
    """Why a call of `name` with `args` is not valid for these tools (None when it is)."""
    import jsonschema

    params = next((t["function"]["parameters"] for t in tools if t["function"]["name"] == name), None)
    if params is None:
        return f"{name!r} is not one of the given tools"
    err = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(params)(params).iter_errors(args))
    return None if err is None else f"arguments do not match {name}'s parameters: {err.message}"


class CallFilter:
    """A streamed answer split as `parse_tool_calls` splits the whole of it: content deltas while the
    text cannot become a call, then call pieces {"index", "id"?, "name"?, "arguments"}. `live`: each
    block's arguments as they are written (OpenAI's stream: a call cut by the budget has been sent
    in part, and the finish reason says "length"); otherwise each call whole once its block is
    complete and valid (invalid ones are never sent). Held back meanwhile: text that may begin the
    opener, trailing whitespace, and the end of a call's JSON that may close it."""

    def __init__(self, active: bool, tools: tuple[dict[str, Any], ...] = (), *, live: bool = False) -> None:
        self.active, self.tools, self.live = active, tools, live
        self.text = ""
        self.shown = 0  # characters of content sent
        self.sent: list[str | None] = []  # per block: the arguments sent so far (None: nothing, or invalid)
        self.valid = 0  # calls sent whole (not live)

    def feed(self, delta: str) -> tuple[str, list[dict[str, Any]]]:
        """(content, call pieces) to send now for a new delta of the answer."""
        if not self.active:
            return delta, []
        self.text += delta
        at = self.text.find(OPENER)
        if at < 0:
            held = next((k for k in range(len(OPENER) - 1, 0, -1) if self.text.endswith(OPENER[:k])), 0)
            return self._content(len(self.text[: len(self.text) - held].rstrip())), []
        return self._content(len(self.text[:at].rstrip())), self._pieces(at, final=False)

    def finish(self, result: Any) -> tuple[str, list[dict[str, Any]]]:
        """What is still to send when the answer is complete (the stream has fed all of its text)."""
        if not self.active:
            return "", []
        content = result.content or ""
        rest = content[self.shown :]
        self.shown = len(content)
        at = self.text.find(OPENER)
        return rest, (self._pieces(at, final=True) if at >= 0 else [])

    def _content(self, upto: int) -> str:
        out = self.text[self.shown : max(upto, self.shown)]
        self.shown = max(upto, self.shown)
        return out

    def _pieces(self, at: int, final: bool) -> list[dict[str, Any]]:
        out = []
        for i, block in enumerate(self.text[at:].split(OPENER)[1:]):
            body = block.lstrip("\n")
            head = _HEAD.match(body)
            complete = CLOSER in body
            if i == len(self.sent):
                if not (head or complete):
                    break
                self.sent.append(None)
            if self.live:
                out += self._live(i, body, head, complete or final)
            elif complete and self.sent[i] is None:
                call, error = _call(body[: body.find(CLOSER)].rstrip(), self.tools)
                self.sent[i] = ""
                if error is None:
                    out.append({"index": self.valid, "id": call["id"], "name": call["function"]["name"], "arguments": call["function"]["arguments"]})
                    self.valid += 1
        return out

    def _live(self, i: int, body: str, head: Any, done: bool) -> list[dict[str, Any]]:
        """Block i's new pieces, its arguments as written (held back: what may yet close the call)."""
        if head is None:
            return []
        out = []
        if self.sent[i] is None:
            self.sent[i] = ""
            out.append({"index": i, "id": "call_" + secrets.token_hex(12), "name": head.group(1), "arguments": ""})
        args = body[head.end() :]
        tail = "}\n" + CLOSER
        if tail in args:
            args = args[: args.rfind(tail)]
        elif not done:
            args = args[: len(args) - next((k for k in range(len(tail), 0, -1) if args.endswith(tail[:k])), 0)]
        sent = self.sent[i] or ""
        if len(args) > len(sent) and args.startswith(sent):
            out.append({"index": i, "arguments": args[len(sent) :]})
            self.sent[i] = args
        return out
