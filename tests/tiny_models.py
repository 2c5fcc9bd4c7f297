"""Tiny random models with real tokenizers, built in-process for fast tests.

With a real vocabulary a random model's top-1 probability is ~1/vocab (everything looks
uncertain), so the output layer is scaled up to spread top-1 probabilities over (0, 1) —
otherwise mid-gamma tests would prove nothing.
"""

from __future__ import annotations

import torch
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
)


def _scale_head(model: torch.nn.Module, scale: float) -> torch.nn.Module:
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    return model.eval()


def tiny_llama(tokenizer, seed: int, scale: float = 40.0, hidden: int = 64, layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return _scale_head(model, scale)


def tiny_gemma3(tokenizer, seed: int, scale: float = 40.0, hidden: int = 32, sliding_window: int = 8) -> Gemma3ForCausalLM:
    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=sliding_window,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Gemma3ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return _scale_head(model, scale)


def real_tokenizers():
    """The real gemma-3 and SmolLM2 tokenizers, read from the embedded GGUF files (cached on disk)."""
    from nudging.loading import load_tokenizer

    return load_tokenizer("embedded:base"), load_tokenizer("embedded:nudger")


def tiny_pair(kind: str = "cross"):
    """(base, base_tok, nudger, nudger_tok): "cross" = tiny Gemma3 on gemma's tokenizer nudged by a tiny
    Llama on SmolLM2's; "same" = two different tiny Llamas sharing SmolLM2's tokenizer."""
    gemma_tok, smol_tok = real_tokenizers()
    if kind == "cross":
        return tiny_gemma3(gemma_tok, seed=1), gemma_tok, tiny_llama(smol_tok, seed=2), smol_tok
    if kind == "same":
        return tiny_llama(smol_tok, seed=3, layers=3), smol_tok, tiny_llama(smol_tok, seed=4), smol_tok
    raise ValueError(kind)


def stuck_llama(tokenizer, text: str, seed: int = 5, margin: float = 100.0) -> LlamaForCausalLM:
    """A tiny Llama whose greedy choice is always the one id of `text`, whatever the context: the
    output layer is replaced by one with zero weights and a bias that favours that id by `margin`."""
    (token,) = tokenizer.encode(text, add_special_tokens=False)
    model = tiny_llama(tokenizer, seed=seed)
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[token] = margin
    model.lm_head = head
    return model.eval()


def favour(model: torch.nn.Module, tokenizer, text: str, margin: float) -> torch.nn.Module:
    """Add `margin` to the logit of the one id of `text` (in place): the model still reads its
    context, but leans towards that id, so that it agrees with a `stuck_llama` on it now and then."""
    (token,) = tokenizer.encode(text, add_special_tokens=False)
    old = model.lm_head
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        head.bias[token] = margin
    model.lm_head = head
    return model.eval()
