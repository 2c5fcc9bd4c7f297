"""A model behind an OpenAI-compatible `/v1/completions` endpoint with logprobs (vLLM and alike).

A remote session is the token ids the server has seen. Every scoring request is a greedy
completion of token-id prompts with top-k logprobs, never `echo`: vLLM serves prompt logprobs
without its prefix cache, re-prefilling the whole sequence. A prompt gives the row (next-token
logprobs) after it, plus the server's greedy continuation behind it (up to `lookahead` tokens,
each with its row). To score several positions of a new segment (a nudge draft's word
boundaries) one request sends a list of prompts `ids[:q]`, which share the cached prefix. Each
continuation is remembered, so a later forward that follows it (the base writing on after an
accepted nudge, the nudger drafting) costs no request: a confident base stretch or a whole
nudger draft is one round trip.

Rows are rebuilt from the top-k logprobs with the tail mass spread evenly over the rest of the
vocabulary: top-1 probability and argmax are exact; sampling is top-k sampling over the k ids the
server returned, renormalised (`Capabilities.top_k`). Token ids come back through vLLM's
`return_tokens_as_token_ids`. Requests stay inside the server's `max_model_len`.

Faults stay with their request: in a batch, a row whose request fails gets its error in its place
and the other rows go on. A request is retried only where the server is known not to be computing
it (connection refused or dropped, a 5xx or 429 answer), with backoff; a timeout is never retried.
A session's `cancel` event (the request's deadline or its client leaving) ends its wait at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..errors import ModelLoadError, NudgingError
from .base import Capabilities
from .local import eos_ids

_MEMO = 32  # continuations a session remembers
_POLL = 0.05  # seconds between looks at a waiting session's cancel event


class RemoteError(NudgingError, RuntimeError):
    """The remote model server failed or answered without what nudging needs.

    `unavailable`: it could not be reached or kept failing (5xx) — worth retrying later (HTTP 503
    from our server); otherwise its answer was unusable (502).
    """

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


def parse_url(spec: str) -> tuple[str, str | None]:
    """`http://host:8000/v1#model-name` -> (base URL, model name or None)."""
    url, _, model = spec.partition("#")
    return url.rstrip("/"), model or None


@dataclass
class _Continuation:
    """A scored prompt and the server's greedy continuation: tops[i] is the top-k after prompt + ids[:i]."""

    prompt: list[int]
    ids: list[int]
    tops: list[dict[str, float]]

    def at(self, full: list[int], n: int) -> int | None:
        """i such that full[:n] == prompt + ids[:i] (tops[i] is the row after it), else None."""
        i = n - len(self.prompt)
        if not 0 <= i < len(self.tops) or full[n - i : n] != self.ids[:i] or full[: len(self.prompt)] != self.prompt:
            return None
        return i


