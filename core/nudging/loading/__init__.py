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
    native_bf16,
)
from .packages import alpaca_eval_references, package_dir

__all__ = [
    "alpaca_eval_references",
    "package_dir",
    "EMBEDDED_BASE",
    "EMBEDDED_NUDGER",
    "convert_gguf",
    "default_cache_dir",
    "default_device",
    "embedded_paths",
    "load_model",
    "load_remote",
    "load_tokenizer",
    "native_bf16",
]
