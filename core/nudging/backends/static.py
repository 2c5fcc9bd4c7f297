"""The GPU fast path of the local backend: preallocated KV caches and compiled forwards.

Every session of a `StaticModel` owns one row (slot) of a per-model pool of K/V buffers
[slots, kv_heads, length, head_dim] per layer, indexed by position. A forward writes its new K/V
at each row's own positions and attends through a mask built from positions (causal, plus the
sliding window on sliding layers), so rollback is moving the length: positions past it are never
read before they are written again. Every layer is stored at full length, sliding ones too:
transformers' `StaticCache` keeps sliding layers as ring buffers (rollback past the window would
need overwritten entries) and writes one shared position range for all rows, so it cannot serve
rows at different lengths; this module therefore fills the cache role itself with `_RowCache`.

The pool is shared by every thread that holds a session: one lock covers each forward and every
change to the pool, a session takes its slot at its first forward (not when it is created, so runs
can be built on any thread), and the pool is resized one layer at a time (the peak is the pool
plus one layer, not two pools) — growing when a forward needs more rows or positions, shrinking
when the sequences that needed them end.

With `buckets`, forwards are padded to a few shapes (new ids 1/4/8/16/32, rows to a power of two,
attended length to a power of two) so that `torch.compile` graphs (CUDA graphs under
"reduce-overhead") are reused; longer forwards (prompt prefill) run eagerly.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import torch

from .local import KVSession, LocalModel, text_config

log = logging.getLogger(__name__)

NEW_ID_BUCKETS = (1, 4, 8, 16, 32)


def _pow2(n: int, floor: int = 1) -> int:
    return max(floor, 1 << max(0, n - 1).bit_length())


class _RowCache:
    """The cache object a transformers model writes through: each row's new K/V go to its slot and
    positions in the pool; attention reads the rows' first `span` positions."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], slots: torch.Tensor | int, pos: torch.Tensor, span: int) -> None:
        self.keys, self.values, self.slots, self.pos, self.span = keys, values, slots, pos, span

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        K, V = self.keys[layer_idx], self.values[layer_idx]
        if isinstance(self.slots, int):  # one row (eager): write and read its slot in place
            s = self.slots
            K[s, :, self.pos[0]] = key_states[0].to(K.dtype)
            V[s, :, self.pos[0]] = value_states[0].to(V.dtype)
            return K[s : s + 1, :, : self.span], V[s : s + 1, :, : self.span]
        rows = self.slots[:, None]
        K[rows, :, self.pos] = key_states.transpose(1, 2).to(K.dtype)
        V[rows, :, self.pos] = value_states.transpose(1, 2).to(V.dtype)
        return K[self.slots, :, : self.span], V[self.slots, :, : self.span]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0  # positions always come as position_ids


