"""One decoding thread per Nudger: the single owner of its models' caches (DESIGN.md "Concurrency").

Callers on any thread or event loop `submit` runs with a sink; the engine's thread adds them to its
`BatchDecoder` between steps, so concurrent callers share forwards (continuous batching, as the
server's worker does) and no caller ever runs a forward or touches a cache itself. One thread
rather than a lock around forwards: concurrent callers are batched instead of queued, and the
static pool's forwards — on CUDA compiled graphs, whose torch graph trees are kept per thread —
always run on the same thread. A greedy caller's answer is its answer alone (invariant 3).
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable, Sequence

from ..results import Result, StreamEvent
from .batching import BatchDecoder
from .run import Run

log = logging.getLogger(__name__)

Item = StreamEvent | Result | BaseException  # what a sink receives: events, then a Result or the error
Sink = Callable[[Item], None]
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


@atexit.register
def _stop_engines() -> None:
    """At interpreter exit, end every engine's thread while Python still runs. A daemon thread still
    freeing a finished run's tensors when finalization starts dies inside torch's C++ deallocation:
    std::terminate ("terminate called without an active exception"), exit status 134."""
    for engine in list(_ENGINES):
        engine.stop()


class Ticket:
    """A submitted run: `cancel()` stops it at the engine's next step and frees its caches."""

    def __init__(self, engine: Engine, run: Run, sink: Sink) -> None:
        self._engine, self.run, self.sink = engine, run, sink
        self.ended = threading.Event()  # set once the row is gone (its last item delivered, or dropped)

    def cancel(self, wait: bool = True) -> None:
        """Drop the run (no further items); `wait`: return once its caches are freed."""
        self._engine._cancel(self, wait)


class Engine:
    """Decodes every submitted run on one thread, at most `max_rows` at a time (more wait their turn).

    The thread starts with the first submission and lives until `orphan()` (the Nudger was
    collected) finds it idle, or `stop()` (at interpreter exit) ends it; items reach each run's sink
    on that thread, so sinks must be quick.
    """

    def __init__(self, max_rows: int = 64) -> None:
        self.max_rows = max_rows
        self._cond = threading.Condition()
        self._waiting: list[Ticket] = []
        self._drops: list[Ticket] = []
        self._live: dict[int, Ticket] = {}
        self._batch = BatchDecoder()
        self._thread: threading.Thread | None = None
        self._runner: threading.Thread | None = None  # the last thread started, still set while it ends
        self._orphaned = False
        self._stopping = False
        _ENGINES.add(self)

    def submit(self, runs: Sequence[tuple[Run, Sink]]) -> list[Ticket]:
        """Queue runs (together: they join the same step); each sink gets its run's items."""
        tickets = [Ticket(self, run, sink) for run, sink in runs]
        with self._cond:
            self._waiting.extend(tickets)
            if self._thread is None:
                self._thread = self._runner = threading.Thread(target=self._serve, name="nudging-decoder", daemon=True)
                self._thread.start()
            self._cond.notify()
        return tickets

    def on_thread(self) -> bool:
        """Is the caller the engine's own thread (a policy or sink calling back into its Nudger)?"""
        return threading.current_thread() is self._thread

    @property
    def idle(self) -> bool:
        """No run is waiting or decoding."""
        with self._cond:
            return not (self._waiting or self._live)

    def orphan(self) -> None:
        """The owner is gone: the thread ends once no run is left (a later submission starts a new one)."""
        with self._cond:
            self._orphaned = True
            self._cond.notify()

    def stop(self, timeout: float = 30.0) -> None:
        """End the thread after its current step, failing every run not yet finished (at interpreter
        exit: nothing is left to wait for them), and wait for it."""
        with self._cond:
            self._stopping = True
            thread = self._runner  # an orphaned thread may still be freeing its last run's models
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the thread -----------------------------------------------------------------------
    def _cancel(self, ticket: Ticket, wait: bool) -> None:
        with self._cond:
            if ticket.ended.is_set():
                return
            if ticket in self._waiting:  # never started: nothing to free
                self._waiting.remove(ticket)
                ticket.ended.set()
                return
            self._drops.append(ticket)
            self._cond.notify()
        if wait and not self.on_thread():
            ticket.ended.wait()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not (self._waiting or self._drops or self._live or self._stopping):
                    if self._orphaned:
                        self._thread = None
                        return
                    self._cond.wait()
                stopping = self._stopping
                if stopping:
                    left, self._waiting, self._drops = [*self._waiting, *self._live.values()], [], []
                    self._thread = None
                else:
                    drops, self._drops = self._drops, []
                    room = max(0, self.max_rows - len(self._live))
                    new, self._waiting = self._waiting[:room], self._waiting[room:]
                    for t in new:
                        self._live[id(t)] = t
            if stopping:
                self._batch.close()
                for t in left:
                    self._deliver(t, RuntimeError("the interpreter is exiting: this run was stopped"))
                return
            for t in drops:
                self._batch.remove(id(t))
                self._end(t)
            for t in new:
                self._batch.add(id(t), t.run)
            try:
                out = self._batch.step()
            except Exception as exc:  # a decoder bug: every row fails with it, the engine keeps serving
                log.exception("decoding step failed")
                self._batch.close()
                out = [(key, exc) for key in list(self._live)]
            for key, item in out:
                t = self._live.get(key)
                if t is not None:
                    self._deliver(t, item)

    def _deliver(self, t: Ticket, item: Item) -> None:
        try:
            t.sink(item)
        except Exception:  # the caller is gone (its event loop closed): stop its run
            self._batch.remove(id(t))
            self._end(t)
            return
        if isinstance(item, (Result, BaseException)):
            self._end(t)

    def _end(self, t: Ticket) -> None:
        with self._cond:
            self._live.pop(id(t), None)
        t.ended.set()
