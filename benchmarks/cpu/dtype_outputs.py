"""Where greedy outputs differ between float32 and bfloat16 weights (the embedded pair): per prompt and
system (base alone γ=0, nudged γ=0.4, nudger alone γ=2), whether the texts are equal, how many
characters they share before they part, and the nudge share in each dtype. Writes OUT (JSON).

    PYTHONPATH=core .venv/bin/python benchmarks/cpu/dtype_outputs.py benchmarks/results/dtype-outputs.json [PROMPTS] [TOKENS]
"""

import json
import os
import statistics
import sys
from os.path import commonprefix
from pathlib import Path

import torch
from nudging import Nudger, NudgingConfig
from nudging.bench import compare, speed

out = Path(sys.argv[1])
n_prompts = int(sys.argv[2]) if len(sys.argv) > 2 else 8
tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 64
prompts = (speed.PROMPTS + compare.PROMPTS)[:n_prompts]
systems = {"base alone γ=0": 0.0, "nudged γ=0.4": 0.4, "nudger alone γ=2": 2.0}
answers, machine = {}, ""
for dtype in ("float32", "bfloat16"):
    pair = Nudger.from_pretrained("embedded:base", "embedded:nudger", dtype=dtype)
    answers[dtype] = {(p, s): pair.generate(p, NudgingConfig(gamma=g, max_new_tokens=tokens)) for p in prompts for s, g in systems.items()}
    machine = compare.machine(pair).rsplit(", dtype", 1)[0]
    del pair
rows = []
for (p, s), a in answers["float32"].items():
    b = answers["bfloat16"][(p, s)]
    rows.append({"prompt": p, "system": s, "equal": a.text == b.text, "shared_chars": len(commonprefix([a.text, b.text])), "chars": [len(a.text), len(b.text)],
                 "nudge_share": [a.stats.nudge_share, b.stats.nudge_share], "float32": a.text, "bfloat16": b.text})
summary = {
    s: {"equal": sum(r["equal"] for r in rows if r["system"] == s) / len(prompts),
        "shared_chars_median": statistics.median(r["shared_chars"] for r in rows if r["system"] == s),
        "nudge_share_float32": statistics.mean(r["nudge_share"][0] for r in rows if r["system"] == s),
        "nudge_share_bfloat16": statistics.mean(r["nudge_share"][1] for r in rows if r["system"] == s)}
    for s in systems
}
report = {"machine": machine, "load_average": os.getloadavg(),
          "torch": torch.__version__, "max_new_tokens": tokens, "prompts": len(prompts), "summary": summary, "rows": rows}
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
print(json.dumps(summary, indent=2, ensure_ascii=False))
