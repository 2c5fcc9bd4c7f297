"""The whole GPU benchmark in one run (a lent GPU machine has torch and transformers, none of our
other dependencies and no model hub): random-weight Llama-shaped pairs of real sizes, bf16.

1. one-prompt ratio (nudged vs base-only `generate`), γ swept so the nudge share spans ~5-40%;
2. batch throughput (batched nudging vs base-only batched `generate`) at batch 1, 4, 16, 64.

    PYTHONPATH=core python benchmarks/gpu/run.py --tokenizer .carry/tokenizer --out "$OUT"

`make gpu-prep` copies the SmolLM2 tokenizer into .carry/tokenizer (carry it to the machine).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from nudging import NudgingConfig
from nudging.bench import batch as bench_batch
from nudging.bench import speed as bench
from transformers import AutoTokenizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pair", default="8b,1b")
    ap.add_argument("--gammas", default="0.05,0.15,0.3,0.5")
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--batches", default="1,4,16,64")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    pair = bench.random_pair(*args.pair.split(","), tok, device=args.device)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    print(f"built {args.pair} in {time.perf_counter() - t0:.0f} s on {where}", flush=True)
    reports = []
    for g in (float(x) for x in args.gammas.split(",")):
        cfg = NudgingConfig(gamma=g, max_new_tokens=args.tokens)
        r = bench.run(pair, prompts=bench.PROMPTS[: args.prompts], config=cfg, label=args.pair)
        reports.append(r)
        print(json.dumps(r.summary()), flush=True)
        bench.write(reports, out)
    # batch throughput at the γ whose nudge share is nearest 10% (the paper's regime)
    best = min(reports, key=lambda r: abs(r.summary()["nudge_share"] - 0.10))
    cfg = NudgingConfig(gamma=best.gamma, max_new_tokens=args.tokens)
    report = bench_batch.run(pair, [int(b) for b in args.batches.split(",")], config=cfg, repeats=1, progress=lambda row: print(json.dumps(asdict(row)), flush=True))
    bench_batch.write(report, out)
    print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
