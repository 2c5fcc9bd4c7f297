"""The facade: `Nudger` (generate / stream / batch) over a base and a nudger backend, and the
async bridges that the LangChain and LlamaIndex integrations share."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from .backends import Backend, LocalModel, fast_local
from .config import NudgingConfig
from .decoding import Run, decode_all
from .errors import InputError
from .policies import NudgingPolicy, TopProbPolicy
from .prompts import Prompt, build_prompts
from .results import Result, StreamEvent


class Stream:
    """Iterator of StreamEvents; `.result` is set once it is exhausted. `close()` cancels and frees caches."""

    def __init__(self, gen: Iterator[StreamEvent | Result]) -> None:
        self._gen = gen
        self.result: Result | None = None

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> StreamEvent:
        item = next(self._gen)
        if isinstance(item, Result):
            self.result = item
            raise StopIteration
        return item

    def close(self) -> None:
        self._gen.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



class Nudger:
    """A base model aligned at inference time by a small chat model (the nudger)."""

    def __init__(self, base: Any, base_tokenizer: Any, nudger: Any, nudger_tokenizer: Any, config: NudgingConfig | None = None, policy: NudgingPolicy | None = None) -> None:
        """Models are loaded transformers models (with their tokenizers) or ready backends
        (e.g. `RemoteModel`; their tokenizer argument is ignored)."""
        self.base = base if isinstance(base, Backend) else LocalModel(base, base_tokenizer)
        self.nudger = nudger if isinstance(nudger, Backend) else LocalModel(nudger, nudger_tokenizer)
        self.config = config or NudgingConfig()
        self.policy = policy

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, base: Any, nudger: Any, *, base_tokenizer: Any = None, nudger_tokenizer: Any = None, device_map: Any = None, dtype: Any = "auto", config: NudgingConfig | None = None, cache_dir: str | None = None, compile: bool | None = None) -> Nudger:
        """Load both models: HF ids, local directories, .gguf files, already-loaded models, or
        `http://host:port/v1#model-name` for a model behind an OpenAI-compatible completions server
        with logprobs (its tokenizer: `*_tokenizer=`, else the served model name as an HF id/folder).

        compile: local models get static KV caches and compiled forwards (README "GPU fast path");
        None: on CUDA when its startup self-check passes, off on the CPU. A model that fails the
        check keeps the dynamic cache (the reason is logged)."""
        from .loading import load_model, load_remote

        def load(spec: Any, tok: Any) -> tuple[Any, Any]:
            if isinstance(spec, str) and spec.startswith(("http://", "https://")):
                return load_remote(spec, tokenizer=tok, cache_dir=cache_dir), None
            model, tokenizer = load_model(spec, tokenizer=tok, device_map=device_map, dtype=dtype, cache_dir=cache_dir)
            return fast_local(model, tokenizer, compile), None

        b, bt = load(base, base_tokenizer)
        n, nt = load(nudger, nudger_tokenizer)
        return cls(b, bt, n, nt, config=config)

    @classmethod
    def default(cls, *, device_map: Any = None, dtype: Any = "auto", config: NudgingConfig | None = None) -> Nudger:
        """The embedded offline pair: gemma-3-270m (base) nudged by SmolLM2-135M-Instruct."""
        return cls.from_pretrained("embedded:base", "embedded:nudger", device_map=device_map, dtype=dtype, config=config)

    # -- generation ------------------------------------------------------------------------
    def _config(self, config: NudgingConfig | None, overrides: dict[str, Any]) -> NudgingConfig:
        return (config or self.config).merged(**overrides)

    def _run(self, prompt: Prompt, config: NudgingConfig | None, cancel: threading.Event | None, overrides: dict[str, Any]) -> Run:
        cfg = self._config(config, overrides)
        policy = cfg.policy if cfg.policy is not None else self.policy
        policy = policy if policy is not None else TopProbPolicy(cfg.gamma)
        return Run(self.base, self.nudger, policy, prompt, cfg, cancel)

    def run(self, prompt: Prompt, config: NudgingConfig | None = None, *, cancel: threading.Event | None = None, **overrides: Any) -> Run:
        """A generation not yet started, for a driver of your own: `BatchDecoder.add` it, or iterate
        `.events()` (validates the prompt and config now)."""
        return self._run(prompt, config, cancel, overrides)

    def prompt_ids(self, prompt: Prompt, config: NudgingConfig | None = None) -> dict[str, list[int]]:
        """The ids each model is conditioned on for `prompt` (what usage and context limits count)."""
        _, (base_ids, nudger_ids) = build_prompts(self.base, self.nudger, prompt, config or self.config)
        return {"base": base_ids, "nudger": nudger_ids}

    def generate(self, prompt: Prompt, config: NudgingConfig | None = None, *, cancel: threading.Event | None = None, **overrides: Any) -> Result:
        """Nudged answer to a prompt (a string or chat messages). Keyword overrides: any NudgingConfig field."""
        stream = Stream(self._run(prompt, config, cancel, overrides).events())
        for _ in stream:
            pass
        assert stream.result is not None
        return stream.result

    def stream(self, prompt: Prompt, config: NudgingConfig | None = None, *, cancel: threading.Event | None = None, **overrides: Any) -> Stream:
        """Like generate, but yields StreamEvents as text is accepted; `.result` holds the Result at the end."""
        return Stream(self._run(prompt, config, cancel, overrides).events())

    def generate_batch(self, prompts: Sequence[Prompt], config: NudgingConfig | Sequence[NudgingConfig] | None = None, *, cancel: threading.Event | None = None, **overrides: Any) -> list[Result]:
        """Answers for several prompts, decoded together in shared forwards of each model, each row
        with its own nudge schedule (and its own config when `config` is a list). Greedy rows give
        their `generate` output (README "Batching" says what sampled rows promise)."""
        results: list[Result | None] = [None] * len(prompts)
        for i, item in self.stream_batch(prompts, config, cancel=cancel, **overrides):
            if isinstance(item, Result):
                results[i] = item
        return results  # type: ignore[return-value]

    def stream_batch(self, prompts: Sequence[Prompt], config: NudgingConfig | Sequence[NudgingConfig] | None = None, *, cancel: threading.Event | None = None, **overrides: Any) -> Iterator[tuple[int, StreamEvent | Result]]:
        """Decode prompts together; yields (prompt index, StreamEvent) as text is accepted, and
        (index, Result) when that row ends."""
        configs = list(config) if isinstance(config, Sequence) else [config] * len(prompts)
        if len(configs) != len(prompts):
            raise InputError(f"got {len(configs)} configs for {len(prompts)} prompts")
        runs = [self._run(p, c, cancel, overrides) for p, c in zip(prompts, configs)]  # bad input fails before decoding
        return decode_all(runs)

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Release what the backends hold open (a remote model's request threads and connections)."""
        for lm in (self.base, self.nudger):
            close = getattr(lm, "close", None)  # Backend has no close(): local models hold nothing to release
            if close is not None:
                close()

    def __enter__(self) -> Nudger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- async: the engine runs on worker threads, the event loop keeps going -------------------
    async def agenerate(self, prompt: Prompt, config: NudgingConfig | None = None, **overrides: Any) -> Result:
        """`generate` in a worker thread; cancelling the awaiting task stops the generation."""
        return (await self.agenerate_batch([prompt], config, **overrides))[0]

    async def agenerate_batch(self, prompts: Sequence[Prompt], config: NudgingConfig | Sequence[NudgingConfig] | None = None, **overrides: Any) -> list[Result]:
        """`generate_batch` (prompts decoded together) in a worker thread; cancelling the awaiting
        task stops every row."""
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self.generate_batch, list(prompts), config, cancel=cancel, **overrides)
        finally:
            cancel.set()

    def astream(self, prompt: Prompt, config: NudgingConfig | None = None, **overrides: Any) -> AsyncIterator[StreamEvent | Result]:
        """`stream` advanced on a private worker thread: an async iterator of StreamEvents, then the
        Result. Bad input raises here, at call time (the prompts are built now; no forward runs).

        One worker per stream keeps the run's generator on a single thread at a time, so closing it
        (queued behind any step in flight) is safe; the cancel event cuts that step short. Leaving
        early or cancelling the task stops generation and frees both caches without blocking the loop.
        """
        cancel = threading.Event()
        return _advance(self.stream(prompt, config, cancel=cancel, **overrides), cancel)


async def _advance(stream: Stream, cancel: threading.Event) -> AsyncIterator[StreamEvent | Result]:
    loop = asyncio.get_running_loop()
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nudging")
    try:
        while (event := await loop.run_in_executor(worker, next, stream, None)) is not None:
            yield event
        assert stream.result is not None
        yield stream.result
    finally:
        cancel.set()
        worker.submit(stream.close)
        worker.shutdown(wait=False)
