"""Server-side batching: merge concurrent requests into one model call."""

import collections
import logging
import threading
import time

import numpy as np

from serving.server.request_error import RequestError

log = logging.getLogger(__name__)


class _Item:
    # promoted: the request's thread holds a batch slot (it leads).
    __slots__ = ("inputs", "rows", "result", "error", "done", "promoted")

    def __init__(self, inputs, rows):
        self.inputs, self.rows = inputs, rows
        self.result = self.error = None
        self.done = self.promoted = False


class RequestBatcher:
    """Concatenates concurrent requests along the batch axis, runs, splits.

    ``submit`` blocks until its rows come back. There are no batch threads of
    its own: when fewer than ``num_batch_threads`` batches are running, the
    submitting thread becomes a leader, takes the oldest waiting requests (up to
    ``max_batch_size`` rows, waiting up to ``batch_timeout_micros`` for the batch
    to fill; 0 = take only what is queued) and runs them, until its own request
    is done; then it hands the lead to the oldest waiting request. So a lone
    request runs at once in its own thread, and under load requests that queue
    up while a batch runs go together into the next one. Like TF Serving, a
    full queue (``max_enqueued_batches * max_batch_size`` rows) answers
    UNAVAILABLE, and a request larger than ``max_batch_size`` runs on its own.

    Example:
        >>> batcher = RequestBatcher(lambda x: {"y": x["a"] * 2}, max_batch_size=8)
        >>> batcher.submit({"a": np.array([1, 2])})["y"].tolist()
        [2, 4]
        >>> batcher.close()
        True
    """

    def __init__(
        self,
        run_fn,
        max_batch_size: int = 32,
        batch_timeout_micros: int = 0,
        num_batch_threads: int = 1,
        max_enqueued_batches: int = 100,
        name: str = "batcher",
    ):
        if max_batch_size < 1 or num_batch_threads < 1:
            raise ValueError("max_batch_size and num_batch_threads must be >= 1")
        self.run_fn = run_fn
        self.max_batch_size = max_batch_size
        self.timeout = batch_timeout_micros / 1e6
        self.num_batch_threads = num_batch_threads
        self.max_queued_rows = max_enqueued_batches * max_batch_size
        self.name = name
        self._cond = threading.Condition()
        self._pending: collections.deque[_Item] = collections.deque()
        self._queued_rows = 0
        self._running = 0
        self._closed = False
        self.batches = 0
        self.rows = 0

    def submit(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run ``inputs`` (all with the same leading batch size) as part of a batch."""
        rows = len(next(iter(inputs.values())))
        if rows == 0 or rows > self.max_batch_size:
            return self.run_fn(inputs)
        item = _Item(inputs, rows)
        with self._cond:
            if self._closed:
                item = None
            else:
                if self._queued_rows + rows > self.max_queued_rows:
                    raise RequestError.unavailable(
                        f"the batching queue is full ({self.max_queued_rows} rows)"
                    )
                self._pending.append(item)
                self._queued_rows += rows
                self._cond.notify_all()
                lead = self._running < self.num_batch_threads
                if lead:
                    self._running += 1
                    # Holds a slot already: never to be handed another one.
                    item.promoted = True
                while not lead:
                    if item.promoted:  # handed a batch slot: must lead to free it
                        lead = True
                    elif item.done:
                        break
                    else:
                        self._cond.wait()
        if item is None:
            return self.run_fn(inputs)
        if lead:
            self._lead(item)
        if item.error is not None:
            raise item.error
        return item.result

    def _take(self) -> list:
        """Pop the next batch (caller holds the lock; ``_pending`` is not empty)."""
        if self.timeout > 0:
            deadline = time.monotonic() + self.timeout
            while self._queued_rows < self.max_batch_size and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
        batch, total = [], 0
        while self._pending and total + self._pending[0].rows <= self.max_batch_size:
            item = self._pending.popleft()
            batch.append(item)
            total += item.rows
        self._queued_rows -= total
        return batch

    def _lead(self, own: _Item) -> None:
        while True:
            with self._cond:
                while not (own.done or self._pending):
                    self._cond.wait()  # another leader is running our request
                batch = [] if own.done else self._take()
            if batch:
                self._run(batch)
            with self._cond:
                for item in batch:
                    item.done = True
                if own.done:
                    # Hand this batch slot to the oldest waiting request, or free it.
                    heir = next((i for i in self._pending if not i.promoted), None)
                    if heir is not None:
                        heir.promoted = True
                    else:
                        self._running -= 1
                    self._cond.notify_all()
                    return
                self._cond.notify_all()

    def _run(self, batch: list) -> None:
        try:
            if len(batch) == 1:
                batch[0].result = self.run_fn(batch[0].inputs)
            else:
                keys = batch[0].inputs.keys()
                merged = {
                    k: np.concatenate([item.inputs[k] for item in batch]) for k in keys
                }
                outputs = self.run_fn(merged)
                start = 0
                for item in batch:
                    stop = start + item.rows
                    item.result = {k: v[start:stop] for k, v in outputs.items()}
                    start = stop
            self.batches += 1
            self.rows += sum(item.rows for item in batch)
        except BaseException as err:  # handed to every request in the batch
            for item in batch:
                item.error = err

    def close(self, timeout: float | None = None) -> bool:
        """Stop batching: queued requests still run; new ones run on their own.

        Waits up to ``timeout`` seconds (None: no limit) for the queue to empty;
        requests still queued then are answered UNAVAILABLE (batches already
        running cannot be stopped). Returns True if nothing was left undone.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._closed = True
            self._cond.notify_all()  # a leader waiting for its batch to fill
            while self._pending or self._running:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)
            if not (self._pending or self._running):
                return True
            dropped = 0
            for item in self._pending:
                if not item.promoted:
                    item.error = RequestError.unavailable(
                        "the server shut down before this request's batch ran"
                    )
                    item.done = True
                    dropped += 1
            self._pending = collections.deque(i for i in self._pending if not i.done)
            self._queued_rows = sum(i.rows for i in self._pending)
            self._cond.notify_all()
        log.warning(
            "%s: %d queued request(s) answered UNAVAILABLE, %d batch(es) still "
            "running at shutdown",
            self.name,
            dropped,
            self._running,
        )
        return False
