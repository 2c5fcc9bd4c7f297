"""A transformers causal LM with rollback-able KV caches: the local backend of a view.

Each sequence keeps its own plain `DynamicCache` (full layers, no sliding-window layers) so that
rejected draft positions can always be cut off by slicing; sliding-window models still attend
through their sliding mask, built from positions, so results match the model's own generate.
Many sequences run in one forward by stacking their caches left-padded, their new ids
right-padded (each row's real positions stay contiguous, so sliding windows see true distances),
and splitting the grown cache back per row.
"""

from __future__ import annotations

import inspect
import re
import time
from typing import Any, Sequence

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from .base import Capabilities


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


def text_config(model: Any) -> Any:
    return model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config


def context_window(model: Any) -> int | None:
    """The longest sequence the model was built for, if its config says."""
    return getattr(text_config(model), "max_position_embeddings", None)


class LocalModel:
    """A loaded model + tokenizer, and what the engine needs to know about them."""

    capabilities = Capabilities(hidden_states=True, batched=True)

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids(model, tokenizer)
        self.context_window = context_window(model)
        params = inspect.signature(model.forward).parameters
        # transformers >= 5.2x renamed past_key_values to cache
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._backbone_cache_kw = "past_key_values"  # set with _split, on first use
        self._keep_kw = "logits_to_keep" if "logits_to_keep" in params else None
        self._split: bool | None = None  # does backbone + output layer reproduce the model's logits?

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

    def session(self, hidden: bool = False) -> KVSession:
        return KVSession(self, hidden)

    # -- forwards ---------------------------------------------------------------------------
    def _head(self, h: torch.Tensor) -> torch.Tensor:
        """The model's output layer on final hidden states (with Gemma-style logit soft-capping)."""
        logits = self.model.get_output_embeddings()(h).float()
        cap = getattr(text_config(self.model), "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def _check_split(self) -> bool:
        """Computing logits only for the rows a batch needs means running the output layer ourselves;
        check once, on two ids, that this reproduces the model's own logits (else fall back)."""
        if self._split is None:
            x = torch.tensor([[1, 2]], device=self.device)
            out = self.model(input_ids=x, use_cache=False, output_hidden_states=True)
            mine = self._head(out.hidden_states[-1])
            self._split = bool(torch.allclose(mine, out.logits.float(), rtol=1e-3, atol=1e-3))
            if "cache" in inspect.signature(self.model.base_model.forward).parameters:
                self._backbone_cache_kw = "cache"
        return self._split

    @torch.inference_mode()
    def forward_batch(self, sessions: Sequence[KVSession], ids: Sequence[list[int]], keeps: Sequence[int], rows: Any = None) -> list[torch.Tensor]:
        """One forward over several sessions, each extended by its own ids; per session, the logits
        [keep, vocab] (float32) of its last `keep` new positions."""
        lens = [s.length for s in sessions]
        counts = [len(i) for i in ids]
        P, N, B = max(lens), max(counts), len(sessions)
        dev = self.device
        x = torch.zeros((B, N), dtype=torch.long)
        for r, row in enumerate(ids):
            x[r, : len(row)] = torch.tensor(row, dtype=torch.long)
        pos = torch.tensor(lens)[:, None] + torch.arange(N)[None, :]
        kwargs: dict[str, Any] = {"use_cache": True, "position_ids": pos.to(dev)}
        if B == 1:
            cache = sessions[0].cache
        else:
            cache = _stack([s.cache for s in sessions], lens, P)
        if any(L != P for L in lens) or any(n != N for n in counts):
            mask = torch.zeros((B, P + N), dtype=torch.long)
            for r, (L, n) in enumerate(zip(lens, counts)):
                mask[r, P - L : P + n] = 1
            kwargs["attention_mask"] = mask.to(dev)
        want_hidden = any(s.keep_hidden for s in sessions)
        rows = [(r, c) for r, (n, k) in enumerate(zip(counts, keeps)) for c in range(n - k, n)]
        sel_r = torch.tensor([r for r, _ in rows], device=dev)
        sel_c = torch.tensor([c for _, c in rows], device=dev)
        t0 = time.perf_counter()
        if self._check_split():
            h = self.model.base_model(input_ids=x.to(dev), **{self._backbone_cache_kw: cache}, **kwargs).last_hidden_state
            logits = self._head(h[sel_r, sel_c])
        else:  # logits for every column any row needs, then pick each row's
            cols = sorted({c for _, c in rows})
            if self._keep_kw:
                kwargs[self._keep_kw] = torch.tensor(cols, device=dev)
            out = self.model(input_ids=x.to(dev), output_hidden_states=want_hidden, **{self._cache_kw: cache}, **kwargs)
            col_of = {c: i for i, c in enumerate(cols)} if self._keep_kw else {c: c for c in range(N)}
            logits = out.logits[sel_r, torch.tensor([col_of[c] for _, c in rows], device=dev)].float()
            h = out.hidden_states[-1] if want_hidden else None
        if logits.is_cuda:
            torch.cuda.synchronize(logits.device)  # the next decision needs these logits anyway
        share = (time.perf_counter() - t0) / B
        out_rows = list(torch.split(logits, list(keeps)))
        for r, (s, L, n) in enumerate(zip(sessions, lens, counts)):
            if B > 1:
                s.cache = _row(cache, r, P - L, P + n)
            if s.keep_hidden:
                new = h[r, :n].float()
                s.hidden = new if s.hidden is None else torch.cat([s.hidden[:L], new])
            s.length = L + n
            s.forwards += 1
            s.seconds += share
        return out_rows


def _stack(caches: Sequence[DynamicCache], lens: Sequence[int], P: int) -> DynamicCache:
    """Rows' caches as one batch cache, each left-padded with zeros to P positions (one copy)."""
    if P == 0:
        return DynamicCache()
    ref = next(c.layers for c, L in zip(caches, lens) if L)  # shapes of a row that has positions
    data = []
    for i, layer in enumerate(ref):
        k0, v0 = layer.keys, layer.values
        ks = k0.new_zeros((len(caches), k0.shape[1], P, k0.shape[-1]))
        vs = v0.new_zeros((len(caches), v0.shape[1], P, v0.shape[-1]))
        for r, (c, L) in enumerate(zip(caches, lens)):
            if L:
                ks[r, :, P - L :] = c.layers[i].keys[0]
                vs[r, :, P - L :] = c.layers[i].values[0]
        data.append(_layer(ks, vs))
    return _cache(data)


def _row(cache: DynamicCache, r: int, start: int, end: int) -> DynamicCache:
    """Row r's positions [start, end) of a batch cache, as that row's own cache (views: the row's
    next forward makes its own tensors anyway)."""
    return _cache([_layer(layer.keys[r : r + 1, :, start:end], layer.values[r : r + 1, :, start:end]) for layer in cache.layers])


def _layer(keys: torch.Tensor, values: torch.Tensor) -> DynamicLayer:
    layer = DynamicLayer()  # filled directly: `update` would copy
    layer.keys, layer.values, layer.is_initialized = keys, values, True
    layer.dtype, layer.device = keys.dtype, keys.device
    return layer


def _cache(layers: list[DynamicLayer]) -> DynamicCache:
    cache = DynamicCache()
    cache.layers = layers
    return cache


class KVSession:
    """One sequence's KV cache on a LocalModel: forward new ids, cut back to a length."""

    def __init__(self, lm: LocalModel, keep_hidden: bool = False) -> None:
        self.lm = lm
        self.cache: DynamicCache | None = DynamicCache()
        self.length = 0  # positions held in the cache
        self.forwards = 0
        self.seconds = 0.0  # time inside forward (synchronised on CUDA, so the split is honest)
        self.keep_hidden = keep_hidden
        self.hidden: torch.Tensor | None = None  # [length, d] last hidden state per position, if kept
        self.lookahead = None  # a local model writes no lookahead of its own

    def forward(self, ids: list[int], keep: int = 1, rows: Sequence[int] | None = None) -> torch.Tensor:
        """Run the model over `ids` after the cached positions; logits [keep, vocab] (float32) of the
        last `keep` (all of them: `rows` saves nothing here)."""
        return self.lm.forward_batch([self], [ids], [keep])[0]

    def truncate(self, length: int) -> None:
        """Forget cached positions from `length` on."""
        if length >= self.length:
            return
        for layer in self.cache.layers:
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                layer.keys = layer.keys[..., :length, :]
                layer.values = layer.values[..., :length, :]
        if self.hidden is not None:
            self.hidden = self.hidden[:length]
        self.length = length

    def close(self) -> None:
        self.cache = None
        self.hidden = None
