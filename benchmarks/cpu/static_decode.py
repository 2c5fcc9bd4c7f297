"""CPU measurement of the static-cache path (issue 16): per-token decode and a 16-id verify over a
256-id cache of a random-weight 135M-shaped Llama (float32), for the dynamic cache, the static
cache eager, and the static cache under torch.compile. Timings are minima over 3 runs.

    PYTHONPATH=core python benchmarks/cpu/static_decode.py TOKENIZER_DIR benchmarks/results/static_cpu.json
"""
import json
import os
import sys
import time

import torch
from nudging.backends.local import KVSession, LocalModel
from nudging.backends.static import StaticModel
from nudging.bench.speed import random_pair
from transformers import AutoTokenizer

tok = AutoTokenizer.from_pretrained(sys.argv[1])
out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": []}
m = random_pair("135m", "tiny", tok, device="cpu", dtype=torch.float32).base.model
prompt = list(range(100, 356))  # 256 ids
for name in ("dynamic-eager", "static-eager", "static-compiled"):
    t0 = time.perf_counter()
    if name == "dynamic-eager":
        sess = KVSession(LocalModel(m, tok))
    else:
        sess = StaticModel(m, tok, compile=name.endswith("compiled"), length=512).session()
    sess.forward(prompt)
    for i in range(3):
        sess.forward([400 + i])  # warm-up (compiles the 1-id graph)
    warm = time.perf_counter() - t0
    times, verify = [], []
    for _ in range(3):
        sess.truncate(259)
        t = time.perf_counter()
        for i in range(16):
            sess.forward([500 + i])
        times.append((time.perf_counter() - t) / 16)
    for _ in range(3):
        sess.truncate(259)
        t = time.perf_counter()
        sess.forward(list(range(600, 616)), 16)
        verify.append(time.perf_counter() - t)
    row = {"model": "random 135M-shaped Llama", "dtype": "float32", "path": name, "decode_ms_per_token": 1000 * min(times),
           "verify16_ms": 1000 * min(verify), "warmup_s": warm, "load_average": os.getloadavg()[0]}
    out["rows"].append(row)
    print(json.dumps(row), flush=True)
    sess.close()
with open(sys.argv[2], "w") as f:
    json.dump(out, f, indent=2)
