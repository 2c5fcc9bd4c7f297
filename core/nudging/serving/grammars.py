"""A request's constraint (response_format, tools), checked before it is queued.

The engine thread serves every running stream, so nothing slow or unbounded about a request's
grammar may happen there first: schemas are bounded in size and nesting (a clear 400 past either),
and each new grammar is compiled once here, on a request thread, for both models' tokenizers — which
also builds llguidance's view of each tokenizer (seconds for a large vocabulary) off the engine
thread. Grammars that compiled are remembered per (grammar text, tokenizers), so a repeated schema
costs nothing here.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from ..config import NudgingConfig
from ..decoding.grammar import config_grammar, matchers
from ..errors import ConfigError
from .http import APIError

MAX_SCHEMA_BYTES = 64 * 1024  # response_format or tools, as JSON
MAX_SCHEMA_DEPTH = 32  # nested objects/arrays
_CACHED = 256  # compiled grammars remembered


class GrammarCheck:
    """Bounds and compiles the constraint of a config; thread-safe, one per app (so per tokenizer pair)."""

    def __init__(self, base: Any, nudger: Any) -> None:
        self.base, self.nudger = base, nudger
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, cfg: NudgingConfig) -> None:
        for param, value in (("response_format", cfg.response_format), ("tools", cfg.tools)):
            if value is None:
                continue
            size = len(json.dumps(value, ensure_ascii=False).encode())
            if size > MAX_SCHEMA_BYTES:
                raise APIError(400, f"{param} is {size} bytes as JSON; this server takes at most {MAX_SCHEMA_BYTES}", param=param, code="invalid_value")
            if _depth(value) > MAX_SCHEMA_DEPTH:
                raise APIError(400, f"{param} nests deeper than {MAX_SCHEMA_DEPTH} levels", param=param, code="invalid_value")
        grammar = config_grammar(cfg)
        if grammar is None:
            return
        with self._lock:
            if grammar in self._seen:
                self._seen.move_to_end(grammar)
                return
        try:
            matchers(cfg, self.base, self.nudger)
        except ConfigError as exc:
            raise APIError(400, str(exc), param="tools" if cfg.tools else "response_format", code="invalid_value") from None
        with self._lock:
            self._seen[grammar] = None
            while len(self._seen) > _CACHED:
                self._seen.popitem(last=False)


def _depth(value: Any) -> int:
    """Nesting depth of JSON-like data (iterative: a hostile depth cannot overflow the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, (list, tuple)):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in v)
    return deepest
