"""A learned nudging policy (Co-LLM, Shen et al. 2024): a linear head on the base's last hidden state.

P(the nudger writes the next token) = σ(h · g + b), where h is the base model's last-layer hidden
state at that position (what its output layer reads). The nudger writes where that probability
exceeds η; the base writes where it is ≤ η. `nudging.policies.training` fits g, b and η.

Stored as safetensors: tensors `head` [d] and `bias` [1]; η and the training metadata as JSON
strings in the file's metadata, so the file is self-describing and loads without pickle.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import ConfigError


class LearnedPolicy:
    """Nudge where σ(hidden · head + bias) > eta. Needs the base's hidden states (`needs_hidden`)."""

    needs_hidden = True

    def __init__(self, head: torch.Tensor, bias: float, eta: float, metadata: dict[str, Any] | None = None) -> None:
        head = torch.as_tensor(head, dtype=torch.float32).detach().flatten().cpu()
        if not torch.isfinite(head).all() or not math.isfinite(float(bias)):
            raise ConfigError("a learned policy's head and bias must be finite")
        if not (isinstance(eta, (int, float)) and 0 <= eta <= 1):
            raise ConfigError(f"eta must be a probability in [0, 1], got {eta!r}")
        self.head = head
        self.bias = float(bias)
        self.eta = float(eta)
        self.metadata = dict(metadata or {})
        self._on: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    @property
    def hidden_size(self) -> int:
        return self.head.numel()

    def nudge_logit(self, hidden: torch.Tensor) -> torch.Tensor:
        """d = hidden · head + bias, float32 [n]; σ(d) is the probability that the nudger writes."""
        if hidden is None:
            raise ConfigError(
                "the learned policy needs the base model's hidden states, which this base does not provide "
                "(a remote base returns only log-probabilities); use a local base or a gamma policy"
            )
        if hidden.shape[-1] != self.hidden_size:
            raise ConfigError(
                f"the learned policy's head has hidden size {self.hidden_size} but the base model's hidden states "
                f"have size {hidden.shape[-1]}: it was trained for another base model"
                + (f" ({self.metadata['base']})" if "base" in self.metadata else "")
            )
        key = (hidden.device, torch.float32)
        if key not in self._on:
            self._on[key] = self.head.to(hidden.device)
        return hidden.float() @ self._on[key] + self.bias

    def confident(self, logits: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """Bool [n]: True where the base writes the next token itself (σ(d) <= eta). `logits` are unused."""
        return torch.sigmoid(self.nudge_logit(hidden)) <= self.eta

    @property
    def digest(self) -> str:
        """A short content hash of head, bias and eta (identifies the policy in evaluation caches)."""
        h = hashlib.sha256(self.head.numpy().tobytes())
        h.update(json.dumps([self.bias, self.eta]).encode())
        return h.hexdigest()[:12]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"head": self.head.contiguous(), "bias": torch.tensor([self.bias], dtype=torch.float32)}
        meta = {"format": "nudging.LearnedPolicy/1", "eta": json.dumps(self.eta), "metadata": json.dumps(self.metadata, sort_keys=True)}
        save_file(tensors, str(path), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LearnedPolicy:
        """Read a head written by `save` (or `nudging train-policy`); ConfigError if it is not one."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no learned policy file at {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                head, bias = f.get_tensor("head"), f.get_tensor("bias")
            eta = json.loads(meta["eta"])
            metadata = json.loads(meta.get("metadata", "{}"))
        except Exception as exc:  # not safetensors, or missing tensors/keys: one clear message
            raise ConfigError(f"{path} is not a learned policy file (head + bias + eta): {exc}") from exc
        return cls(head, float(bias.flatten()[0]), eta, metadata)

    def __repr__(self) -> str:
        parts = [f"hidden_size={self.hidden_size}", f"eta={self.eta:.4g}"]
        for key in ("base", "nudger", "deferral_rate"):
            if key in self.metadata:
                parts.append(f"{key}={self.metadata[key]!r}")
        return f"LearnedPolicy({', '.join(parts)})"
