"""The plain single-model server: vLLM's completions shape with logprobs, checked against the
model's own log_softmax and greedy `generate`, over loopback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import torch
from nudging.serving import create_plain_app, serve_in_thread
from tiny_models import real_tokenizers, tiny_gemma3, tiny_llama

PROMPT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def served(request):
    """(model, tokenizer, base URL): SmolLM2's tokenizer adds no BOS, gemma's does."""
    gemma_tok, smol_tok = real_tokenizers()
    model, tok = (tiny_llama(smol_tok, seed=5), smol_tok) if request.param == "smollm2" else (tiny_gemma3(gemma_tok, seed=6), gemma_tok)
    with serve_in_thread(create_plain_app(model, tok, "tiny-plain")) as url:
        yield model, tok, url


def post(url: str, **body) -> dict:
    r = httpx.post(f"{url}/completions", json={"model": "tiny-plain", **body}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


@torch.inference_mode()
def reference_logprobs(model, ids: list[int]) -> torch.Tensor:
    """log_softmax of one full forward: row i predicts ids[i + 1]."""
    return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)


def ids_of(top: dict[str, float]) -> dict[int, float]:
    return {int(k.removeprefix("token_id:")): v for k, v in top.items()}


def test_echo_with_zero_max_tokens_scores_the_prompt(served):
    model, tok, url = served
    res = post(url, prompt=PROMPT, max_tokens=0, echo=True, logprobs=3, return_token_ids=True, return_tokens_as_token_ids=True)
    choice = res["choices"][0]
    ids = tok.encode(PROMPT)
    assert choice["prompt_token_ids"] == ids and choice["token_ids"] == []
    assert choice["text"] == PROMPT and choice["finish_reason"] == "length"
    assert res["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 0, "total_tokens": len(ids)}
    lp = choice["logprobs"]
    assert lp["tokens"] == [f"token_id:{t}" for t in ids]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    ref = reference_logprobs(model, ids)
    for i in range(1, len(ids)):
        assert lp["token_logprobs"][i] == pytest.approx(float(ref[i - 1, ids[i]]), abs=1e-4)
        top = ids_of(lp["top_logprobs"][i])
        want = torch.topk(ref[i - 1], 3)
        assert set(top) == {ids[i], *want.indices.tolist()}
        assert list(top)[0] == ids[i]  # the prompt token first, as vLLM orders them
        for t, v in top.items():
            assert v == pytest.approx(float(ref[i - 1, t]), abs=1e-4)


def test_token_strings_and_text_offsets(served):
    _, tok, url = served
    lp = post(url, prompt=PROMPT, max_tokens=0, echo=True, logprobs=1)["choices"][0]["logprobs"]
    ids = tok.encode(PROMPT)
    # each token's string is the text it adds (special tokens such as <bos> spelled out)
    assert "".join(lp["tokens"]) == tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    assert lp["text_offset"] == [sum(len(t) for t in lp["tokens"][:i]) for i in range(len(ids))]
    assert all(lp["tokens"][i] in top for i, top in enumerate(lp["top_logprobs"]) if top is not None)


def test_greedy_generation_equals_model_generate(served):
    model, tok, url = served
    ids = tok.encode(PROMPT)
    res = post(url, prompt=PROMPT, max_tokens=8, temperature=0, logprobs=2, return_token_ids=True, return_tokens_as_token_ids=True)
    choice = res["choices"][0]
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=8, pad_token_id=tok.eos_token_id)[0, len(ids) :].tolist()
    assert choice["token_ids"] == out
    eos = choice["token_ids"][-1] == tok.eos_token_id
    assert choice["finish_reason"] == ("stop" if eos else "length")
    text_ids = out[:-1] if eos else out
    assert choice["text"] == tok.decode(text_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    assert res["usage"]["completion_tokens"] == len(out)
    ref = reference_logprobs(model, ids + out)
    lp = choice["logprobs"]
    assert lp["tokens"] == [f"token_id:{t}" for t in out]
    for j, t in enumerate(out):
        row = ref[len(ids) - 1 + j]
        assert lp["token_logprobs"][j] == pytest.approx(float(row[t]), abs=1e-4)
        assert ids_of(lp["top_logprobs"][j]).keys() == set(torch.topk(row, 2).indices.tolist()) | {t}


def test_token_id_prompts_echo_and_stop(served):
    _, tok, url = served
    ids = tok.encode(PROMPT)
    full = post(url, prompt=ids, max_tokens=8, temperature=0)["choices"][0]["text"]
    assert len(full) > 6
    stop = full[3:6]
    res = post(url, prompt=ids, max_tokens=8, temperature=0, stop=stop, echo=True)["choices"][0]
    assert res["text"] == tok.decode(ids, skip_special_tokens=False) + full[: full.find(stop)]
    assert res["finish_reason"] == "stop"


def test_seeded_sampling_is_reproducible(served):
    _, _, url = served
    runs = [post(url, prompt=PROMPT, max_tokens=6, temperature=1.0, top_p=0.9, seed=11, return_token_ids=True)["choices"][0]["token_ids"] for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) >= 1


def test_the_openai_client_reads_logprobs(served):
    _, _, url = served
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)
    res = client.completions.create(model="tiny-plain", prompt=PROMPT, max_tokens=3, temperature=0, logprobs=2, echo=True)
    lp = res.choices[0].logprobs
    assert res.choices[0].text.startswith(PROMPT)
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == res.usage.total_tokens


@pytest.mark.parametrize(
    "body, code, fragment, param",
    [
        ({"prompt": PROMPT, "stream": True}, 400, "stream is not supported", "stream"),
        ({"prompt": PROMPT, "max_tokens": 0}, 400, "0 only with echo", "max_tokens"),
        ({"prompt": PROMPT, "logprobs": 21}, 400, "between 0 and 20", "logprobs"),
        ({"prompt": [5] * 2100}, 400, "maximum context length is 2048", "prompt"),
        ({"prompt": [10**9]}, 400, "token ids", "prompt"),
        ({"prompt": ""}, 400, "prompt is empty", "prompt"),
        ({"prompt": ["a", "b"]}, 400, "batches are not supported", "prompt"),
        ({"prompt": PROMPT, "n": 2}, 400, "n=2", "n"),
        ({"prompt": PROMPT, "temperature": -1}, 400, "temperature", "temperature"),
        ({"prompt": PROMPT, "model": "other"}, 404, "does not exist", "model"),
    ],
)
def test_bad_requests(served, body, code, fragment, param):
    _, _, url = served
    r = httpx.post(f"{url}/completions", json=body, timeout=60)
    assert r.status_code == code
    error = r.json()["error"]
    assert fragment in error["message"] and error["param"] == param
    assert post(url, prompt="ok", max_tokens=1)["usage"]["completion_tokens"] == 1


def test_serve_runs_a_plain_model_in_its_own_process(tmp_path: Path):
    """`serve(plain=...)`, the function behind `nudging serve --plain`, as a real server process."""
    _, smol_tok = real_tokenizers()
    model = tiny_llama(smol_tok, seed=5)
    model.save_pretrained(tmp_path)
    smol_tok.save_pretrained(tmp_path)
    code = f"from nudging.serving import serve; serve(plain={str(tmp_path)!r}, host='127.0.0.1', port=0, model_name='tiny', dtype='float32')"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 180
        port = None
        while port is None:
            assert time.monotonic() < deadline and proc.poll() is None, "the server did not start"
            line = proc.stderr.readline()
            if m := re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line):
                port = int(m.group(1))
        url = f"http://127.0.0.1:{port}/v1"
        assert httpx.get(f"{url.removesuffix('/v1')}/health", timeout=30).json()["status"] == "ok"
        ids = smol_tok.encode(PROMPT)
        res = post(url, prompt=ids, max_tokens=4, temperature=0, return_token_ids=True, model="tiny")
        with torch.inference_mode():
            want = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=4, pad_token_id=smol_tok.eos_token_id)[0, len(ids) :].tolist()
        assert res["choices"][0]["token_ids"] == want
    finally:
        proc.terminate()
        proc.wait(30)
