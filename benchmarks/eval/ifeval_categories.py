"""IFEval instruction-level accuracy per instruction category, from the eval cache.

Where does nudging help and where does it hurt? The table behind `nudging eval` pools all 25
instruction types; this rescores each cached answer per instruction (the same if-verifiable checkers)
and groups them by category (keywords, detectable_format, length_constraints, ...). Only items
answered by every listed system count, so the columns compare the same prompts.

    .venv/bin/python benchmarks/eval/ifeval_categories.py --systems base nudged@0.4 nudger
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

from nudging.evaluation.runner import read_cache
from nudging.evaluation.tasks import check_ifeval, ensure_punkt, load_ifeval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("results.jsonl"))
    parser.add_argument("--systems", nargs="+", default=["base", "nudged@0.4", "nudger"])
    parser.add_argument("--limit", type=int, default=None, help="first N IFEval items only")
    args = parser.parse_args()

    ensure_punkt(args.results.parent / ".cache")
    records = [r for r in read_cache(args.results) if r["task"] == "ifeval" and r["system"] in args.systems]
    # Several settings can share a system name (budgets, templates): keep each system's most common one.
    common = {s: Counter(r["fingerprint"] for r in records if r["system"] == s).most_common(1) for s in args.systems}
    missing = [s for s, c in common.items() if not c]
    if missing:
        raise SystemExit(f"no IFEval answers cached for {missing} in {args.results}")
    answers = {(r["system"], r["item_id"]): r["text"] for r in records if r["fingerprint"] == common[r["system"]][0][0]}
    items = load_ifeval()[: args.limit]
    items = [i for i in items if all((s, i.id) in answers for s in args.systems)]

    passed: dict[str, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    for item in items:
        for instruction in item.reference["instruction_id_list"]:
            totals[instruction.split(":")[0]] += 1
        for system in args.systems:
            results, _ = check_ifeval(item, answers[(system, item.id)])
            for res in results:
                passed[system][res.instruction_id.split(":")[0]] += res.strict_pass

    print(f"IFEval instruction-level strict accuracy by category, {len(items)} prompts answered by all of {', '.join(args.systems)}\n")
    print("| category | instructions | " + " | ".join(args.systems) + " |")
    print("|---|---|" + "---|" * len(args.systems))
    for category, n in totals.most_common():
        print(f"| {category} | {n} | " + " | ".join(f"{passed[s][category] / n:.3f}" for s in args.systems) + " |")
    n_all = sum(totals.values())
    print(f"| all | {n_all} | " + " | ".join(f"{sum(passed[s].values()) / n_all:.3f}" for s in args.systems) + " |")
    summary = {s: {c: passed[s][c] / totals[c] for c in totals} for s in args.systems}
    (args.results.parent / "ifeval_categories.json").write_text(json.dumps({"prompts": len(items), "instructions": dict(totals), "accuracy": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
