"""Turning a model spec into a backend: hub ids, local folders, GGUF files (converted once and
cached) and the embedded offline pair."""

from .models import (
    EMBEDDED_BASE,
    EMBEDDED_NUDGER,
    convert_gguf,
    default_cache_dir,
    default_device,
    embedded_paths,
    load_model,
    load_remote,
    load_tokenizer,
)

__all__ = [
    "EMBEDDED_BASE",
    "EMBEDDED_NUDGER",
    "convert_gguf",
    "default_cache_dir",
    "default_device",
    "embedded_paths",
    "load_model",
    "load_remote",
    "load_tokenizer",
]
