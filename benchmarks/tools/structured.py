"""Structured output with the schemas as written, within the 96-id budget (issue 24's target: 100%).

`nudging eval-tools` caches answers by their settings, not by the engine's code, so its structured
rows predate budget-aware closing; this script answers the project's 12 structured requests afresh
(base alone γ 0, nudger alone γ 2, nudged γ 0.4; greedy, constrained, the schemas as written) and
counts the answers that parse and validate against their schema, and those the budget cut.

    PYTHONPATH=core .venv/bin/python benchmarks/tools/structured.py      # ~1 minute on 2 cores

Writes benchmarks/results/tools/structured.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from nudging import Nudger
from nudging.evaluation.runner import eval_config
from nudging.evaluation.tool_set import STRUCTURED

SYSTEMS = {"base": 0.0, "nudger": 2.0, "nudged@0.4": 0.4}


def main() -> None:
    pair = Nudger.default()
    cfg = eval_config(96)
    configs = [cfg.merged(response_format={"type": "json_schema", "json_schema": {"name": r.id.split("-")[0], "schema": r.schema}}) for r in STRUCTURED]
    table = {}
    for name, gamma in SYSTEMS.items():
        answers = pair.generate_batch([r.prompt for r in STRUCTURED], configs, gamma=gamma)
        rows = []
        for request, res in zip(STRUCTURED, answers):
            try:
                valid = jsonschema.Draft202012Validator(request.schema).is_valid(json.loads(res.text))
            except json.JSONDecodeError:
                valid = False
            rows.append({"item": request.id, "valid": valid, "cut": res.stats.stop_reason == "length", "text": res.text})
        table[name] = {"schema_valid": sum(r["valid"] for r in rows), "cut": sum(r["cut"] for r in rows), "n": len(rows), "answers": rows}
        print(f"{name}: {table[name]['schema_valid']}/{len(rows)} schema-valid, {table[name]['cut']} cut")
    out = Path("benchmarks/results/tools/structured.json")
    out.write_text(json.dumps({"base": pair.base.name, "nudger": pair.nudger.name, "max_new_tokens": 96, "systems": table}, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
