"""udev events read from a JSON-lines file instead of udev: recorded sessions, demonstrations,
and machines without an optical drive (the end-to-end tests feed kioskd through it).

Each line is `{"action": "change", "properties": {"DEVNAME": "/dev/sr0", ...}}`, the way
`udevadm monitor --property` would have reported it. Lines appended while the daemon runs are
picked up; a line that is not such an object is logged and skipped.

The lines already in the file when the daemon starts are history, not news: like udev's
coldplug, they are folded into what each drive holds *now* (the last event per device), and
only the drives that still hold a data disc are reported. A restart thus reports a disc still
in its drive again (the intake finds its open job) but never re-imports every disc the file
ever mentioned.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path

from appliance.drives.disc_events import DiscEventKind, disc_event

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
"""How often the file is looked at for new lines."""


class FileEventSource:
    """An `EventSource` (see `udev_watch`) reading appended lines of a JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._pending = b""
        self._woken = threading.Event()

    def start(self) -> None:
        """Nothing to open: the file may appear later."""

    def coldplug(self) -> list[Mapping[str, str]]:
        """The property sets of the drives that hold a data disc after the lines in the file
        now (the rest of the file is followed by `next_event`)."""
        present: dict[str, Mapping[str, str]] = {}
        while (item := self._next_line_event()) is not None:
            action, properties = item
            event = disc_event(action, properties)
            if event is None:
                continue
            if event.kind is DiscEventKind.INSERTED:
                present.pop(event.device, None)  # keep the order of the latest insertions
                present[event.device] = properties
            else:
                present.pop(event.device, None)
        return list(present.values())

    def next_event(self, timeout: float) -> tuple[str, Mapping[str, str]] | None:
        """The next complete line's event; None after `timeout` or a wake-up."""
        waited = 0.0
        while True:
            event = self._next_line_event()
            if event is not None:
                return event
            if waited >= timeout or self._woken.is_set():
                self._woken.clear()
                return None
            step = min(POLL_SECONDS, timeout - waited)
            self._woken.wait(step)
            waited += step

    def _next_line_event(self) -> tuple[str, Mapping[str, str]] | None:
        while True:
            line, sep, rest = self._pending.partition(b"\n")
            if not sep:
                self._read_more()
                line, sep, rest = self._pending.partition(b"\n")
                if not sep:
                    return None
            self._pending = rest
            event = _parse(line)
            if event is not None:
                return event

    def _read_more(self) -> None:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read(1 << 20)
        except FileNotFoundError:
            return
        self._offset += len(data)
        self._pending += data

    def wake(self) -> None:
        """Make a waiting `next_event` return None now."""
        self._woken.set()

    def close(self) -> None:
        """Nothing to free."""


def _parse(line: bytes) -> tuple[str, Mapping[str, str]] | None:
    if not line.strip():
        return None
    try:
        item = json.loads(line)
        action = item["action"]
        properties = item["properties"]
        if not isinstance(action, str) or not isinstance(properties, dict):
            raise TypeError
        return action, {str(k): str(v) for k, v in properties.items()}
    except (ValueError, KeyError, TypeError):
        log.warning("udev replay: skipped a line that is not an event")
        return None
