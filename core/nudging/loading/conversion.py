"""A GGUF file as an ordinary float32 HF folder: loaded once with transformers (which parses and
dequantizes the file and converts its tokenizer), written out, and checked to reload as that same
load before the cache counts it (`models.convert_gguf` owns the cache, its key and its lock)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
import transformers
from rich.console import Console
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from ..errors import ModelLoadError

_CHECK_TEXT = "The capital of France is Paris. Tomorrow, we ünïcödé — 中文 🙂"


def dequantize(gguf: Path, out: Path) -> None:
    """Load a GGUF file with transformers and write it to `out` as a plain float32 HF folder."""
    console = Console(stderr=True)
    console.print(f"Converting [bold]{gguf.name}[/] (first load only, ~1 min; cached afterwards)", soft_wrap=True)
    try:
        with console.status("Converting the tokenizer…"):
            tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:
        raise ModelLoadError(f"transformers could not load the GGUF file {gguf}: {exc}") from exc
    _write(model.eval(), tok, out)
    _check_round_trip(model, tok, out)
    console.print(f"Cached [bold]{gguf.name}[/] in {out.parent}", soft_wrap=True)


def _write(model: PreTrainedModel, tok: Any, out: Path) -> None:
    """Config, generation config, weights and tokenizer (save_pretrained refuses GGUF-loaded models)."""
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = [type(model).__name__]
    config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    save_file(_untied_state_dict(model), out / "model.safetensors", metadata={"format": "pt"})
    tok.save_pretrained(out)


def _check_round_trip(model: PreTrainedModel, tok: Any, out: Path) -> None:
    """The written folder loads as the model transformers made from the GGUF file: every tensor
    equal, ties kept, the same ids, special tokens, chat template and logits. Checked once, while
    transformers' own (slow) load is in memory anyway; the result goes to conversion.json."""
    again = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    again_tok = AutoTokenizer.from_pretrained(out)
    ours, theirs = again.state_dict(), model.state_dict()
    problems = [f"tensors differ in name: {sorted(set(ours) ^ set(theirs))[:5]}"] if set(ours) != set(theirs) else []
    problems += [f"tensor {name} differs" for name in sorted(theirs) if name in ours and not torch.equal(ours[name], theirs[name])][:5]
    tied = model.get_input_embeddings().weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()
    if tied and again.get_input_embeddings().weight.data_ptr() != again.get_output_embeddings().weight.data_ptr():
        problems.append("the input and output embeddings are no longer tied")
    ids = tok(_CHECK_TEXT, return_tensors="pt").input_ids
    if again_tok(_CHECK_TEXT, return_tensors="pt").input_ids.tolist() != ids.tolist():
        problems.append("the tokenizer gives other ids")
    for attr in ("eos_token", "bos_token", "pad_token", "chat_template"):
        if getattr(again_tok, attr, None) != getattr(tok, attr, None):
            problems.append(f"the tokenizer's {attr} differs")
    if again.generation_config.eos_token_id != model.generation_config.eos_token_id:
        problems.append("the generation config's eos_token_id differs")
    diff = 0.0
    if not problems:
        with torch.inference_mode():
            diff = float((again(ids).logits - model(ids).logits).abs().max())
        if diff > 1e-5:
            problems.append(f"logits differ by up to {diff:g}")
    if problems:
        raise ModelLoadError(f"the converted folder {out} does not reload as transformers' own GGUF load: " + "; ".join(problems))
    record = {"transformers": transformers.__version__, "tensors": len(theirs), "tied_embeddings": tied, "text": _CHECK_TEXT, "max_logit_difference": diff}
    (out / "conversion.json").write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n")


def _untied_state_dict(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The state dict with each shared tensor once (safetensors refuses shared storage).

    Tied weights keep the tie's source (the input embedding, not lm_head), which is the name
    `from_pretrained` expects to find before it re-ties the target.
    """
    tied_targets = set(getattr(model, "_tied_weights_keys", None) or ())
    state = model.state_dict()
    seen: set[tuple[Any, ...]] = set()
    out: dict[str, torch.Tensor] = {}
    for name in sorted(state, key=lambda n: n in tied_targets):  # stable: sources before targets
        tensor = state[name]
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride())
        if key not in seen:
            seen.add(key)
            out[name] = tensor.detach().contiguous()
    return out
