"""Hash updates done in order, either right away or on a helper thread (a second core).

hashlib's SHA-2 releases the GIL on large buffers, so while the writer's thread encrypts and
writes, another thread can hash what was read and what was encrypted. A `HelperLane` keeps the
updates of one call in the order they were queued (a hash must see its bytes in order) and
lets the caller wait until everything queued so far is hashed (`barrier`) before it reuses a
buffer that is still queued. An `InlineLane` has the same interface and hashes at once.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from queue import SimpleQueue
from typing import Any, Protocol


class Lane(Protocol):
    """Where the writer sends its hash updates."""

    def update(self, hashes: tuple[Any, ...], data: bytes | memoryview) -> None:
        """Feed `data` to every hash of `hashes` (after everything fed before)."""

    def barrier(self) -> None:
        """Return once every update so far is done (its buffer may then be reused)."""

    def close(self) -> None:
        """Finish every update; raise what a helper raised. Always call it."""


class InlineLane:
    """Hashes in the caller's thread, at once."""

    def update(self, hashes: tuple[Any, ...], data: bytes | memoryview) -> None:
        """Feed `data` to every hash of `hashes` now."""
        for running in hashes:
            running.update(data)

    def barrier(self) -> None:
        """Nothing is ever pending."""

    def close(self) -> None:
        """Nothing is ever pending."""


_Item = tuple[tuple[Any, ...], bytes | memoryview] | threading.Event | None


class HelperLane:
    """Hashes on one thread of `pool`, in the order of the updates."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._queue: SimpleQueue[_Item] = SimpleQueue()
        self._task: Future[None] = pool.submit(self._drain)
        self._closed = False

    def update(self, hashes: tuple[Any, ...], data: bytes | memoryview) -> None:
        """Queue `data` for every hash of `hashes`."""
        self._queue.put((hashes, data))

    def barrier(self) -> None:
        """Wait until the helper has done every queued update."""
        done = threading.Event()
        self._queue.put(done)
        # The helper sets every event, even after a failure, unless it is gone (then the
        # failure surfaces at `close`).
        while not done.wait(0.5):
            if self._task.done():
                self._task.result()
                break

    def close(self) -> None:
        """Stop the helper after the queued updates; re-raise its error, if any."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._task.result()

    def _drain(self) -> None:
        failure: BaseException | None = None
        while (item := self._queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
            elif failure is None:
                hashes, data = item
                try:
                    for running in hashes:
                        running.update(data)
                except BaseException as exc:  # handed to the caller in close()
                    failure = exc
        if failure is not None:
            raise failure
