"""BFCL v4 (the Berkeley Function Calling Leaderboard) in the tool evaluation: its `simple_python`
and `irrelevance` questions and its own AST checker, from the `bfcl-eval` package.

`bfcl-eval` (install with `pip install --no-deps bfcl-eval==2026.3.23`) imports the whole leaderboard
(API clients, hub downloads) from its model-config table, which the checker reads only to learn
whether a model's tool names had '.' replaced by '_'. So the checker is loaded from its file with
that table replaced by one entry whose `underscore_to_dot` is true: OpenAI tool names cannot hold
'.', and names are sent with '_' as BFCL's own OpenAI handler does. BFCL's parameter types ("dict",
"float", "tuple", "any") are mapped to JSON Schema with BFCL's own table (GORILLA_TO_OPENAPI).
Scoring follows BFCL: a `simple_python` answer is right when its one call passes the AST checker; an
`irrelevance` answer is right when it makes no call.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import sys
import types
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import ConfigError

CATEGORIES = ("simple_python", "irrelevance")
CHECKER_MODEL = "nudging"  # the one entry of the checker's model table
INSTALL = "pip install --no-deps bfcl-eval==2026.3.23"


@dataclass(frozen=True)
class BfclItem:
    """One BFCL question: its first turn's messages, BFCL's function docs (what the checker reads),
    the same functions as OpenAI tools, and the accepted answers (None for irrelevance)."""

    id: str
    category: str
    messages: list[dict[str, Any]] = field(repr=False)
    functions: list[dict[str, Any]] = field(repr=False)
    tools: tuple[dict[str, Any], ...] = field(repr=False)
    answer: list[dict[str, Any]] | None = field(repr=False)


def package_dir() -> Path:
    """bfcl_eval's folder, found without importing it (its imports pull the leaderboard)."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"BFCL needs the bfcl-eval package: {INSTALL}")
    return Path(list(spec.submodule_search_locations)[0])


def _type_table() -> dict[str, str]:
    from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI  # a plain table module

    return GORILLA_TO_OPENAPI


def json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A BFCL parameter schema in JSON Schema types (recursively; unknown or missing types: string)."""
    table = _type_table()
    out = dict(schema)
    out["type"] = table.get(schema.get("type", "string"), "string")
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: json_schema(v) for k, v in schema["properties"].items()}
    if isinstance(schema.get("items"), dict):
        out["items"] = json_schema(schema["items"])
    return out


def openai_tool(function: dict[str, Any]) -> dict[str, Any]:
    """A BFCL function as an OpenAI tool: '.' in the name becomes '_', types become JSON Schema."""
    params = json_schema(copy.deepcopy(function.get("parameters") or {"type": "dict", "properties": {}}))
    params["type"] = "object"
    return {"type": "function", "function": {"name": re.sub(r"\.", "_", function["name"]), "description": function.get("description", ""), "parameters": params}}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_items(category: str, limit: int | None = None) -> list[BfclItem]:
    """The first `limit` questions of a category, in BFCL's order."""
    if category not in CATEGORIES:
        raise ConfigError(f"BFCL category must be one of {CATEGORIES}, got {category!r}")
    data = package_dir() / "data"
    rows = _read_jsonl(data / f"BFCL_v4_{category}.json")[:limit]
    answers = {}
    if category != "irrelevance":
        answers = {r["id"]: r["ground_truth"] for r in _read_jsonl(data / "possible_answer" / f"BFCL_v4_{category}.json")}
    return [
        BfclItem(r["id"], category, list(r["question"][0]), r["function"], tuple(openai_tool(f) for f in r["function"]), answers.get(r["id"]))
        for r in rows
    ]


@cache
def load_checker() -> types.ModuleType:
    """BFCL's ast_checker module, loaded from its file under a private name with the model-config
    table replaced (see the module docstring); the real table is never imported."""
    path = package_dir() / "eval_checker" / "ast_eval" / "ast_checker.py"
    table = types.ModuleType("bfcl_eval.constants.model_config")
    table.MODEL_CONFIG_MAPPING = {CHECKER_MODEL: types.SimpleNamespace(underscore_to_dot=True)}  # type: ignore[attr-defined]
    saved = sys.modules.get(table.__name__)
    sys.modules[table.__name__] = table
    try:
        spec = importlib.util.spec_from_file_location("nudging_bfcl_ast_checker", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules[table.__name__]
        else:
            sys.modules[table.__name__] = saved
    return module


def score(item: BfclItem, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """BFCL's verdict on one answer's parsed OpenAI-style calls: {"called", "correct", "error"}."""
    called = float(bool(calls))
    if item.category == "irrelevance":
        return {"called": called, "correct": 1.0 - called, "error": "called a tool" if calls else ""}
    if not calls:
        return {"called": 0.0, "correct": 0.0, "error": "no call"}
    output = []
    for c in calls:
        try:
            args = json.loads(c["function"]["arguments"])
        except json.JSONDecodeError as exc:
            return {"called": 1.0, "correct": 0.0, "error": f"arguments are not JSON: {exc}"}
        output.append({c["function"]["name"]: args})
    from bfcl_eval.constants.enums import Language  # a plain enum module

    verdict = load_checker().ast_checker(item.functions, output, item.answer, Language.PYTHON, item.category, CHECKER_MODEL)
    return {"called": 1.0, "correct": float(verdict["valid"]), "error": "; ".join(verdict.get("error", []))}
