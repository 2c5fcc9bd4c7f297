"""`nudging bench --compare` on the embedded pair in a chosen dtype (issue 15: bf16 on CPUs with
native bf16 support). Writes DIR/compare.json and compare.png.

    PYTHONPATH=core .venv/bin/python benchmarks/cpu/compare_dtypes.py bfloat16 benchmarks/results/compare-bf16 [PROMPTS] [TOKENS]
"""
import sys
from pathlib import Path

from nudging import Nudger
from nudging.bench import compare

dtype, out = sys.argv[1], Path(sys.argv[2])
n_prompts = int(sys.argv[3]) if len(sys.argv) > 3 else 8
tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 128
pair = Nudger.from_pretrained("embedded:base", "embedded:nudger", dtype=dtype)
report = compare.run(pair, prompts=compare.PROMPTS[:n_prompts], max_new_tokens=tokens, progress=print)
print(compare.write(report, out))