class StaticModel(LocalModel):
    """A LocalModel whose sessions live in a preallocated pool; optionally with compiled forwards."""

    def __init__(self, model: Any, tokenizer: Any, *, compile: bool = False, buckets: bool | None = None, length: int = 1024) -> None:
        super().__init__(model, tokenizer)
        cfg = text_config(model)
        self.compiled = compile
        self.buckets = compile if buckets is None else buckets
        self._layers = cfg.num_hidden_layers
        self._kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        self._head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        types = getattr(cfg, "layer_types", None) or ["full_attention"] * self._layers
        self._window = getattr(cfg, "sliding_window", None) if "sliding_attention" in types else None
        self._types = set(types)
        self._dtype = next(model.parameters()).dtype
        self._base_length = length  # the pool never shrinks below one slot of this length
        self._lock = threading.RLock()  # forwards and every change to the pool
        self._live: weakref.WeakValueDictionary[int, StaticSession] = weakref.WeakValueDictionary()  # slot -> session
        self._free: list[int] = []  # heap of released slots below `_slots`; the lowest is reused first
        self._slots = 0  # slots handed out so far (released ones go to `_free`)
        self._dropped: list[int] = []  # slots of sessions collected without close (freed at the next forward)
        empty = (0, self._kv_heads, 0, self._head_dim)
        self.keys: list[torch.Tensor] = [torch.zeros(empty) for _ in range(self._layers)]
        self.values: list[torch.Tensor] = [torch.zeros(empty) for _ in range(self._layers)]
        self.capacity = self.length_limit = 0
        self._resize(1, length)
        self._step = self._backbone
        if compile:
            for name in ("recompile_limit", "cache_size_limit"):  # one graph per bucket shape
                if hasattr(torch._dynamo.config, name):
                    setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 256))
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self._step = torch.compile(self._backbone, mode=mode)

    # -- the pool ---------------------------------------------------------------------------
    def _resize(self, slots: int, length: int) -> None:
        """Each layer's K and V to `slots` rows (+ scratch) of `length` positions, keeping what the
        rows and positions that remain hold; one tensor at a time, so the peak is the pool plus one
        new tensor. Out of memory part-way: the layers done keep their new shape, the pool stays usable."""
        try:
            for store in (self.keys, self.values):
                for i, old in enumerate(store):
                    if old.shape[:1] + old.shape[2:3] == (slots + 1, length):
                        continue
                    new = torch.zeros((slots + 1, self._kv_heads, length, self._head_dim), dtype=self._dtype, device=self.device)
                    if old.numel():
                        s, L = min(old.shape[0] - 1, slots), min(old.shape[2], length)
                        new[:s, :, :L] = old[:s, :, :L]
                    if self.compiled:
                        torch._dynamo.mark_static_address(new)  # CUDA graphs write the pool in place
                    store[i] = new
                    del old, new
        finally:  # what every layer holds (rows below the smallest count are live-safe in all)
            self.capacity = min(t.shape[0] for t in self.keys + self.values) - 1
            self.length_limit = min(t.shape[2] for t in self.keys + self.values)

    def _acquire(self, session: StaticSession) -> int:
        """The lowest free slot for `session` (called under the lock, at its first forward)."""
        self._reclaim()
        if self._free:
            slot = heapq.heappop(self._free)
        else:
            slot, self._slots = self._slots, self._slots + 1
        if slot >= self.capacity:
            self._resize(_pow2(slot + 1), self.length_limit)
        self._live[slot] = session
        return slot

    def _release(self, slot: int) -> None:
        """Give a closed session's slot back, and shrink the pool if what remains needs a quarter of it."""
        with self._lock:
            self._live.pop(slot, None)
            heapq.heappush(self._free, slot)
            self._compact()

    def _reclaim(self) -> None:
        while self._dropped:
            slot = self._dropped.pop()
            self._live.pop(slot, None)
            heapq.heappush(self._free, slot)

    def _compact(self) -> None:
        """Shrink the pool when the live sessions need at most a quarter of its rows or positions
        (the floor: one slot of the starting length), so a long sequence's memory goes back when it ends."""
        self._reclaim()
        while self._slots and self._slots - 1 in self._free:  # trailing free slots are forgotten
            self._free.remove(self._slots - 1)
            self._slots -= 1
        heapq.heapify(self._free)
        live = list(self._live.values())
        slots = _pow2(self._slots)
        length = max(self._base_length, _pow2(max((s.length for s in live), default=0) + NEW_ID_BUCKETS[-1]))
        slots = slots if 4 * slots <= self.capacity else self.capacity
        length = length if 4 * length <= self.length_limit else self.length_limit
        if (slots, length) != (self.capacity, self.length_limit):
            self._resize(slots, length)

    def session(self, hidden: bool = False) -> StaticSession:
        return StaticSession(self, hidden)

    # -- forwards ---------------------------------------------------------------------------
    def _mask(self, pos: torch.Tensor, span: int, window: int | None) -> torch.Tensor:
        """Additive mask [rows, 1, new, span]: a query sees positions up to its own (within the window)."""
        cols = torch.arange(span, device=pos.device)
        seen = cols[None, None, :] <= pos[:, :, None]
        if window:
            seen &= cols[None, None, :] > pos[:, :, None] - window
        zero = torch.zeros((), dtype=self._dtype, device=pos.device)
        return torch.where(seen, zero, torch.finfo(self._dtype).min)[:, None]

    def _backbone(self, x: torch.Tensor, pos: torch.Tensor, slots: torch.Tensor | int, span: int) -> torch.Tensor:
        """Last hidden states [rows, new, d] of a forward of `x` at positions `pos` into the pool."""
        full = self._mask(pos, span, None)
        if self._window:
            mask: Any = {t: full for t in self._types} | {"sliding_attention": self._mask(pos, span, self._window)}
        else:
            mask = full
        cache = _RowCache(self.keys, self.values, slots, pos, span)
        out = self.model.base_model(input_ids=x, attention_mask=mask, position_ids=pos, use_cache=True, **{self._backbone_cache_kw: cache})
        return out.last_hidden_state

    @torch.inference_mode()
    def forward_batch(self, sessions: Sequence[StaticSession], ids: Sequence[list[int]], keeps: Sequence[int], rows: Any = None) -> list[torch.Tensor]:
        """One forward over several sessions (see LocalModel.forward_batch; `rows` saves nothing
        here either); sessions keep their own slots."""
        if not self._check_split():
            raise RuntimeError(f"{self.name}: the backbone + output layer do not reproduce the model's logits")
        with self._lock:
            return self._forward(sessions, ids, keeps)

    def _forward(self, sessions: Sequence[StaticSession], ids: Sequence[list[int]], keeps: Sequence[int]) -> list[torch.Tensor]:
        for s in sessions:
            if s.slot is None:
                s.slot = self._acquire(s)
        lens = [s.length for s in sessions]
        counts = [len(i) for i in ids]
        B, N = len(sessions), max(counts)
        bucket = self.buckets and N <= NEW_ID_BUCKETS[-1]
        if bucket:
            N = next(b for b in NEW_ID_BUCKETS if b >= N)
            B = _pow2(B)
        need = max(lens) + N
        span = _pow2(need, 64) if self.buckets else need
        if span > self.length_limit:
            self._resize(self.capacity, _pow2(span))
        x = torch.zeros((B, N), dtype=torch.long)
        pos = torch.arange(N)[None, :].repeat(B, 1)
        slots = torch.full((B,), self.capacity, dtype=torch.long)  # padded rows use the scratch row
        for r, (s, row) in enumerate(zip(sessions, ids)):
            x[r, : len(row)] = torch.tensor(row, dtype=torch.long)
            pos[r] += s.length
            slots[r] = s.slot
        dev = self.device
        t0 = time.perf_counter()
        if bucket:
            h = self._step(x.to(dev), pos.to(dev), slots.to(dev), span)
        else:
            h = self._backbone(x.to(dev), pos.to(dev), sessions[0].slot if B == 1 else slots.to(dev), span)
        picks = [(r, c) for r, (n, k) in enumerate(zip(counts, keeps)) for c in range(n - k, n)]
        sel_r = torch.tensor([r for r, _ in picks], device=dev)
        sel_c = torch.tensor([c for _, c in picks], device=dev)
        logits = self._head(h[sel_r, sel_c])
        if logits.is_cuda:
            torch.cuda.synchronize(logits.device)  # the next decision needs these logits anyway
        share = (time.perf_counter() - t0) / len(sessions)
        for r, (s, L, n) in enumerate(zip(sessions, lens, counts)):
            if s.keep_hidden:
                new = h[r, :n].to(torch.float32, copy=True)  # a CUDA graph reuses h's memory
                s.hidden = new if s.hidden is None else torch.cat([s.hidden[:L], new])
            s.length = L + n
            s.forwards += 1
            s.seconds += share
        return list(torch.split(logits, list(keeps)))


