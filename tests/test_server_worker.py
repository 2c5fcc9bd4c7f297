"""The server's engine worker: bounded queue, arrival order, cancellation, surviving runner errors.

The runner here is a function of the test that blocks on an event, so queue states are exact.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from nudging.serving.worker import Cancelled, Done, Job, QueueFull, Worker


def gated_runner(gate: threading.Event, started: list[str]):
    def run(jobs: list[Job], take) -> None:
        for job in jobs:
            started.append(job.payload)
            job.emit(f"{job.payload}:start")
            assert gate.wait(30)
            if job.payload == "boom":
                raise RuntimeError("runner bug")
            job.finish(job.payload.upper())

    return run


async def idle(worker: Worker) -> dict[str, int]:
    """The worker's status once it has finished its current jobs (its counts are then final)."""
    for _ in range(600):
        if worker.status()["running"] == 0:
            return worker.status()
        await asyncio.sleep(0.05)
    raise AssertionError("the worker stayed busy")


async def until(condition, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


async def drain(job: Job) -> list:
    items = []
    while not isinstance(item := await asyncio.wait_for(job.next(), 30), Done):
        items.append(item)
    return [*items, item.result]


def test_queue_bound_order_and_cancel_before_start():
    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate, started = threading.Event(), []
        worker = Worker(gated_runner(gate, started), max_queue=2)
        worker.start()
        try:
            a = worker.submit("a", loop)
            assert await asyncio.wait_for(a.next(), 30) == "a:start"  # a is running
            b, c = worker.submit("b", loop), worker.submit("c", loop)
            assert worker.status()["queued"] == 2 and worker.status()["running"] == 1
            with pytest.raises(QueueFull):
                worker.submit("d", loop)
            b.cancel.set()  # its client left while it waited
            gate.set()
            assert await drain(a) == ["A"]
            with pytest.raises(Cancelled):
                await asyncio.wait_for(b.next(), 30)
            assert await drain(c) == ["c:start", "C"]
            assert started == ["a", "c"]
            assert await idle(worker) == {"queued": 0, "running": 0, "served": 2, "cancelled": 1, "failed": 0}
        finally:
            worker.stop()

    asyncio.run(main())


def test_a_runner_error_fails_its_job_and_the_worker_goes_on():
    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate, started = threading.Event(), []
        gate.set()
        worker = Worker(gated_runner(gate, started), max_queue=4)
        worker.start()
        try:
            bad = worker.submit("boom", loop)
            assert await asyncio.wait_for(bad.next(), 30) == "boom:start"
            with pytest.raises(RuntimeError, match="runner bug"):
                await asyncio.wait_for(bad.next(), 30)
            assert await drain(worker.submit("ok", loop)) == ["ok:start", "OK"]
            counts = await idle(worker)
            assert counts["failed"] == 1 and counts["served"] == 1
        finally:
            worker.stop()

    asyncio.run(main())


def test_stop_cancels_running_and_waiting_jobs_and_refuses_new_ones():
    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate, started = threading.Event(), []
        worker = Worker(gated_runner(gate, started), max_queue=4)
        worker.start()
        running = worker.submit("a", loop)
        assert await asyncio.wait_for(running.next(), 30) == "a:start"
        waiting = worker.submit("b", loop)
        stopper = threading.Thread(target=worker.stop)
        stopper.start()
        with pytest.raises(Cancelled, match="shutting down"):
            await asyncio.wait_for(waiting.next(), 30)
        assert await asyncio.to_thread(running.cancel.wait, 30)
        gate.set()
        stopper.join(30)
        assert not stopper.is_alive()
        with pytest.raises(QueueFull, match="shutting down"):
            worker.submit("c", loop)

    asyncio.run(main())


def test_batches_hand_every_waiting_job_to_the_runner():
    """The seam for a batched engine: with max_batch > 1 the runner gets all jobs waiting at once."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        release, batches = threading.Event(), []

        def run(jobs: list[Job], take) -> None:
            batches.append([j.payload for j in jobs])
            assert release.wait(30)
            for j in jobs:
                j.finish(j.payload)

        worker = Worker(run, max_queue=8, max_batch=3)
        first = worker.submit(0, loop)
        rest = [worker.submit(i, loop) for i in range(1, 5)]  # queued before the thread starts
        worker.start()
        release.set()
        try:
            assert [await drain(j) for j in [first, *rest]] == [[i] for i in range(5)]
            assert batches == [[0, 1, 2], [3, 4]]
        finally:
            worker.stop()

    asyncio.run(main())


def test_jobs_join_a_running_batch_between_steps():
    """Continuous batching: `take` admits waiting jobs while earlier ones are still running."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        admitted, steps = [], threading.Event()

        def run(jobs: list[Job], take) -> None:
            live = list(jobs)
            admitted.append([j.payload for j in jobs])
            assert steps.wait(30)
            while live:
                job = live.pop(0)
                job.finish(job.payload)
                more = take(2)
                if more:
                    admitted.append([j.payload for j in more])
                live += more

        worker = Worker(run, max_queue=8, max_batch=2)
        first = worker.submit("a", loop)
        worker.start()
        await asyncio.sleep(0.2)  # "a" is running alone
        later = [worker.submit(x, loop) for x in "bcd"]
        later[1].cancel.set()  # cancelled while waiting: never admitted
        steps.set()
        try:
            assert await drain(first) == ["a"]
            assert await drain(later[0]) == ["b"] and await drain(later[2]) == ["d"]
            assert admitted == [["a"], ["b", "d"]]
            assert await idle(worker) == {"queued": 0, "running": 0, "served": 3, "cancelled": 1, "failed": 0}
        finally:
            worker.stop()

    asyncio.run(main())


def test_a_job_leaves_the_books_when_it_ends_while_the_batch_runs_on():
    """A batch that never empties must not keep finished jobs: `running` and `served` change at each
    job's end, not when the runner returns."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        finish_a, finish_b, seen = threading.Event(), threading.Event(), []

        def run(jobs: list[Job], take) -> None:
            a, b = jobs
            assert finish_a.wait(30)
            a.finish("A")
            seen.append(worker.status())  # on the engine thread, right after a's end
            assert finish_b.wait(30)
            b.fail(ValueError("b broke"))
            seen.append(worker.status())

        worker = Worker(run, max_queue=8, max_batch=2)
        a, b = worker.submit("a", loop), worker.submit("b", loop)
        worker.start()
        try:
            await until(lambda: worker.status()["running"] == 2)
            finish_a.set()
            assert await drain(a) == ["A"]
            await until(lambda: len(seen) == 1)
            assert seen[0] == {"queued": 0, "running": 1, "served": 1, "cancelled": 0, "failed": 0}
            finish_b.set()
            with pytest.raises(ValueError, match="b broke"):
                await asyncio.wait_for(b.next(), 30)
            await until(lambda: len(seen) == 2)
            assert seen[1] == {"queued": 0, "running": 0, "served": 1, "cancelled": 0, "failed": 1}
        finally:
            worker.stop()

    asyncio.run(main())


def test_cancelled_waiting_jobs_leave_the_queue_at_once():
    """With the batch full, jobs whose clients left must not hold queue slots (live clients would get
    503) nor count as queued: they fail with Cancelled now, not when a slot frees."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate, started = threading.Event(), []
        worker = Worker(gated_runner(gate, started), max_queue=2)
        worker.start()
        try:
            a = worker.submit("a", loop)
            assert await asyncio.wait_for(a.next(), 30) == "a:start"  # the only batch slot is taken
            ghosts = [worker.submit("b", loop), worker.submit("c", loop)]
            ghosts[0].cancel.set()  # its client left (set directly: seen at the next look at the queue)
            ghosts[1].cancel.set()  # its deadline passed: the server withdraws it at once
            worker.withdraw(ghosts[1])
            assert worker.status()["queued"] == 0
            for ghost in ghosts:
                with pytest.raises(Cancelled):
                    await asyncio.wait_for(ghost.next(), 5)
            live = [worker.submit("d", loop), worker.submit("e", loop)]  # the queue has room again
            assert worker.status()["queued"] == 2
            gate.set()
            assert [await drain(j) for j in [a, *live]] == [["A"], ["d:start", "D"], ["e:start", "E"]]
            assert await idle(worker) == {"queued": 0, "running": 0, "served": 3, "cancelled": 2, "failed": 0}
        finally:
            worker.stop()

    asyncio.run(main())
