"""Rewrite the instances of an import, two at a time, with progress and a way to stop.

Two threads at most (the machine has two cores, and the forwarder runs beside us): the kernel
copy of one file (no GIL) overlaps the header decoding of the next (GIL-bound, so more threads
would not help). An instance that cannot be rewritten is reported and the rest go on; an output
that cannot be written (staging full) stops the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from appliance.importer.rewrite import ImportIdentity, RewriteResult, rewrite_instance
from appliance.importer.rewrite_errors import RewriteError, RewriteOutputError
from appliance.importer.uid_plan import UidPlan

MAX_WORKERS = 2
Progress = Callable[[int, int], None]
"""progress(done, total), called in the caller's thread after each instance."""
ShouldStop = Callable[[], bool]
"""Asked before each instance is started; True stops the batch (running ones finish)."""


@dataclass(frozen=True, slots=True)
class RewriteItem:
    """One staged instance and where its rewritten file goes."""

    src: Path
    dst: Path
    data_set_offset: int | None
    """Where the data set starts in `src` (None: find it)."""
    transfer_syntax_uid: str
    """The data set's encoding as the reader found it."""
    identity: ImportIdentity | None
    """The identity of this instance's patient (None: left as on the disc)."""


@dataclass(frozen=True, slots=True)
class RewriteFailure:
    """An instance left out, and why (the message names the file, never patient data)."""

    src: Path
    reason: str


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What `rewrite_all` did, in the order of the items."""

    written: tuple[RewriteResult, ...]
    failed: tuple[RewriteFailure, ...]
    stopped: bool
    """True if `should_stop` ended the batch before every item was started."""


def rewrite_all(
    items: Sequence[RewriteItem],
    *,
    uid_plan: UidPlan,
    source_ae: str | None = None,
    workers: int = MAX_WORKERS,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> BatchResult:
    """Rewrite every item (see `rewrite_instance`) with one UID plan for the whole import.

    Raises RewriteOutputError if an output cannot be written; files already written stay.
    """
    workers = max(1, min(workers, MAX_WORKERS))
    total = len(items)
    written: list[RewriteResult] = []
    failed: list[RewriteFailure] = []
    stopped = False

    def run(item: RewriteItem) -> RewriteResult:
        return rewrite_instance(
            item.src,
            item.dst,
            data_set_offset=item.data_set_offset,
            transfer_syntax_uid=item.transfer_syntax_uid,
            identity=item.identity,
            uid_plan=uid_plan,
            source_ae=source_ae,
        )

    window = 2 * workers  # submitted ahead, so stopping waits for few files
    pending: list[tuple[RewriteItem, Future[RewriteResult]]] = []
    done = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rewrite") as pool:
        try:
            queue = iter(items)
            while True:
                while len(pending) < window and not stopped:
                    item = next(queue, None)
                    if item is None:
                        break
                    if should_stop is not None and should_stop():
                        stopped = True
                        break
                    pending.append((item, pool.submit(run, item)))
                if not pending:
                    break
                item, future = pending.pop(0)
                try:
                    written.append(future.result())
                except RewriteOutputError:
                    raise
                except RewriteError as exc:
                    failed.append(RewriteFailure(item.src, str(exc)))
                done += 1
                if progress is not None:
                    progress(done, total)
        except BaseException:
            for _, future in pending:
                future.cancel()
            raise
    return BatchResult(tuple(written), tuple(failed), stopped)
