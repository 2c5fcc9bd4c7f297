"""Shared fixtures. Real-model fixtures load the embedded pair once per session; they never skip:
a missing model package is a broken install and must fail loudly."""

from __future__ import annotations

import os

# No hub here: an HF id that is not cached fails at once instead of after ~30 s of retries.
# Set before anything imports huggingface_hub, which reads it at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def real_pair():
    """(base_model, base_tok, nudger_model, nudger_tok): gemma-3-270m and SmolLM2-135M-Instruct.

    Loaded through the GGUF conversion cache ($NUDGING_CACHE or ~/.cache/nudging): about 75 s the
    first time on a machine, a few seconds afterwards.
    """
    from nudging.loading import load_model

    base, base_tok = load_model("embedded:base")
    nudger, nudger_tok = load_model("embedded:nudger")
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
