"""The call-or-text threshold for a pair (`NudgingConfig.call_threshold`, issue 24 item 3).

Under tool_choice "auto" the decision is made once, at the answer's start, by the nudger's
probability of opening a call. This script measures that probability on BFCL v4 items a call is
right for (`simple_python`) and items no call is right for (`irrelevance`), and prints the
threshold that maximises the mean of the two decision rates, with the AUC of the signal. Calibrate
on items the evaluation does not score: the default range 100-199 of each category is disjoint from
`nudging eval-tools --bfcl --limit 100` (the first 100). One nudger forward an item.

    PYTHONPATH=core python benchmarks/tools/calibrate.py [--from 100] [--to 200] [--base ...] [--nudger ...]

Writes benchmarks/results/tools/calibration.json (every item's probability and the choice).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nudging import Nudger
from nudging.evaluation import bfcl
from nudging.evaluation.runner import eval_config

SETS = {"simple_python": True, "irrelevance": False}  # category: a call is right


def probabilities(nudger: Nudger, lo: int, hi: int, batch: int = 8) -> list[dict]:
    """Each item's call probability (the same prompts and config as `eval-tools --bfcl`)."""
    cfg = eval_config(1)
    out = []
    for category, call_right in SETS.items():
        items = bfcl.load_items(category, hi)[lo:]
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            configs = [cfg.merged(tools=i.tools, tool_choice="auto", parallel_tool_calls=False, call_threshold=0.0, gamma=0.4) for i in chunk]
            for item, res in zip(chunk, nudger.generate_batch([i.messages for i in chunk], configs)):
                out.append({"item": item.id, "call_right": call_right, "p": res.stats.call_probability})
    return out


def rates(values: list[float], right: list[bool], threshold: float) -> tuple[float, float]:
    """(share of call-right items whose value is >= threshold, share of text-right items below it)."""
    pos = [v >= threshold for v, y in zip(values, right) if y]
    neg = [v < threshold for v, y in zip(values, right) if not y]
    return sum(pos) / len(pos), sum(neg) / len(neg)


def auc(values: list[float], right: list[bool]) -> float:
    pos = [v for v, y in zip(values, right) if y]
    neg = [v for v, y in zip(values, right) if not y]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def choose(values: list[float], right: list[bool]) -> float:
    """The threshold (one of the measured values) with the best mean of the two rates."""
    return max(sorted(set(values)), key=lambda t: sum(rates(values, right, t)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="lo", type=int, default=100)
    ap.add_argument("--to", dest="hi", type=int, default=200)
    ap.add_argument("--base", default="embedded:base")
    ap.add_argument("--nudger", default="embedded:nudger")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/tools/calibration.json"))
    args = ap.parse_args()
    nudger = Nudger.from_pretrained(args.base, args.nudger)
    records = probabilities(nudger, args.lo, args.hi)
    values, right = [r["p"] for r in records], [r["call_right"] for r in records]
    threshold = choose(values, right)
    calls, texts = rates(values, right, threshold)
    summary = {"base": nudger.base.name, "nudger": nudger.nudger.name, "items": [args.lo, args.hi], "auc": auc(values, right), "threshold": threshold, "calls_where_right": calls, "text_where_right": texts}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**summary, "records": records}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
