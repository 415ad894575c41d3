"""Follow udev for data discs in optical drives: "coldplug then follow".

    watcher = DiscWatcher(on_disc)   # on_disc(event: DiscEvent) runs in the watcher thread
    watcher.start()                  # inserted events for discs already in a drive, then live
    ...
    watcher.stop()

The watcher reads (action, properties) pairs from an `EventSource`: `PyudevSource` (the default)
listens to udev's netlink monitor for block devices; `QueueEventSource` is fed by hand (tests,
demonstrations, machines without udev). What an event means is decided by the pure functions of
`disc_events`, re-exported here; repeated events are debounced by `DiscTracker`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from appliance.drives.disc_events import (
    DiscEvent,
    DiscEventKind,
    DiscTracker,
    disc_event,
    is_data_disc,
    is_optical_drive,
)

__all__ = [
    "DiscEvent",
    "DiscEventKind",
    "DiscTracker",
    "DiscWatcher",
    "EventSource",
    "PyudevSource",
    "QueueEventSource",
    "disc_event",
    "is_data_disc",
    "is_optical_drive",
]

log = logging.getLogger(__name__)

UdevEvent = tuple[str, Mapping[str, str]]
"""A udev action ("add", "change", "remove") and the device's properties."""


class EventSource(Protocol):
    """Where the watcher gets udev events from."""

    def start(self) -> None:
        """Begin listening. Called before `coldplug`, so that no event falls between the two."""

    def coldplug(self) -> Iterable[Mapping[str, str]]:
        """Properties of the optical drives present now."""

    def next_event(self, timeout: float) -> UdevEvent | None:
        """The next event, or None after `timeout` seconds or when `wake` was called."""

    def wake(self) -> None:
        """Make a `next_event` waiting in another thread return None now."""

    def close(self) -> None:
        """Stop listening and free the resources."""


class PyudevSource:
    """Block-device events from udev's netlink monitor (pyudev), with a wake-up pipe so that
    `stop` never waits for the next udev event."""

    def __init__(self) -> None:
        self._context: object | None = None
        self._monitor: object | None = None
        self._wake_read, self._wake_write = os.pipe()

    def start(self) -> None:
        """Open the monitor (raises if udev's netlink socket cannot be opened)."""
        import pyudev  # only here: the rest of the package and the tests work without udev

        context = pyudev.Context()
        monitor = pyudev.Monitor.from_netlink(context)
        monitor.filter_by("block")
        monitor.start()
        self._context, self._monitor = context, monitor

    def coldplug(self) -> list[Mapping[str, str]]:
        """Every block device udev has marked ID_CDROM=1, with its properties."""
        import pyudev

        context = self._context
        assert isinstance(context, pyudev.Context), "start() first"
        return [
            dict(device.properties)
            for device in context.list_devices(subsystem="block", ID_CDROM="1")
        ]

    def next_event(self, timeout: float) -> UdevEvent | None:
        """The next block-device event, None on timeout or wake-up."""
        import pyudev

        monitor = self._monitor
        assert isinstance(monitor, pyudev.Monitor), "start() first"
        ready, _, _ = select.select([monitor.fileno(), self._wake_read], [], [], timeout)
        if self._wake_read in ready:
            os.read(self._wake_read, 4096)
            return None
        if not ready:
            return None
        device = monitor.poll(timeout=0)
        if device is None:
            return None
        return (device.action or "change", dict(device.properties))

    def wake(self) -> None:
        """Interrupt a waiting `next_event`."""
        # OSError: closed already, or the pipe is full of earlier wake-ups.
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"\0")

    def close(self) -> None:
        """Drop the monitor (libudev closes its socket) and the wake-up pipe."""
        self._monitor = None
        self._context = None
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)


