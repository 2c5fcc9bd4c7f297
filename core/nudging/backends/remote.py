"""A model behind an OpenAI-compatible `/v1/completions` endpoint with logprobs (vLLM and alike).

The engine talks to every model through the same two calls: forward(ids) -> next-token logits for
the last positions, and truncate(length). Remotely, a forward is one completions request whose
prompt is the sequence's token ids (servers with prefix caching, like vLLM, do not recompute it):
`echo` + `logprobs` give the scores of the prompt positions (to verify a nudge draft), and the
generated tokens with their top logprobs give the next position plus a greedy *lookahead*: a
confident base stretch costs one round trip, not one per token.

Logits rows are rebuilt from the top-k logprobs; the probability mass outside the top k is spread
evenly over the rest of the vocabulary, so top-1 probability and argmax are exact and sampling is
exact up to that tail. Token ids come back through vLLM's `return_tokens_as_token_ids`.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import torch

from ..errors import ModelLoadError, NudgingError
from .base import Capabilities
from .local import eos_ids


class RemoteError(NudgingError, RuntimeError):
    """The remote model server failed or answered without what nudging needs."""


def parse_url(spec: str) -> tuple[str, str | None]:
    """`http://host:8000/v1#model-name` -> (base URL, model name or None)."""
    url, _, model = spec.partition("#")
    return url.rstrip("/"), model or None


class RemoteModel:
    """A remote causal LM: a completions URL, a model name, and the model's tokenizer loaded locally."""

    capabilities = Capabilities(lookahead=True)  # no hidden states over HTTP; rows are requests of their own

    def __init__(self, url: str, model: str | None, tokenizer: Any, *, top_logprobs: int = 20, lookahead: int = 16, timeout: float = 60.0, retries: int = 3, client: Any = None) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.tokenizer = tokenizer
        self.top_logprobs = top_logprobs
        self.lookahead = lookahead
        self.retries = retries
        self.client = client or httpx.Client(timeout=timeout)
        info = self._models()
        if model is None:
            model = info[0]["id"]
        elif not any(m.get("id") == model for m in info):
            raise ModelLoadError(f"{self.url} serves {[m.get('id') for m in info]}, not {model!r}")
        self.model_name = model
        entry = next(m for m in info if m.get("id") == model)
        self.context_window: int | None = entry.get("max_model_len")
        self.eos_ids = eos_ids(None, tokenizer)
        self.vocab_size = len(tokenizer)
        self.device = torch.device("cpu")
        self.model = None  # nothing local to run

    @property
    def name(self) -> str:
        return f"{self.url}#{self.model_name}"

    def session(self, hidden: bool = False) -> RemoteSession:
        if hidden:
            raise NudgingError(f"{self.name} exposes no hidden states")
        return RemoteSession(self)

    def forward_batch(self, sessions: Sequence[RemoteSession], ids: Sequence[list[int]], keeps: Sequence[int]) -> list[torch.Tensor]:
        """Each session's forward, one request each."""
        return [s.forward(i, k) for s, i, k in zip(sessions, ids, keeps)]

    # -- HTTP ------------------------------------------------------------------------------------
    def _models(self) -> list[dict[str, Any]]:
        data = self._request("GET", "/models")
        models = data.get("data") or []
        if not models:
            raise ModelLoadError(f"{self.url}/models lists no model")
        return models

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One call with retries and exponential backoff on connection errors and 5xx answers."""
        import httpx

        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                r = self.client.request(method, self.url + path, json=body)
                if r.status_code < 500:
                    if r.status_code >= 400:
                        raise RemoteError(f"{self.url}{path} answered {r.status_code}: {r.text[:500]}")
                    return r.json()
                err = f"{r.status_code}: {r.text[:300]}"
            except httpx.HTTPError as exc:
                err = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                time.sleep(delay)
                delay *= 2
        raise RemoteError(f"{self.url}{path} failed after {self.retries + 1} tries ({err})")

    def complete(self, ids: list[int], *, echo: bool, max_tokens: int) -> dict[str, Any]:
        """The logprobs object of a greedy completion of `ids` (token ids in, token ids out)."""
        body = {
            "model": self.model_name,
            "prompt": ids,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "logprobs": self.top_logprobs,
            "echo": echo,
            "return_tokens_as_token_ids": True,
            "skip_special_tokens": False,
            "ignore_eos": False,
        }
        data = self._request("POST", "/completions", body)
        try:
            logprobs = data["choices"][0]["logprobs"]
        except (KeyError, IndexError, TypeError):
            logprobs = None
        if not logprobs or not logprobs.get("top_logprobs"):
            raise RemoteError(
                f"{self.url} returned no logprobs for model {self.model_name!r}: nudging needs a completions "
                "endpoint with `logprobs` (and `echo` to score prompts), e.g. vLLM started with --max-logprobs 20"
            )
        return logprobs

    # -- decoding the answer ----------------------------------------------------------------------
    def token_id(self, token: str) -> int:
        if token.startswith("token_id:"):
            return int(token[len("token_id:") :])
        ids = self.tokenizer.convert_tokens_to_ids(token)
        if not isinstance(ids, int) or ids == self.tokenizer.unk_token_id:
            raise RemoteError(f"cannot map the server's token {token!r} to an id: the server must support return_tokens_as_token_ids")
        return ids

    def row(self, top: dict[str, float]) -> torch.Tensor:
        """A full-vocabulary logits row from top-k logprobs (the tail mass spread evenly)."""
        row_ids = torch.tensor([self.token_id(t) for t in top], dtype=torch.long)
        lp = torch.tensor(list(top.values()), dtype=torch.float32)
        rest = max(1e-12, 1.0 - float(lp.exp().sum()))
        n_rest = max(1, self.vocab_size - len(top))
        out = torch.full((self.vocab_size,), math.log(rest / n_rest), dtype=torch.float32)
        out[row_ids] = lp
        return out


class RemoteSession:
    """One sequence on a RemoteModel: the ids the server has been shown, plus a greedy lookahead."""

    def __init__(self, rm: RemoteModel) -> None:
        self.rm = rm
        self.ids: list[int] = []
        self.forwards = 0
        self.seconds = 0.0
        self.lookahead: tuple[list[int], torch.Tensor] | None = None

    @property
    def length(self) -> int:
        return len(self.ids)

    def forward(self, ids: list[int], keep: int = 1) -> torch.Tensor:
        """Logits [keep, vocab] for the positions after the last `keep` of `ids` (one request).

        When keep == 1, the server's greedy continuation is kept as lookahead (its ids are then
        part of this session, like cached positions, until truncated).
        """
        rm = self.rm
        t0 = time.perf_counter()
        full = self.ids + list(ids)
        extra = rm.lookahead if keep == 1 else 0
        lp = rm.complete(full, echo=keep > 1, max_tokens=1 + extra)
        tops = lp["top_logprobs"]
        gen = tops[len(full) :] if keep > 1 else tops  # echo puts the prompt's entries first
        rows = [rm.row(t) for t in (tops[len(full) - keep + 1 : len(full)] if keep > 1 else [])]
        rows.append(rm.row(gen[0]))
        self.ids = full
        self.lookahead = None
        if extra and len(gen) > 1:
            tokens = lp["tokens"]
            ahead = [rm.token_id(t) for t in tokens[: len(gen) - 1]]
            ahead = ahead[: next((i for i, t in enumerate(ahead) if t in rm.eos_ids), len(ahead))]
            if ahead:
                self.lookahead = (ahead, torch.stack([rm.row(t) for t in gen[1 : len(ahead) + 1]]))
                self.ids = full + ahead
        self.forwards += 1
        self.seconds += time.perf_counter() - t0
        return torch.stack(rows)

    def truncate(self, length: int) -> None:
        if length < len(self.ids):
            self.ids = self.ids[:length]
        self.lookahead = None

    def close(self) -> None:
        self.ids = []
        self.lookahead = None
