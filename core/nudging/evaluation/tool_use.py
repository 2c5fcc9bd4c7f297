"""Tool-use and structured-output quality: base-only, nudger-only and nudged, each with the grammar
on (constrained) and off (the same prompts, nothing masked), on the set in `tool_set`.

A tool request scores its first parsed call: right tool (the expected name), valid arguments (they
validate against the named tool's JSON schema), exact arguments (right tool and arguments equal to
the expected ones, strings compared stripped and case-folded, numbers as numbers). A structured
request scores whether the whole answer parses as JSON and validates against its schema (the
schemas as written, and bounded: see `tool_set.BOUNDED`). Answers
are cached in a JSONL file (one line per kind, system, item and settings), so runs resume.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import jsonschema
from tqdm.auto import tqdm

from ..config import NudgingConfig
from ..nudger import Nudger
from ..tools import check_tools
from .runner import BASE_ONLY, NUDGER_ONLY, eval_config, fingerprint, for_system, read_cache
from .tool_set import BOUNDED, REQUESTS, STRUCTURED, TOOLS, StructuredRequest, ToolRequest

TOOL_METRICS = ("called", "right_tool", "valid_arguments", "exact_arguments")
STRUCTURED_METRICS = ("parsed", "schema_valid")


@dataclass(frozen=True)
class ToolSystem:
    """One column of the table: the pair at one gamma, with the grammar on or off."""

    name: str
    gamma: float
    constrained: bool


def tool_systems(gammas: Sequence[float] = (0.4,)) -> list[ToolSystem]:
    """base-only, nudger-only and nudged at each gamma, each constrained and unconstrained."""
    named = [("base", BASE_ONLY), ("nudger", NUDGER_ONLY)] + [(f"nudged@{g:g}", g) for g in gammas]
    return [ToolSystem(name, g, c) for name, g in named for c in (True, False)]


def _normal(value: Any) -> Any:
    """A JSON value in the form exact-argument comparison uses."""
    if isinstance(value, str):
        return value.strip().casefold()
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def score_call(request: ToolRequest, calls: list[dict[str, Any]], tools: Sequence[dict[str, Any]] = TOOLS) -> dict[str, float]:
    """Metrics of one answer's parsed OpenAI-style calls against the request (first call only)."""
    if not calls:
        return dict.fromkeys(TOOL_METRICS, 0.0)
    fn = calls[0]["function"]
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    try:
        args = json.loads(fn["arguments"])
    except json.JSONDecodeError:
        args = None
    valid = fn["name"] in schemas and isinstance(args, dict) and jsonschema.Draft202012Validator(schemas[fn["name"]]).is_valid(args)
    right = fn["name"] == request.tool
    exact = right and isinstance(args, dict) and _normal(args) == _normal(request.arguments)
    return {"called": 1.0, "right_tool": float(right), "valid_arguments": float(valid), "exact_arguments": float(exact)}


def score_structured(request: StructuredRequest, text: str) -> dict[str, float]:
    """Whether the whole answer is JSON, and whether it validates against the request's schema."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return dict.fromkeys(STRUCTURED_METRICS, 0.0)
    return {"parsed": 1.0, "schema_valid": float(jsonschema.Draft202012Validator(request.schema).is_valid(value))}


def _configs(kind: str, items: Sequence[Any], system: ToolSystem, base: NudgingConfig, tool_choice: str) -> list[NudgingConfig]:
    if kind == "tools":
        cfg = base.merged(tools=check_tools(TOOLS), tool_choice=tool_choice, parallel_tool_calls=False, constrained=system.constrained)
        return [for_system(cfg, system.gamma)] * len(items)
    return [
        base.merged(response_format={"type": "json_schema", "json_schema": {"name": item.id.split("-")[0], "schema": item.schema}}, constrained=system.constrained)
        for item in items
    ]


def _fingerprint(nudger: Nudger, cfg: NudgingConfig, item: Any, tool_choice: str) -> str:
    """The settings an answer was made with, plus the item's own text (an edited item is redone)."""
    keys = [fingerprint(nudger, cfg), tool_choice, item.prompt, getattr(item, "arguments", None), getattr(item, "schema", None)]
    if cfg.tools:  # the tool prompts' wording is part of the settings
        keys.append(nudger.prompt_ids(item.prompt, cfg))
    return hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:12]


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return r["kind"], r["system"], r["constrained"], r["item_id"], r["fingerprint"]


