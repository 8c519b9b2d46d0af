"""Dynamic batching: concurrent requests gathered into one engine call.

Requests wait in a bounded list. A single worker takes the oldest request's program key
(method, num_steps), waits until requests of that key fill ``max_batch`` images or the
oldest has waited ``max_wait_s``, then runs them as one batch in a worker thread (the
event loop keeps answering) and hands each request its rows. Requests of other keys keep
their place. A full list refuses new requests at once (:class:`QueueFull`, answered
503): the server never hangs on a burst.
"""

import asyncio
import collections
import dataclasses
import time
from collections.abc import Callable

import numpy as np

from jaxdiff.serve.limits import Work

# (step, row of the request, x0 (1, H, W, C) in [-1, 1], cascade stage) -> None, called
# from the worker
RowPreview = Callable[[int, int, np.ndarray, int], None]


class QueueFull(RuntimeError):
    """The request list is full."""


@dataclasses.dataclass
class _Pending:
    work: Work
    preview: RowPreview | None
    future: asyncio.Future
    enqueued: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple[str, int]:
        return self.work.method, self.work.num_steps

    @property
    def size(self) -> int:
        return len(self.work.seeds)


@dataclasses.dataclass
class BatchStats:
    """Counters of the batches run (for /metrics and the load test)."""

    batches: int = 0
    images: int = 0
    requests: int = 0
    busy_s: float = 0.0
    sizes: collections.deque = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=100_000)
    )

    def mean_batch(self) -> float:
        return self.images / self.batches if self.batches else 0.0


class Batcher:
    """Gathers requests into engine batches.

    Args:
      engine: an :class:`~jaxdiff.serve.engine.Engine`.
      max_batch: images per batch (default and cap: the engine's largest batch size).
      max_wait_s: how long the oldest request may wait for others to join its batch.
      max_queue: requests waiting or running; more raise :class:`QueueFull`.
    """

    def __init__(self, engine, *, max_batch=None, max_wait_s=0.02, max_queue=256) -> None:
        self.engine = engine
        self.max_batch = min(max_batch or engine.max_batch, engine.max_batch)
        self.max_wait_s, self.max_queue = float(max_wait_s), int(max_queue)
        self.stats = BatchStats()
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        """Requests waiting (not yet in a running batch)."""
        return len(self._pending)

    def start(self) -> None:
        """Starts the worker on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._worker())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def submit(self, work: Work, preview: RowPreview | None = None) -> np.ndarray:
        """uint8 images (n, H, W, C) of one request, once its batch has run."""
        if len(self._pending) >= self.max_queue:
            raise QueueFull(
                f"the server is full ({self.max_queue} requests waiting); retry shortly."
            )
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(work, preview, future))
        self._wake.set()
        return await future

    async def _worker(self) -> None:
        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
            batch = await self._gather()
            await self._run(batch)

    async def _gather(self) -> list[_Pending]:
        """The next batch: the oldest request and others of its key, FIFO, <= max_batch."""
        oldest = self._pending[0]
        deadline = oldest.enqueued + self.max_wait_s
        while self._images_of(oldest.key) < self.max_batch and time.monotonic() < deadline:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
        batch, total = [], 0
        for p in list(self._pending):
            if p.key == oldest.key and total + p.size <= self.max_batch:
                batch.append(p)
                total += p.size
                self._pending.remove(p)
        return batch

    def _images_of(self, key) -> int:
        return sum(p.size for p in self._pending if p.key == key)

    async def _run(self, batch: list[_Pending]) -> None:
        seeds: list[int] = []
        labels: list[int] = []
        weights: list[float] = []
        previews: list = []
        for p in batch:
            seeds += p.work.seeds
            labels += p.work.labels
            weights += [p.work.guidance] * p.size
            previews += [_row_preview(p.preview, r) for r in range(p.size)]
        method, num_steps = batch[0].key
        start = time.monotonic()
        try:
            images = await asyncio.to_thread(
                self.engine.generate, method, num_steps, seeds, labels, weights, previews
            )
        except Exception as e:  # a failed batch fails its requests, not the server
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(e)
            return
        self._count(batch, len(seeds), time.monotonic() - start)
        row = 0
        for p in batch:
            if not p.future.done():  # a cancelled request (client gone) is skipped
                p.future.set_result(images[row : row + p.size])
            row += p.size

    def _count(self, batch, images: int, seconds: float) -> None:
        s = self.stats
        s.batches += 1
        s.images += images
        s.requests += len(batch)
        s.busy_s += seconds
        s.sizes.append(images)


def _row_preview(preview: RowPreview | None, row: int):
    if preview is None:
        return None
    return lambda step, x0, stage=0: preview(step, row, x0, stage)
