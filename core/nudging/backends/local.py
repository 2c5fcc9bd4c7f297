"""A transformers causal LM with a rollback-able KV cache: the local backend of a view.

The cache is a plain `DynamicCache` (full layers, no sliding-window layers) so that rejected draft
positions can always be cut off by slicing; sliding-window models still attend through their
sliding mask, which the model builds from positions, so results match the model's own generate.
"""

from __future__ import annotations

import inspect
import re
import time
from typing import Any

import torch
from transformers import DynamicCache


def eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """End-of-sequence ids: the generation config's plus the tokenizer's."""
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    for value in (getattr(gen, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(int(v) for v in value)
    return frozenset(ids)


def context_window(model: Any) -> int | None:
    """The longest sequence the model was built for, if its config says."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return getattr(config, "max_position_embeddings", None)


class LocalModel:
    """A loaded model + tokenizer, and what the engine needs to know about them."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids(model, tokenizer)
        self.context_window = context_window(model)
        params = inspect.signature(model.forward).parameters
        # transformers >= 5.2x renamed past_key_values to cache
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._keep_kw = "logits_to_keep" if "logits_to_keep" in params else None

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def name(self) -> str:
        """The model's id or folder name; a converted GGUF's cache folder reads as the GGUF file's stem."""
        path = str(getattr(self.model, "name_or_path", "") or type(self.model).__name__)
        leaf = path.rstrip("/").rsplit("/", 1)[-1]
        converted = re.fullmatch(r"(.+)-[0-9a-f]{16}-tf[\d.]+-v\d+", leaf)
        return converted.group(1) if converted else path

    def session(self) -> KVSession:
        return KVSession(self)


class KVSession:
    """One sequence's KV cache on a LocalModel: forward new ids, cut back to a length."""

    def __init__(self, lm: LocalModel) -> None:
        self.lm = lm
        self.cache: DynamicCache | None = DynamicCache()
        self.length = 0  # positions held in the cache
        self.forwards = 0
        self.seconds = 0.0  # time inside forward (synchronised on CUDA, so the split is honest)

    @torch.inference_mode()
    def forward(self, ids: list[int], keep: int = 1) -> torch.Tensor:
        """Run the model over `ids` after the cached positions; logits [keep, vocab] (float32) of the last `keep`."""
        lm = self.lm
        x = torch.tensor([ids], dtype=torch.long, device=lm.device)
        kwargs: dict[str, Any] = {lm._cache_kw: self.cache, "use_cache": True}
        if lm._keep_kw:
            kwargs[lm._keep_kw] = keep
        t0 = time.perf_counter()
        logits = lm.model(input_ids=x, **kwargs).logits[0, -keep:].float()
        if logits.is_cuda:
            torch.cuda.synchronize(logits.device)  # the next decision needs these logits anyway
        self.seconds += time.perf_counter() - t0
        self.length += len(ids)
        self.forwards += 1
        return logits

    def truncate(self, length: int) -> None:
        """Forget cached positions from `length` on."""
        if length >= self.length:
            return
        for layer in self.cache.layers:
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                layer.keys = layer.keys[..., :length, :]
                layer.values = layer.values[..., :length, :]
        self.length = length

    def close(self) -> None:
        self.cache = None
