"""Constrained output: one llguidance matcher per model view (DESIGN.md "Constrained output").

The grammar is defined on text (bytes), so each model gets a matcher over its own tokenizer;
llguidance accepts any tokenization of valid text, which is what lets a view append the other
model's text re-tokenized in context. A view consumes every id it appends, rolls back with it,
and masks the logits it hands out, so every reader (the sampler, the policy, verification,
speculation) sees the masked distribution: disallowed ids get -inf, and softmax renormalises
over the allowed ones.
"""

from __future__ import annotations

import json
import re
import time
import weakref
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..tools import OPENER, call_schema
from .closing import Closer

# JSON written one way: ", " and ": " separators, no other whitespace. Keeps small models from
# looping on newlines, and the spaces give the nudger word boundaries to hand back at.
JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

_TOKENIZERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def closed(schema: Any) -> Any:
    """The schema with every object that lists `properties` closed (`additionalProperties: false`
    unless it says otherwise), as OpenAI's strict mode: output still validates against the original,
    and small models cannot wander off into invented keys. The branches of an `allOf` stay open
    (each would forbid the others' keys); their parent is closed over all their keys instead."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) if k in _SUBSCHEMAS else v for k, v in schema.items()}
    for k in ("properties", "$defs", "definitions", "patternProperties"):
        if isinstance(schema.get(k), dict):
            out[k] = {name: closed(s) for name, s in schema[k].items()}
    branches = schema.get("allOf")
    if isinstance(branches, list):
        out["allOf"] = [_open(b) for b in out["allOf"]]
        keys = [b.get("properties") for b in branches if isinstance(b, dict)]
        if len(keys) != len(branches) or not all(isinstance(k, dict) for k in keys) or "additionalProperties" in schema:
            return out  # a branch we cannot see into ($ref, anyOf, ...): leave the parent open
        out["properties"] = {**{name: True for k in keys for name in k}, **out.get("properties", {})}
        out["additionalProperties"] = False
    elif "properties" in schema and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


def _open(branch: Any) -> Any:
    """An allOf branch as `closed` made it, minus the closing it added itself."""
    if isinstance(branch, dict) and branch.get("additionalProperties") is False:
        return {k: v for k, v in branch.items() if k != "additionalProperties"}
    return branch


_SUBSCHEMAS = {"items", "anyOf", "oneOf", "allOf", "prefixItems", "additionalProperties", "not", "if", "then", "else"}


def _json(schema: dict[str, Any]) -> str:
    """A Lark `%json` item for a schema, closed, in JSON_STYLE."""
    return "%json " + json.dumps({**closed(schema), "x-guidance": JSON_STYLE})


def response_format_grammar(fmt: dict[str, Any]) -> str | None:
    """Lark grammar text for a response_format (see `tools.check_response_format` for the forms)."""
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return "start: " + _json({"type": "object"})
    if kind == "json_schema":
        return "start: " + _json(fmt["json_schema"]["schema"])
    if kind == "regex":
        return "start: /" + _slashes(fmt["pattern"]) + "/"
    if kind == "lark":
        return fmt["grammar"]
    return "start: " + _json(fmt)  # a bare JSON schema


def tool_grammar(tools: list[dict[str, Any]], choice: Any, parallel: bool) -> str | None:
    """Lark grammar text for tool calling: `<tool_call>` blocks holding {"name", "arguments"}.

    "auto": text that never contains the opener `<tool_call>`, optionally followed by calls: the
    first opener ends the text (a lazy lexeme) and from there on the calls are constrained, so a
    call can never be written as free text. "required": calls only; a named tool: calls of that
    tool only; "none": no grammar. `parallel` allows several calls, one block each.
    """
    if choice == "none":
        return None
    if isinstance(choice, dict):
        tools = [t for t in tools if t["function"]["name"] == choice["function"]["name"]]
    more = ' ("\\n<tool_call>" body)*' if parallel else ""
    body = 'body: "\\n" ' + _json(call_schema(tools)) + ' "\\n</tool_call>"'
    if choice != "auto":
        return "\n".join([f'start: "{OPENER}" body{more}', body])
    return "\n".join([f"start: TEXT? | preface body{more}", f"preface[lazy]: /(?s:.*){OPENER}/", body, _TEXT])


# text that never contains the call opener, nor its start with anything else after it (`<tool_call name=`)
_TEXT = f"TEXT: /(?s:.+)/ & ~/(?s:.*){OPENER[:-1]}(?s:.*)/"


def _slashes(pattern: str) -> str:
    """A regex as the body of a Lark `/.../` literal: bare slashes escaped, escapes kept as written
    (so a pattern's own `\\/` stays one escaped slash)."""
    return re.sub(r"(\\.)|/", lambda m: m.group(1) or "\\/", pattern, flags=re.DOTALL)


def config_grammar(cfg: Any) -> str | None:
    """The grammar a config asks for (tools take precedence over response_format), or None."""
    if not cfg.constrained:
        return None
    if cfg.tools:
        return tool_grammar(list(cfg.tools), cfg.tool_choice or "auto", cfg.parallel_tool_calls)
    if cfg.response_format is not None:
        return response_format_grammar(cfg.response_format)
    return None


def decided(cfg: Any, base: Any, nudger: Any, *, calls: bool) -> tuple[Matcher, Matcher]:
    """The matchers (base, nudger) of an "auto" answer once the call-or-text decision is made
    (`call_threshold`): calls as under "required", or text that never opens a call."""
    grammar = tool_grammar(list(cfg.tools), "required", cfg.parallel_tool_calls) if calls else f"start: TEXT?\n{_TEXT}"
    assert grammar is not None
    return Matcher(grammar, base.tokenizer, base.eos_ids), Matcher(grammar, nudger.tokenizer, nudger.eos_ids)


def decision(cfg: Any, base: Any, nudger: Any, nudger_logits: torch.Tensor, forced: bool | None = None) -> tuple[float, tuple[Matcher, Matcher], bool]:
    """The call-or-text decision (`call_threshold`) on the nudger's first logits under the "auto"
    mask: its probability of the ids that open a call, the matchers of the choice (`forced`, where
    it is already made), and whether it is calls."""
    calls = decided(cfg, base, nudger, calls=True)
    opens = torch.isfinite(calls[1].mask(nudger_logits))
    p = float(torch.softmax(nudger_logits.float(), -1)[opens].sum())
    chosen = p >= cfg.call_threshold if forced is None else forced
    return (p, calls, True) if chosen else (p, decided(cfg, base, nudger, calls=False), False)


def _lltokenizer(tokenizer: Any, eos_ids: frozenset[int]) -> Any:
    """llguidance's view of a HF tokenizer (~0.5 s for 49k ids, ~4.5 s for gemma's 262k: cached)."""
    import llguidance.hf

    entry = _TOKENIZERS.get(tokenizer)
    if entry is None or entry[0] != eos_ids:
        try:
            ll = llguidance.hf.from_tokenizer(tokenizer, n_vocab=len(tokenizer), eos_token=sorted(eos_ids))
        except ValueError as exc:
            raise ConfigError(f"constrained output needs a fast (Rust) tokenizer: {exc}") from exc
        entry = (eos_ids, ll)
        _TOKENIZERS[tokenizer] = entry
    return entry[1]


def matchers(cfg: Any, base: Any, nudger: Any) -> tuple[Matcher | None, Matcher | None]:
    """A matcher for each model's view (base, nudger), or (None, None) without a constraint."""
    grammar = config_grammar(cfg)
    if grammar is None:
        return None, None
    return Matcher(grammar, base.tokenizer, base.eos_ids), Matcher(grammar, nudger.tokenizer, nudger.eos_ids)


class Matcher:
    """A grammar over one tokenizer: which ids may come next, advanced and rolled back with its view.

    `limit`, when set, is how many answer ids the view may hold in all: masks then close the
    answer in time (decoding/closing.py)."""

    def __init__(self, grammar: str, tokenizer: Any, eos_ids: frozenset[int]) -> None:
        from llguidance import LLMatcher

        self.n_vocab = len(tokenizer)
        ll = _lltokenizer(tokenizer, eos_ids)
        self.m = LLMatcher(ll, LLMatcher.grammar_from_lark(grammar), log_level=0)
        if self.m.is_error():
            raise ConfigError(f"invalid grammar: {self.m.get_error()}")
        self.closer = Closer(ll, self.n_vocab, eos_ids)
        self.limit: int | None = None
        self.n = 0  # ids consumed
        self.seconds = 0.0  # time computing and applying masks
        self.masks = 0

    @property
    def accepting(self) -> bool:
        """True when the text so far is a complete match (EOS is allowed)."""
        return self.m.is_accepting()

    @property
    def finished(self) -> bool:
        """True when the text so far is complete and nothing but EOS may follow."""
        return self.m.is_accepting() and self.m.is_stopped() and not self.m.is_error()

    def consume(self, ids: list[int]) -> None:
        if ids and not self.m.consume_tokens(ids):
            raise RuntimeError(f"constrained decoding appended ids the grammar rejects: {self.m.get_error()}")
        self.n += len(ids)

    def rollback(self, n: int) -> None:
        if n > 0:
            self.m.rollback(n)
            self.n -= n

    def valid_prefix(self, ids: list[int]) -> int:
        """How many of `ids` the grammar accepts in a row from the current state."""
        return self.m.validate_tokens(ids) if ids else 0

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """A copy of a logits row [vocab] with the ids the grammar forbids next set to -inf."""
        t0 = time.perf_counter()
        v = logits.shape[-1]
        bits = np.unpackbits(np.frombuffer(self.m.compute_bitmask(), dtype=np.uint8), bitorder="little")
        allowed = np.zeros(v, dtype=bool)
        n = min(self.n_vocab, v)
        allowed[:n] = bits[:n].view(bool)
        if self.limit is not None:
            closing = self.closer.allowed(self.m, self.limit - self.n, logits.float().cpu().numpy(), allowed)
            if closing is not None:
                allowed = closing
        if logits.device.type == "cpu":  # numpy: one thread, no torch thread-pool wake-ups (~10x less on busy CPUs)
            out_np = np.full(v, -np.inf, dtype=np.float32)
            np.copyto(out_np, logits.float().numpy(), where=allowed)
            out = torch.from_numpy(out_np)
        else:
            out = logits.masked_fill(~torch.from_numpy(allowed).to(logits.device), float("-inf"))
        self.seconds += time.perf_counter() - t0
        self.masks += 1
        return out

    def mask_along(self, rows: torch.Tensor, ids: list[int]) -> tuple[torch.Tensor, int]:
        """Mask rows[i] (the logits after ids[:i+1]) for the valid prefix of `ids`; the state is
        left unchanged. Returns the masked rows of that prefix and its length."""
        n = self.valid_prefix(ids)
        out = []
        for i in range(n):
            self.consume([ids[i]])
            out.append(self.mask(rows[i]))
        self.rollback(n)
        return (torch.stack(out) if out else rows[:0]), n