class StaticSession:
    """One sequence in a StaticModel's pool: a slot and a length; truncating just moves the length."""

    def __init__(self, lm: StaticModel, keep_hidden: bool = False) -> None:
        self.lm = lm
        self.slot: int | None = None  # taken at the first forward, on the thread that runs it
        self.length = 0
        self.forwards = 0
        self.seconds = 0.0
        self.keep_hidden = keep_hidden
        self.hidden: torch.Tensor | None = None
        self.lookahead = None

    def forward(self, ids: list[int], keep: int = 1, rows: Sequence[int] | None = None) -> torch.Tensor:
        return self.lm.forward_batch([self], [ids], [keep])[0]

    def truncate(self, length: int) -> None:
        if length < self.length:
            self.length = length
            if self.hidden is not None:
                self.hidden = self.hidden[:length]

    def close(self) -> None:
        if self.slot is not None:
            slot, self.slot = self.slot, None
            self.lm._release(slot)
        self.hidden = None

    def __del__(self) -> None:
        # dropped without close (an abandoned run): give the slot back at the pool's next forward;
        # no lock here, a collector may run on any thread at any moment
        if self.slot is not None:
            self.lm._dropped.append(self.slot)


def self_check(fast: StaticModel) -> str | None:
    """Why `fast` must not be used (its logits differ from the dynamic session's on a prefill, a
    decode, a verify and a rollback), or None when it agrees."""
    ref = KVSession(fast)  # served by LocalModel's own forward_batch below
    mine = fast.session()
    try:
        ids = [(7 * i + 3) % 97 + 1 for i in range(40)]
        tol = 1e-3 if fast._dtype == torch.float32 else 5e-2
        for chunk, cut in ((ids[:12], None), (ids[12:13], None), (ids[13:17], 14), (ids[14:15], None), (ids[15:40], 20), (ids[20:24], None)):
            if cut is not None:
                ref.truncate(cut)
                mine.truncate(cut)
            a = LocalModel.forward_batch(fast, [ref], [chunk], [len(chunk)])[0]
            b = mine.forward(chunk, len(chunk))
            if not torch.allclose(a, b, rtol=tol, atol=tol * float(a.abs().max())):
                return f"static-cache logits differ from the dynamic cache's by {float((a - b).abs().max()):.3g}"
        return None
    except Exception as exc:  # any failure to run means: use the plain path
        return f"{type(exc).__name__}: {exc}"
    finally:
        ref.close()
        mine.close()


def fast_local(model: Any, tokenizer: Any, compile: bool | None) -> LocalModel:
    """The local backend to use: the static (and compiled) one when asked for, or by default on
    CUDA, if its self-check passes; else the plain one, with the reason logged."""
    lm = LocalModel(model, tokenizer)
    on_cuda = lm.device.type == "cuda"
    if compile is False or (compile is None and not on_cuda):
        return lm
    fast = StaticModel(model, tokenizer, compile=True)
    reason = self_check(fast)
    if reason is None:
        return fast
    (log.warning if compile else log.info)("%s: compiled static-cache path off (%s); using the dynamic cache", lm.name, reason)
    return lm
