"""The call-or-text decision with grounded calls (`NudgingConfig.grounded_calls`, issue 24 item 3).

A decided call is kept only where its argument values come from the conversation
(nudging/grounding.py); the nudger's opener probability (`p_open`, from signals.json) decides which
answers try a call at all. Per item this script takes the call the pair writes when a call is
forced (nudged, gamma 0.4, the pair's tool settings, 128 ids: what `eval-tools --bfcl` writes under
"required"; a call decided under "auto" differs only by the prompt's rule line) and whether it is
grounded, then for each threshold on `p_open` the share of call-right items whose call is kept and
of text-right items answered in text. The threshold is the best balanced one on the calibration items
(BFCL 100-159 of each category); the rates are reported on the evaluation's items (BFCL 0-99) and the
agent-style requests of signals.py, with the BFCL checker's verdict on the kept simple_python calls.

    PYTHONPATH=core .venv/bin/python benchmarks/tools/signals.py    # first: p_open per item (~6 min)
    PYTHONPATH=core .venv/bin/python benchmarks/tools/grounded.py   # forced calls, cached (~25 min afresh)

Writes benchmarks/results/tools/grounded.{json,md}; the calls are cached in grounded_calls.jsonl.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from calibrate import rates  # this folder's: run as a script, it is on sys.path
from signals import agent_cases

from nudging import Nudger
from nudging.evaluation import bfcl
from nudging.evaluation.runner import eval_config
from nudging.grounding import unsupported

OUT = Path("benchmarks/results/tools")
CACHE = OUT / "grounded_calls.jsonl"
SETS = {"calibration (BFCL 100-159)": (100, 160), "evaluation (BFCL 0-99)": (0, 100)}


def cases() -> dict[str, list[tuple[str, list[dict], tuple[dict, ...], bool, object]]]:
    """Set name -> (item id, messages, tools, a call is right, the BFCL item or None)."""
    out: dict[str, list] = {}
    for name, (lo, hi) in SETS.items():
        out[name] = [(it.id, it.messages, it.tools, cat == "simple_python", it) for cat in ("simple_python", "irrelevance") for it in bfcl.load_items(cat, hi)[lo:]]
    out["agent-style requests"] = [(cid, msgs, tuple(tools), right, None) for cid, msgs, tools, right in agent_cases()]
    return out


def forced_calls(pair: Nudger, todo: list[tuple[str, list[dict], tuple[dict, ...]]], batch: int = 4) -> dict[str, list[dict]]:
    """Each item's forced call (the first parsed one, or none), cached in CACHE by item id."""
    cached = {r["item"]: r["calls"] for r in map(json.loads, CACHE.read_text().splitlines())} if CACHE.exists() else {}
    left = [t for t in todo if t[0] not in cached]
    cfg = eval_config(128).with_tool_settings(pair.config)
    with CACHE.open("a", encoding="utf-8") as f:
        for start in range(0, len(left), batch):
            chunk = left[start : start + batch]
            configs = [cfg.merged(tools=tools, tool_choice="required", parallel_tool_calls=False) for _, _, tools in chunk]
            for (item, _, _), res in zip(chunk, pair.generate_batch([m for _, m, _ in chunk], configs, gamma=0.4)):
                cached[item] = res.tool_calls
                f.write(json.dumps({"item": item, "calls": res.tool_calls}, ensure_ascii=False) + "\n")
                f.flush()
    return cached


def main() -> None:
    p_open = {r["item"]: r["p_open"] for rs in json.loads((OUT / "signals.json").read_text())["records"].values() for r in rs}
    sets = cases()
    calls = forced_calls(Nudger.default(), [(c[0], c[1], c[2]) for cs in sets.values() for c in cs])
    rows = {name: [] for name in sets}
    for name, cs in sets.items():
        for item, messages, tools, right, bitem in cs:
            call = calls[item][:1]
            grounded = bool(call) and not unsupported(call[0], tools, messages)
            correct = bool(bitem is not None and right and call and bfcl.score(bitem, call)["correct"])
            rows[name].append({"item": item, "call_right": right, "p_open": p_open[item], "grounded": grounded, "correct_if_called": correct})
    calib = rows["calibration (BFCL 100-159)"]

    def score(r: dict, grounded: bool) -> float:
        """What the rule compares with the threshold: an ungrounded call is never kept."""
        return -math.inf if grounded and not r["grounded"] else r["p_open"]

    def at(t: float, rs: list[dict], grounded: bool) -> dict:
        values = [score(r, grounded) for r in rs]
        calls_, texts = rates(values, [r["call_right"] for r in rs], t)
        correct = [v >= t for r, v in zip(rs, values) if r["call_right"] and r["correct_if_called"]]
        return {"calls_where_right": calls_, "text_where_right": texts, "correct_calls_kept": f"{sum(correct)}/{len(correct)}"}

    table = []
    for grounded in (False, True):
        values = [score(r, grounded) for r in calib]
        t = max(sorted(set(v for v in values if v > -math.inf)), key=lambda t: sum(rates(values, [r["call_right"] for r in calib], t)))
        table.append({"rule": "p_open >= t and grounded" if grounded else "p_open >= t", "threshold": math.exp(t), **{name: at(t, rs, grounded) for name, rs in rows.items()}})
    (OUT / "grounded.json").write_text(json.dumps({"table": table, "records": rows}, indent=1) + "\n")
    lines = ["| rule | threshold (probability) | " + " | ".join(f"{n}: calls kept where right / text where right / correct calls kept" for n in rows) + " |", "|---" * (2 + len(rows)) + "|"]
    for row in table:
        cells = [f"{row[n]['calls_where_right']:.0%} / {row[n]['text_where_right']:.0%} / {row[n]['correct_calls_kept']}" for n in rows]
        lines.append(f"| {row['rule']} | {row['threshold']:.4f} | " + " | ".join(cells) + " |")
    (OUT / "grounded.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