def run_tool_eval(
    nudger: Nudger,
    systems: Sequence[ToolSystem],
    results: Path,
    *,
    tool_choice: str = "required",
    limit: int | None = None,
    max_new_tokens: int = 96,
    batch: int = 8,
    progress: bool = True,
    bounded: bool = True,
    kinds: Sequence[str] = ("tools", "structured", "structured-bounded"),
) -> list[dict[str, Any]]:
    """Answer the first `limit` tool and structured requests (and with `bounded`, the bounded-schema
    ones) of `kinds` with each system, greedy, `batch` at a time; returns this run's records (cached
    and new), appending new ones to `results`."""
    results = Path(results)
    results.parent.mkdir(parents=True, exist_ok=True)
    base = eval_config(max_new_tokens).with_tool_settings(nudger.config)
    cached = {_key(r): r for r in read_cache(results)}
    wanted: list[tuple[Any, ...]] = []
    todo: list[tuple[str, ToolSystem, list[Any], list[NudgingConfig], list[str]]] = []
    sets = (("tools", list(REQUESTS[:limit])), ("structured", list(STRUCTURED[:limit]))) + ((("structured-bounded", list(BOUNDED[:limit])),) if bounded else ())
    for kind, items in (s for s in sets if s[0] in kinds):
        for system in systems:
            configs = _configs(kind, items, system, base, tool_choice)
            fps = [_fingerprint(nudger, c, item, tool_choice) for c, item in zip(configs, items)]
            keys = [(kind, system.name, system.constrained, item.id, fp) for item, fp in zip(items, fps)]
            wanted += keys
            left = [i for i, k in enumerate(keys) if k not in cached]
            for start in range(0, len(left), batch):
                chunk = left[start:start + batch]
                todo.append((kind, system, [items[i] for i in chunk], [configs[i] for i in chunk], [fps[i] for i in chunk]))
    if results.exists() and results.stat().st_size and not results.read_bytes().endswith(b"\n"):
        with results.open("ab") as f:  # a line cut off by an interrupted write: start a fresh one
            f.write(b"\n")
    with results.open("a", encoding="utf-8") as f, tqdm(total=sum(len(t[2]) for t in todo), disable=not progress, desc="eval-tools") as bar:
        for kind, system, items, configs, fps in todo:
            bar.set_postfix_str(f"{kind} {system.name} {'constrained' if system.constrained else 'free'}")
            answers = nudger.generate_batch([item.prompt for item in items], configs, gamma=system.gamma)
            for item, res, fp in zip(items, answers, fps):
                metrics = score_call(item, res.tool_calls) if kind == "tools" else score_structured(item, res.text)
                s = res.stats
                record = {
                    "kind": kind, "system": system.name, "gamma": system.gamma, "constrained": system.constrained,
                    "item_id": item.id, "fingerprint": fp, "metrics": metrics, "text": res.text,
                    "nudge_share": s.nudge_share, "output_tokens": s.output_tokens, "mask_seconds": s.mask_seconds,
                    "seconds": s.seconds, "stop_reason": s.stop_reason,
                    "leaked": "<tool_call>" in (res.content or ""), "first_source": res.spans[0].source if res.spans else None,
                }
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                f.flush()
                cached[_key(record)] = record
                bar.update()
    return [cached[k] for k in wanted]


def aggregate(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (kind, system, constrained): n, the mean of each metric, the share of answers cut
    at the token budget, the nudge share, and the grammar's mask time per output token (ms)."""
    groups: dict[tuple[str, str, bool], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["kind"], r["system"], r["constrained"]), []).append(r)
    rows = []
    for (kind, system, constrained), rs in groups.items():
        tokens = sum(r["output_tokens"] for r in rs)
        row: dict[str, Any] = {"kind": kind, "system": system, "gamma": rs[0]["gamma"], "constrained": constrained, "n": len(rs)}
        for metric in TOOL_METRICS if kind == "tools" else STRUCTURED_METRICS:
            row[metric] = sum(r["metrics"][metric] for r in rs) / len(rs)
        row["cut"] = sum(r["stop_reason"] == "length" for r in rs) / len(rs)
        row["nudge_share"] = sum(r["nudge_share"] for r in rs) / len(rs)
        row["mask_ms_per_token"] = 1e3 * sum(r["mask_seconds"] for r in rs) / tokens if tokens else 0.0
        rows.append(row)
    return rows


def markdown(rows: Sequence[dict[str, Any]], settings: dict[str, Any]) -> str:
    """The two tables (tool calls, structured output) and the settings they were made with."""
    lines = ["| system | γ | constrained | n | called | right tool | valid arguments | exact arguments | cut at budget | nudge share | mask ms/token |", "|" + "---|" * 11]
    for r in (r for r in rows if r["kind"] == "tools"):
        lines.append(
            f"| {r['system']} | {r['gamma']:g} | {'yes' if r['constrained'] else 'no'} | {r['n']} | {r['called']:.3f} | {r['right_tool']:.3f} "
            f"| {r['valid_arguments']:.3f} | {r['exact_arguments']:.3f} | {r['cut']:.3f} | {r['nudge_share']:.3f} | {r['mask_ms_per_token']:.2f} |"
        )
    lines += ["", "| structured output | schemas | γ | constrained | n | parses as JSON | schema-valid | cut at budget | nudge share | mask ms/token |", "|" + "---|" * 10]
    for r in (r for r in rows if r["kind"].startswith("structured")):
        lines.append(
            f"| {r['system']} | {'bounded' if r['kind'].endswith('bounded') else 'as written'} | {r['gamma']:g} | {'yes' if r['constrained'] else 'no'} | {r['n']} | {r['parsed']:.3f} "
            f"| {r['schema_valid']:.3f} | {r['cut']:.3f} | {r['nudge_share']:.3f} | {r['mask_ms_per_token']:.2f} |"
        )
    lines += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()) + "."]
    return "\n".join(lines) + "\n"


def write(rows: Sequence[dict[str, Any]], out_dir: Path, settings: dict[str, Any]) -> dict[str, Path]:
    """table.md and table.json in out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "table.md", "json": out_dir / "table.json"}
    paths["markdown"].write_text(markdown(rows, settings), encoding="utf-8")
    paths["json"].write_text(json.dumps({"settings": settings, "rows": list(rows)}, indent=2) + "\n", encoding="utf-8")
    return paths