class QueueEventSource:
    """Events put in by hand, for tests and machines without udev.

    `present` are the property sets coldplug reports. `wait_handled` returns once the watcher
    has handled everything put so far (including coldplug), which lets a test check that an
    event produced nothing without sleeping.
    """

    def __init__(self, present: Iterable[Mapping[str, str]] = ()) -> None:
        self._present = [dict(p) for p in present]
        self._items: deque[tuple[str, dict[str, str]] | None] = deque()
        self._changed = threading.Condition()
        self._unhandled = len(self._present)
        self._handed_out = 0
        """Taken by the watcher and being handled; done when it asks for the next event."""

    def put(self, action: str, properties: Mapping[str, str]) -> None:
        """Queue one udev event."""
        with self._changed:
            self._items.append((action, dict(properties)))
            self._unhandled += 1
            self._changed.notify_all()

    def start(self) -> None:
        """Nothing to open."""

    def coldplug(self) -> list[Mapping[str, str]]:
        """The `present` property sets."""
        with self._changed:
            self._handed_out += len(self._present)
        return list(self._present)

    def next_event(self, timeout: float) -> UdevEvent | None:
        """The next queued event; None on timeout or wake-up."""
        with self._changed:
            # The watcher handles one event at a time: asking for the next one means the
            # previous ones are done.
            self._unhandled -= self._handed_out
            self._handed_out = 0
            self._changed.notify_all()
            self._changed.wait_for(lambda: bool(self._items), timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            if item is not None:
                self._handed_out = 1
            return item

    def wake(self) -> None:
        """Interrupt a waiting `next_event`."""
        with self._changed:
            self._items.append(None)
            self._changed.notify_all()

    def wait_handled(self, timeout: float = 30.0) -> bool:
        """Wait until the watcher handled every event put so far; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._unhandled == 0, timeout)

    def close(self) -> None:
        """Nothing to free."""


class DiscWatcher:
    """Reports data discs in optical drives to a callback, from a daemon thread.

    At start, an INSERTED event for every drive that already holds a data disc; then one event
    per insertion and removal as udev reports them. The callback runs in the watcher thread, one
    event at a time; an exception it raises is logged and the watcher goes on.
    """

    def __init__(
        self,
        callback: Callable[[DiscEvent], None],
        source: EventSource | None = None,
        *,
        poll_seconds: float = 5.0,
    ) -> None:
        self._callback = callback
        self._source: EventSource = source if source is not None else PyudevSource()
        self._poll_seconds = poll_seconds
        self._tracker = DiscTracker()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start listening, then report present discs and follow events in a thread.

        Raises what the source raises when it cannot listen (e.g. no udev netlink socket).
        """
        if self._thread is not None:
            raise RuntimeError("DiscWatcher already started")
        self._source.start()
        self._thread = threading.Thread(target=self._run, name="disc-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and wait for it (a callback still running is waited for up to
        `timeout` seconds); idempotent."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        self._source.wake()
        thread.join(timeout)
        if thread.is_alive():
            log.warning("disc watcher: the callback is still running after %.0f s", timeout)
            return
        self._source.close()

    @property
    def running(self) -> bool:
        """True while the watcher thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def discs(self) -> dict[str, DiscEvent]:
        """Device node -> the insertion event of the data disc each drive holds now."""
        with self._lock:
            return self._tracker.discs()

    def _run(self) -> None:
        try:
            present = list(self._source.coldplug())
        except Exception:
            log.exception("disc watcher: listing the optical drives failed")
            present = []
        for properties in present:
            self._handle("add", properties)
        while not self._stopping.is_set():
            try:
                item = self._source.next_event(self._poll_seconds)
            except Exception:
                log.exception("disc watcher: reading a udev event failed")
                self._stopping.wait(1.0)  # do not spin on a broken source
                continue
            if item is not None and not self._stopping.is_set():
                self._handle(*item)

    def _handle(self, action: str, properties: Mapping[str, str]) -> None:
        event = disc_event(action, properties)
        if event is None:
            return
        with self._lock:
            report = self._tracker.update(event)
        if report is None:
            return
        log.info(
            "disc %s in %s (%s, %s)",
            report.kind.value,
            report.device,
            report.media_type or "-",
            report.fs_type or "-",
        )
        try:
            self._callback(report)
        except Exception:
            log.exception("disc watcher: the handler of a %s event failed", report.kind.value)
