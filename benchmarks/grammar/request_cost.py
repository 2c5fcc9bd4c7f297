"""What constrained output costs a whole request (issue 24's target: at most 1.5x the same request
unconstrained), for base alone, nudger alone and nudged, on the project's tool and structured sets.

Each request runs constrained and unconstrained back to back, in alternating order, one at a time, on
one loaded pair, after a warm-up. Reported per system: the median over requests of the time ratio
(constrained / unconstrained) per request and per output id, the mask's milliseconds per output id,
and where the constrained time went (base forwards, nudger forwards, mask, the rest). An unconstrained
answer often runs to the budget where the grammar ends a call early, so the per-id ratio is the cost
of the mask itself and the per-request ratio what a caller waits. Run from the repo root:

    PYTHONPATH=core .venv/bin/python benchmarks/grammar/request_cost.py [--n 6] [--max-new-tokens 96]

Writes benchmarks/results/tools/request_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

from nudging import Nudger
from nudging.evaluation.runner import BASE_ONLY, NUDGER_ONLY, eval_config
from nudging.evaluation.tool_set import REQUESTS, STRUCTURED, TOOLS
from nudging.tools import check_tools

SYSTEMS = {"base": BASE_ONLY, "nudger": NUDGER_ONLY, "nudged@0.4": 0.4}


def spread(items: tuple, n: int) -> list:
    """n items spread evenly over a set (its kinds come in runs: weather, currency, ...)."""
    return [items[i * len(items) // n] for i in range(min(n, len(items)))]


def requests(n: int, max_new_tokens: int) -> list[tuple[str, str, dict]]:
    """(set, prompt, config overrides) for the first n tool requests ("required") and n structured ones."""
    cfg = {"max_new_tokens": max_new_tokens}
    tools = [("tools", r.prompt, {**cfg, "tools": check_tools(TOOLS), "tool_choice": "required", "parallel_tool_calls": False}) for r in spread(REQUESTS, n)]
    schemas = [("structured", r.prompt, {**cfg, "response_format": {"type": "json_schema", "json_schema": {"name": r.id.split("-")[0], "schema": r.schema}}}) for r in spread(STRUCTURED, n)]
    return tools + schemas


def measure(pair: Nudger, n: int, max_new_tokens: int) -> list[dict]:
    base = eval_config(1).with_tool_settings(pair.config)  # the pair's own call_gamma, as the evaluations run it
    reqs = requests(n, max_new_tokens)
    pair.generate(reqs[0][1], base.merged(gamma=0.4, **reqs[0][2]))  # warm-up: grammar compile, tokenizers
    rows = []
    for i, (kind, prompt, over) in enumerate(reqs):
        for system, gamma in SYSTEMS.items():
            order = (True, False) if i % 2 == 0 else (False, True)
            got = {c: pair.generate(prompt, base.merged(gamma=gamma, constrained=c, **over)).stats for c in order}
            on, off = got[True], got[False]
            rows.append({
                "set": kind, "system": system, "request": i,
                "seconds": [on.seconds, off.seconds], "output_tokens": [on.output_tokens, off.output_tokens],
                "mask_seconds": on.mask_seconds, "base_seconds": on.base_seconds, "nudger_seconds": on.nudger_seconds,
                "stop_reason": [on.stop_reason, off.stop_reason],
            })
            print(json.dumps(rows[-1]), flush=True)
    return rows


def summary(rows: list[dict]) -> list[dict]:
    out = []
    for system in SYSTEMS:
        for kind in ("tools", "structured", "all"):
            rs = [r for r in rows if r["system"] == system and kind in ("all", r["set"])]
            per_id = lambda r, k: r["seconds"][k] / max(1, r["output_tokens"][k])  # noqa: E731
            on = sum(r["seconds"][0] for r in rs)
            out.append({
                "system": system, "set": kind, "n": len(rs),
                "request_ratio": statistics.median(r["seconds"][0] / r["seconds"][1] for r in rs),
                "per_id_ratio": statistics.median(per_id(r, 0) / per_id(r, 1) for r in rs),
                "mask_ms_per_id": 1e3 * sum(r["mask_seconds"] for r in rs) / max(1, sum(r["output_tokens"][0] for r in rs)),
                "split": {k: sum(r[f"{k}_seconds"] for r in rs) / on for k in ("base", "nudger", "mask")},
                "cut": sum(r["stop_reason"][0] == "length" for r in rs),
            })
    return out


def markdown(rows: list[dict], machine: str) -> str:
    lines = [
        "| system | set | n | constrained ÷ unconstrained, per request | per output id | mask ms/id | time: base / nudger / mask / rest | constrained cut |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["split"]
        rest = 1 - s["base"] - s["nudger"] - s["mask"]
        lines.append(f"| {r['system']} | {r['set']} | {r['n']} | ×{r['request_ratio']:.2f} | ×{r['per_id_ratio']:.2f} | {r['mask_ms_per_id']:.2f} | {s['base']:.0%} / {s['nudger']:.0%} / {s['mask']:.0%} / {rest:.0%} | {r['cut']} |")
    return "\n".join(lines) + f"\n\n{machine}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=6, help="requests of each set")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/tools"))
    args = ap.parse_args()
    pair = Nudger.default()
    rows = measure(pair, args.n, args.max_new_tokens)
    table = summary(rows)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end, weights {pair.base.model.dtype}, greedy, {args.max_new_tokens} ids."
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "request_cost.json").write_text(json.dumps({"summary": table, "rows": rows, "machine": machine}, indent=1) + "\n")
    (args.out / "request_cost.md").write_text(markdown(table, machine))
    print(markdown(table, machine))


if __name__ == "__main__":
    main()
