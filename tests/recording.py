"""A spy on a remote model's httpx client, shared by the remote-backend tests (a plain server) and the
vLLM tests (a real one)."""

from __future__ import annotations

import threading
import time
from typing import Any


class Recording:
    """Wraps the remote model's httpx client: records each request body and the most in flight.
    `hold` keeps each request's slot a moment, so requests that overlap in time overlap here too."""

    def __init__(self, client: Any, hold: float = 0.0) -> None:
        self.client, self.hold, self.bodies, self.now, self.most = client, hold, [], 0, 0
        self.lock = threading.Lock()

    def request(self, method: str, url: str, json: Any = None) -> Any:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.bodies.append(json)
        try:
            if self.hold:
                time.sleep(self.hold)
            return self.client.request(method, url, json=json)
        finally:
            with self.lock:
                self.now -= 1
