"""Many generations decoded together, each with its own nudge schedule.

Every run is a coroutine (`Run.steps`) that yields a `Forward` request whenever it needs logits.
One `step` advances every run to its next request, then serves the requests of each model in
shared forwards, whatever state each row is in (the base writing one token, a draft being verified,
the nudger catching up or drafting). Rows keep their own KV caches, so rejections and finished rows
never disturb the others; rows may join between steps (continuous batching: the server's worker).
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import DeviceMemoryError
from ..results import Result, StreamEvent
from ..text.view import Forward
from .costs import cost_fit
from .run import Run, Steps


@dataclass
class _Row:
    key: Hashable
    steps: Steps
    send: Any = None  # what to send into the coroutine next (the logits of its last request; None to start it)
    request: Forward | None = None


@dataclass
class BatchDecoder:
    """Decodes the runs added to it in shared forwards; `step()` returns what each row produced.

    pad_budget: padded positions a forward may waste beyond the real ones before requests of very
    different lengths (a long prompt prefill next to one-token decodes) go to separate forwards.
    None picks by device: GPUs have spare compute (a forward over 16 new ids costs about as much
    as over 1), CPUs do not.
    """

    pad_budget: int | None = None
    rows: list[_Row] = field(default_factory=list)

    def add(self, key: Hashable, run: Run) -> None:
        self.rows.append(_Row(key, run.steps()))

    def __len__(self) -> int:
        return len(self.rows)

    def step(self) -> list[tuple[Hashable, StreamEvent | Result | BaseException]]:
        """Advance every row to its next forward request, then run all requests batched per model.

        Returns (key, item) pairs: stream events, a row's final Result, or the exception a row failed
        with; finished and failed rows leave the batch.
        """
        out: list[tuple[Hashable, StreamEvent | Result | BaseException]] = []
        live = []
        for row in self.rows:
            if self._advance(row, out):
                live.append(row)
        self.rows = live
        groups: dict[int, list[_Row]] = {}
        for row in live:
            groups.setdefault(id(row.request.session.lm), []).append(row)
        failed: set[int] = set()
        for group in groups.values():
            for chunk in self._chunks(group):
                try:
                    errors = self._serve(chunk)
                except Exception as exc:  # those rows fail (out of memory: only those that do not fit alone), the rest go on
                    errors = self._failed(chunk, exc)
                for row, err in errors:  # a backend that fails rows on their own (remote) names them
                    out.append((row.key, err))
                    row.steps.close()
                    failed.add(id(row))
        if failed:
            self.rows = [r for r in self.rows if id(r) not in failed]
        return out

    def remove(self, key: Hashable) -> None:
        """Stop one row now (its caches are freed); the others go on."""
        for row in self.rows:
            if row.key == key:
                row.steps.close()
        self.rows = [r for r in self.rows if r.key != key]

    def close(self) -> None:
        """Stop every row (their caches are freed)."""
        for row in self.rows:
            row.steps.close()
        self.rows = []

    # -- internals ------------------------------------------------------------------------
    def _advance(self, row: _Row, out: list) -> bool:
        """Run one row's coroutine until it asks for a forward (True) or ends (False)."""
        try:
            item = row.steps.send(row.send)
            row.send = None
            while not isinstance(item, Forward):
                out.append((row.key, item))
                item = next(row.steps)
        except StopIteration:
            return False
        except Exception as exc:  # one row's failure (a bad backend reply, ...) ends only that row
            out.append((row.key, exc))
            row.steps.close()
            return False
        row.request = item
        return True

    def _chunks(self, group: list[_Row]) -> Iterator[list[_Row]]:
        """Requests of one model in forwards whose padding stays within budget (shortest first)."""
        if not group[0].request.session.lm.capabilities.batched:  # no padding: one call serves them all (remote: concurrently)
            yield group
            return
        budget = self.pad_budget
        if budget is None:
            budget = 256 if group[0].request.session.lm.device.type == "cuda" else 16
        group = sorted(group, key=lambda r: len(r.request.ids))
        chunk: list[_Row] = []
        real = 0
        for row in group:
            n = len(row.request.ids)
            if chunk and (len(chunk) + 1) * n - (real + n) > max(budget, real + n):
                yield chunk
                chunk, real = [], 0
            chunk.append(row)
            real += n
        if chunk:
            yield chunk

    def _failed(self, chunk: list[_Row], exc: Exception) -> list[tuple[_Row, Exception]]:
        """The rows a failed forward fails, with their errors. Out of memory in a shared forward:
        each row is retried alone (a failed local forward advances no session), and only a row that
        does not fit alone fails, with an error that says what did not fit."""
        if not isinstance(exc, torch.OutOfMemoryError):
            return [(row, exc) for row in chunk]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # what the failed forward left in the allocator's cache
        failed = []
        for row in chunk:
            err: Exception = exc
            if len(chunk) > 1:
                try:
                    alone = self._serve([row])
                    if not alone:
                        continue
                    err = alone[0][1]  # type: ignore[assignment]
                except Exception as again:
                    err = again
            if isinstance(err, torch.OutOfMemoryError) and row.request is not None:
                q = row.request
                err = DeviceMemoryError(
                    f"out of memory on {q.session.lm.device}: this request's forward of {len(q.ids)} new ids after "
                    f"{q.session.length} cached positions does not fit ({str(err).splitlines()[0] if str(err) else 'OutOfMemoryError'})"
                )
            failed.append((row, err))
        return failed

    @staticmethod
    def _serve(chunk: list[_Row]) -> list[tuple[_Row, BaseException]]:
        """One forward for the chunk; returns the rows whose own part of it failed."""
        reqs = [row.request for row in chunk]
        lm = reqs[0].session.lm
        rows = [q.rows for q in reqs]
        extra = {"rows": rows} if any(r is not None for r in rows) else {}
        t0 = time.perf_counter()
        logits = lm.forward_batch([q.session for q in reqs], [q.ids for q in reqs], [q.keep for q in reqs], **extra)
        cost_fit(lm).add(sum(len(q.ids) for q in reqs), time.perf_counter() - t0, rows=len(reqs))
        errors = []
        for row, value in zip(chunk, logits):
            if isinstance(value, BaseException):
                errors.append((row, value))
            else:
                row.send, row.request = value, None
        return errors


def decode_all(runs: list[Run]) -> Iterator[tuple[int, StreamEvent | Result]]:
    """Decode runs together; yields (index, event or Result). A failed row raises its exception
    after the other rows have been closed."""
    batch = BatchDecoder()
    for i, run in enumerate(runs):
        batch.add(i, run)
    try:
        while len(batch):
            for key, item in batch.step():
                if isinstance(item, BaseException):
                    raise item
                yield key, item  # type: ignore[misc]
    finally:
        batch.close()

