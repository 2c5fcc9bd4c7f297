"""A misbehaving OpenAI-compatible server for fault tests: a real HTTP server on 127.0.0.1 (a thread
of the test process) in front of a real upstream (the project's plain server). What it does wrong is
set per test: hide `max_model_len`, refuse long prompts with 400 (as vLLM does past its window),
freeze on completions until released, or answer 503."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


@dataclass
class Faults:
    hide_window: bool = False  # /models without max_model_len (a server started without it)
    max_prompt: int | None = None  # completions with a longer prompt get 400
    freeze: threading.Event | None = None  # completions wait for it to be set
    status: int | None = None  # completions answer this status instead
    completions: int = 0  # completions requests received
    arrived: threading.Event = field(default_factory=threading.Event)  # set by each completions request


@contextmanager
def faulty(upstream: str, faults: Faults) -> Iterator[str]:
    """Serve a proxy of `upstream` (".../v1") with `faults`; yields its /v1 URL."""
    client = httpx.Client(timeout=600)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            r = client.get(upstream + self.path.removeprefix("/v1"))
            data = r.json()
            if faults.hide_window and self.path.endswith("/models"):
                for m in data["data"]:
                    m.pop("max_model_len", None)
            self._send(r.status_code, json.dumps(data).encode())

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            faults.completions += 1
            faults.arrived.set()
            body = json.loads(raw)
            prompts = body["prompt"] if isinstance(body["prompt"][0], list) else [body["prompt"]]
            if faults.freeze is not None:
                faults.freeze.wait(600)
            if faults.status is not None:
                return self._send(faults.status, b'{"error": {"message": "overloaded"}}')
            if faults.max_prompt is not None and max(map(len, prompts)) > faults.max_prompt:
                msg = f"This model's maximum context length is {faults.max_prompt} tokens"
                return self._send(400, json.dumps({"error": {"message": msg, "code": 400}}).encode())
            r = client.post(upstream + self.path.removeprefix("/v1"), content=raw, headers={"Content-Type": "application/json"})
            self._send(r.status_code, r.content)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        if faults.freeze is not None:
            faults.freeze.set()
        server.shutdown()
        server.server_close()
        client.close()
