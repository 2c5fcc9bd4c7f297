"""The whole GPU benchmark in one run (a lent GPU machine has torch and transformers, none of our
other dependencies and no model hub): random-weight Llama-shaped pairs of real sizes, bf16.

For each pair (8B base / 1B nudger, 1B / 135M) at batch 1 and 16: HF base-only `generate` eager and
with its static cache + compile, nudged decoding eager (dynamic caches) and compiled (static caches,
`torch.compile` reduce-overhead), γ swept for a nudge share of ~5-30% (batch 16 at the middle γ);
peak memory against weights + caches. Writes fast.json and fast.png to --out.

    PYTHONPATH=core python benchmarks/gpu/run.py --tokenizer .carry/tokenizer --out "$OUT"
    PYTHONPATH=core python benchmarks/gpu/run.py --tokenizer .carry/tokenizer --out /tmp/smoke --smoke   # CPU, tiny shapes

`make gpu-prep` copies the SmolLM2 tokenizer into .carry/tokenizer (carry it to the machine).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from nudging.bench import fast
from transformers import AutoTokenizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pairs", default="8b,1b;1b,135m")
    ap.add_argument("--gammas", default="0.1,0.25,0.4")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, a few tokens: checks the script end to end")
    args = ap.parse_args()
    if args.smoke:
        args.pairs, args.gammas, args.batches, args.tokens, args.prompt_tokens, args.device = "tiny,tiny", "0.3", "1,2", 6, 8, "cpu"
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    fast.main(
        tok, Path(args.out), pairs=args.pairs.split(";"), gammas=[float(g) for g in args.gammas.split(",")],
        batches=[int(b) for b in args.batches.split(",")], tokens=args.tokens, prompt_tokens=args.prompt_tokens,
        device=args.device, dtype=dtype, compile=not args.smoke,
    )
    print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