class RemoteModel:
    """A remote causal LM: a completions URL, a model name, and the model's tokenizer loaded locally."""

    def __init__(
        self,
        url: str,
        model: str | None,
        tokenizer: Any,
        *,
        top_logprobs: int = 20,
        lookahead: int = 16,
        timeout: float = 60.0,
        retries: int = 3,
        max_concurrency: int = 32,
        extra_eos: Iterable[int] = (),
        client: Any = None,
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.tokenizer = tokenizer
        self.top_logprobs = top_logprobs
        self.lookahead = lookahead
        self.retries = retries
        self.timeout = timeout
        self._owns_client = client is None
        self.client = client or httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=max_concurrency))
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="nudging-remote")
        # no hidden states over HTTP; rows cost a prompt each; sampling sees only the top k
        self.capabilities = Capabilities(lookahead=True, sparse_rows=True, top_k=top_logprobs, cancellable=True)
        info = self._models()
        if model is None:
            model = info[0]["id"]
        elif not any(m.get("id") == model for m in info):
            raise ModelLoadError(f"{self.url} serves {[m.get('id') for m in info]}, not {model!r}")
        self.model_name = model
        entry = next(m for m in info if m.get("id") == model)
        self.context_window: int | None = entry.get("max_model_len")
        self.eos_ids = eos_ids(None, tokenizer) | frozenset(extra_eos)
        self.vocab_size = len(tokenizer)
        self.device = torch.device("cpu")
        self.model = None  # nothing local to run

    @property
    def name(self) -> str:
        return f"{self.url}#{self.model_name}"

    def session(self, hidden: bool = False, cancel: threading.Event | None = None) -> RemoteSession:
        """A new sequence; `cancel` set (its request's deadline, its client gone) ends its waits."""
        if hidden:
            raise NudgingError(f"{self.name} exposes no hidden states")
        return RemoteSession(self, cancel)

    def forward_batch(self, sessions: Sequence[RemoteSession], ids: Sequence[list[int]], keeps: Sequence[int], rows: Sequence[Sequence[int] | None] | None = None) -> list[torch.Tensor | BaseException]:
        """Each session's forward; their requests go out concurrently, so the server batches them.
        A row whose request failed (or was cancelled) gets its exception in its place: one bad row
        (an over-long prompt, say) must not fail its neighbours."""
        rows = rows or [None] * len(sessions)
        futures = [self._pool.submit(s._forward, i, k, r) for s, i, k, r in zip(sessions, ids, keeps, rows)]
        out: list[torch.Tensor | BaseException | None] = [None] * len(sessions)
        pending = dict(enumerate(futures))
        while pending:
            wait(pending.values(), timeout=_POLL)
            for j in list(pending):
                fut, cancel = pending[j], sessions[j].cancel
                if fut.done():
                    out[j] = fut.exception() or fut.result()
                elif cancel is not None and cancel.is_set():
                    out[j] = sessions[j].cancelled()  # its request runs out on a pool thread, unread
                else:
                    continue
                del pending[j]
        return out  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the request threads and close the connections (a client passed in is the caller's)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> RemoteModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP ------------------------------------------------------------------------------------
    def _models(self) -> list[dict[str, Any]]:
        data = self._request("GET", "/models")
        models = data.get("data") or []
        if not models:
            raise ModelLoadError(f"{self.url}/models lists no model")
        return models

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None, cancel: threading.Event | None = None) -> dict[str, Any]:
        """One call, retried with exponential backoff only where the server is known not to be
        computing it: the connection was refused or dropped, or it answered 5xx or 429. A timeout
        is not retried (the server may still be working on it: a retry would add load to a stuck
        server and hold the caller for another `timeout`). `cancel` set stops the backoff."""
        import httpx

        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                r = self.client.request(method, self.url + path, json=body)
                if r.status_code < 500 and r.status_code != 429:
                    if r.status_code >= 400:
                        raise RemoteError(f"{self.url}{path} answered {r.status_code}: {r.text[:500]}")
                    return r.json()
                err = f"{r.status_code}: {r.text[:300]}"
            except httpx.TimeoutException as exc:
                if not isinstance(exc, httpx.ConnectTimeout):
                    raise RemoteError(f"{self.url}{path} did not answer within {self.timeout:g} s ({type(exc).__name__}); not retried: it may still be computing", unavailable=True) from None
                err = f"{type(exc).__name__}: {exc}"
            except httpx.HTTPError as exc:
                err = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                if cancel is not None and cancel.wait(delay):
                    break
                if cancel is None:
                    time.sleep(delay)
                delay *= 2
        raise RemoteError(f"{self.url}{path} failed after {attempt + 1} tries ({err})", unavailable=True)

    def score(self, prompts: list[list[int]], cancel: threading.Event | None = None) -> list[_Continuation | None]:
        """One greedy completions request for a list of token-id prompts: per prompt, its row and the
        server's continuation (None for a prompt that leaves no room in the server's window)."""
        window = self.context_window
        room = [window - len(p) if window else 1 + self.lookahead for p in prompts]
        live = [i for i, r in enumerate(room) if r >= 1]
        out: list[_Continuation | None] = [None] * len(prompts)
        if not live:
            return out
        body = {
            "model": self.model_name,
            "prompt": [prompts[i] for i in live] if len(live) > 1 else prompts[live[0]],
            "max_tokens": min([1 + self.lookahead] + [room[i] for i in live]),
            "temperature": 0.0,
            "logprobs": self.top_logprobs,
            "return_tokens_as_token_ids": True,
            "skip_special_tokens": False,
            "ignore_eos": False,
        }
        choices = sorted(self._request("POST", "/completions", body, cancel).get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != len(live):
            raise RemoteError(f"{self.url} answered {len(choices)} choices for {len(live)} prompts")
        for i, choice in zip(live, choices):
            lp = choice.get("logprobs") or {}
            if not lp.get("top_logprobs"):
                raise RemoteError(
                    f"{self.url} returned no logprobs for model {self.model_name!r}: nudging needs a completions "
                    "endpoint with `logprobs` for token-id prompts, e.g. vLLM started with --max-logprobs 20"
                )
            out[i] = _Continuation(prompts[i], [self.token_id(t) for t in lp["tokens"]], lp["top_logprobs"])
        return out

    # -- decoding the answer ----------------------------------------------------------------------
    def token_id(self, token: str) -> int:
        if token.startswith("token_id:"):
            return int(token[len("token_id:") :])
        ids = self.tokenizer.convert_tokens_to_ids(token)
        if not isinstance(ids, int) or ids == self.tokenizer.unk_token_id:
            raise RemoteError(f"cannot map the server's token {token!r} to an id: the server must support return_tokens_as_token_ids")
        return ids

    def row(self, top: dict[str, float] | None) -> torch.Tensor:
        """A full-vocabulary logits row from top-k logprobs: the tail mass spread evenly, each tail id
        below the k-th (so a top-k filter keeps exactly the returned ids). None (past the server's
        window, never read: the engine stops there with "length") gives a flat row."""
        if top is None:
            return torch.full((self.vocab_size,), -math.log(self.vocab_size))
        row_ids = torch.tensor([self.token_id(t) for t in top], dtype=torch.long)
        lp = torch.tensor(list(top.values()), dtype=torch.float32)
        rest = max(1e-12, 1.0 - float(lp.exp().sum()))
        n_rest = max(1, self.vocab_size - len(top))
        out = torch.full((self.vocab_size,), min(math.log(rest / n_rest), float(lp.min()) - 1e-3), dtype=torch.float32)
        out[row_ids] = lp
        return out


class RemoteSession:
    """One sequence on a RemoteModel: the ids the server has been shown, plus a greedy lookahead."""

    def __init__(self, lm: RemoteModel, cancel: threading.Event | None = None) -> None:
        self.lm = lm  # the batch decoder groups requests by it
        self.cancel = cancel
        self.ids: list[int] = []
        self.forwards = 0  # requests sent (forwards served from a remembered continuation cost none)
        self.seconds = 0.0
        self.lookahead: tuple[list[int], torch.Tensor] | None = None
        self._memo: list[_Continuation] = []

    @property
    def length(self) -> int:
        return len(self.ids)

    def forward(self, ids: list[int], keep: int = 1, rows: Sequence[int] | None = None) -> torch.Tensor:
        """Logits [keep, vocab] for the positions after the last `keep` of self.ids + ids (see
        `_forward`); waits for the request on a pool thread, so `cancel` ends the wait at once."""
        out = self.lm.forward_batch([self], [list(ids)], [keep], [rows])[0]
        if isinstance(out, BaseException):
            raise out
        return out

    def cancelled(self) -> RemoteError:
        return RemoteError(f"cancelled while waiting for {self.lm.name}", unavailable=True)

    def _forward(self, ids: list[int], keep: int = 1, rows: Sequence[int] | None = None) -> torch.Tensor:
        """Logits [keep, vocab] for the positions after the last `keep` of self.ids + ids.

        Rows in `rows` (all when None) that no remembered continuation covers are scored in one
        request; other rows are filled where a continuation covers them, else left NaN. With
        keep == 1 the continuation behind the row becomes lookahead (its ids join the session,
        like cached positions, until truncated).
        """
        rm = self.lm
        t0 = time.perf_counter()
        full = self.ids + list(ids)
        start = len(full) - keep  # row i is the one after full[: start + i + 1]
        want = range(keep) if rows is None else sorted(set(rows))
        missing = [i for i in want if self._find(full, start + i + 1) is None]
        if missing:
            fresh = [c for c in rm.score([full[: start + i + 1] for i in missing], self.cancel) if c is not None]
            if fresh:  # else every prompt was past the window: no request went out
                self._memo = (fresh + self._memo)[:_MEMO]
                self.forwards += 1
        out = torch.full((keep, rm.vocab_size), math.nan)
        for i in range(keep):
            hit = self._find(full, start + i + 1)
            if hit is not None:
                out[i] = rm.row(hit[0].tops[hit[1]])
            elif i in missing:  # asked for, but past the server's window
                out[i] = rm.row(None)
        self.ids = full
        self.lookahead = None
        hit = self._find(full, len(full))
        if keep == 1 and hit is not None:
            c, j = hit
            ahead = c.ids[j : len(c.tops) - 1]
            ahead = ahead[: next((k for k, t in enumerate(ahead) if t in rm.eos_ids), len(ahead))]
            if ahead:
                self.lookahead = (ahead, torch.stack([rm.row(t) for t in c.tops[j + 1 : j + 1 + len(ahead)]]))
                self.ids = full + ahead
        self.seconds += time.perf_counter() - t0
        return out

    def _find(self, full: list[int], n: int) -> tuple[_Continuation, int] | None:
        """A remembered continuation holding the row after full[:n]."""
        for c in self._memo:
            i = c.at(full, n)
            if i is not None:
                return c, i
        return None

    def truncate(self, length: int) -> None:
        if length < len(self.ids):
            self.ids = self.ids[:length]
        self.lookahead = None

    def close(self) -> None:
        self.ids = []
        self.lookahead = None
        self._memo = []
