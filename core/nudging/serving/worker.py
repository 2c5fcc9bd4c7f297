"""The server's engine worker: one thread fed by a bounded queue of jobs.

HTTP handlers never run the engine: they submit a `Job` and await its events, and one thread serves
jobs in arrival order. The worker hands its runner every job waiting (up to `max_batch`) plus a
`take(n)` that admits up to n more without blocking, so a batched engine can let new requests join
between steps (continuous batching) while others are mid-generation.

A job leaves the worker's books the moment it ends (its `finish` or `fail`), not when the batch
empties: a server that is never idle must not keep finished jobs, and `status()` is true at every moment.
A waiting job that is cancelled (its client left, its deadline passed) leaves the queue at once
(`withdraw`, or at the next look at the queue): it holds no queue slot and is not counted as queued.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("nudging.server")


class QueueFull(Exception):
    """Every queue slot is taken: the client should retry later (HTTP 503)."""


class Cancelled(Exception):
    """The job was cancelled (its client left, or the server is shutting down) before it ran."""


@dataclass(frozen=True)
class Done:
    """The last item of a job: what the runner returned."""

    result: Any


class Job:
    """One request's trip through the worker: a payload in, items out, and a cancel flag.

    The worker thread calls `emit`/`finish`/`fail`; the event loop awaits `next()`. Setting `cancel`
    (on client disconnect) stops the engine at its next step, or skips the job if it has not started.
    """

    def __init__(self, payload: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.payload = payload
        self.cancel = threading.Event()
        self.finished = False
        self.failed = False
        self.submitted = time.monotonic()
        self.on_end: Callable[[Job], None] | None = None  # set by the worker while the job runs
        self._loop = loop
        self._items: asyncio.Queue[Any] = asyncio.Queue()

    # -- worker side -----------------------------------------------------------------------
    def emit(self, item: Any) -> None:
        self._put(item)

    def finish(self, result: Any) -> None:
        self._end(failed=False)
        self._put(Done(result))

    def fail(self, exc: BaseException) -> None:
        self._end(failed=True)
        self._put(exc)

    def _end(self, *, failed: bool) -> None:
        if self.finished:
            return
        self.finished, self.failed = True, failed
        on_end, self.on_end = self.on_end, None
        if on_end is not None:
            on_end(self)

    def _put(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, item)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            self.cancel.set()

    # -- event-loop side -------------------------------------------------------------------
    async def next(self) -> Any:
        """The next emitted item or a `Done`; raises the exception the job failed with."""
        item = await self._items.get()
        if isinstance(item, BaseException):
            raise item
        return item


class Worker:
    """Serves jobs on one thread; at most `max_queue` jobs wait, more are refused with `QueueFull`."""

    def __init__(self, run_batch: Callable[[list[Job], Callable[[int], list[Job]]], None], *, max_queue: int = 16, max_batch: int = 1) -> None:
        if max_queue < 1 or max_batch < 1:
            raise ValueError("max_queue and max_batch must be >= 1")
        self._run_batch = run_batch
        self._waiting: deque[Job] = deque()
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._running: dict[int, Job] = {}
        self._lock = threading.Lock()  # `_waiting`, `_running` and `counts` change together
        self._ready = threading.Condition(self._lock)  # a job is waiting, or the worker stops
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stopping = False
        self.counts = {"served": 0, "cancelled": 0, "failed": 0}

    def submit(self, payload: Any, loop: asyncio.AbstractEventLoop) -> Job:
        if self._closed:
            raise QueueFull("the server is shutting down")
        job = Job(payload, loop)
        with self._lock:
            gone = self._purge()
            full = len(self._waiting) >= self._max_queue
            if not full:
                self._waiting.append(job)
                self._ready.notify()
        self._fail_cancelled(gone)
        if full:
            raise QueueFull(f"the server is busy: {self._max_queue} requests are already waiting")
        return job

    def withdraw(self, job: Job) -> None:
        """Take a cancelled job out of the queue now, if it is still waiting (a running one stops at its next step)."""
        with self._lock:
            try:
                self._waiting.remove(job)
            except ValueError:
                return
        self._fail_cancelled([job])

    def status(self) -> dict[str, int]:
        with self._lock:
            gone = self._purge()
            out = {"queued": len(self._waiting), "running": len(self._running), **self.counts}
        self._fail_cancelled(gone)
        return out

    def _purge(self) -> list[Job]:
        """The waiting jobs cancelled since (under the lock): out of the queue, for `_fail_cancelled`."""
        gone = [j for j in self._waiting if j.cancel.is_set()]
        for j in gone:
            self._waiting.remove(j)
        return gone

    def _fail_cancelled(self, jobs: list[Job]) -> None:
        for j in jobs:
            j.fail(Cancelled("cancelled before it started"))
            with self._lock:
                self.counts["cancelled"] += 1

    def start(self) -> None:
        self._closed = self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="nudging-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Refuse new jobs, cancel waiting and running ones, and wait for the thread to end."""
        self._closed = True
        with self._lock:
            waiting = list(self._waiting)
            self._waiting.clear()
            running = list(self._running.values())
            self._stopping = True
            self._ready.notify_all()
        for job in waiting:
            job.fail(Cancelled("the server is shutting down"))
        for job in running:
            job.cancel.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._stopping:
                    self._ready.wait()
                if self._stopping:
                    return
                job = self._waiting.popleft()
            live = self._admit([job]) + self._take(self._max_batch - 1)
            if live:
                self._run(live)

    def _admit(self, jobs: list[Job]) -> list[Job]:
        """The jobs not cancelled while they waited (those are failed here), now counted as running."""
        live = []
        for j in jobs:
            if j.cancel.is_set():
                j.fail(Cancelled("cancelled before it started"))
                with self._lock:
                    self.counts["cancelled"] += 1
            else:
                live.append(j)
        with self._lock:
            for j in live:
                j.on_end = self._ended
                self._running[id(j)] = j
        return live

    def _ended(self, job: Job) -> None:
        """A running job finished or failed: off the books now, counted once."""
        with self._lock:
            self._running.pop(id(job), None)
            kind = "cancelled" if job.cancel.is_set() else "failed" if job.failed else "served"
            self.counts[kind] += 1

    def _take(self, n: int) -> list[Job]:
        """Up to n more waiting jobs, without blocking (the runner calls this between steps)."""
        got: list[Job] = []
        while len(got) < n and not self._closed:
            with self._lock:
                if not self._waiting:
                    break
                more = self._waiting.popleft()
            got += self._admit([more])
        return got

    def _run(self, jobs: list[Job]) -> None:
        error: BaseException = RuntimeError("the runner returned without finishing the job")
        try:
            self._run_batch(jobs, self._take)
        except Exception as exc:  # a runner bug must not kill the worker: fail its jobs, keep serving
            log.exception("engine worker failed")
            error = exc
        finally:
            with self._lock:
                left = list(self._running.values())
            for j in left:
                j.fail(error)
