"""systemd's sd_notify protocol without dependencies: one datagram per state change.

A no-op when NOTIFY_SOCKET is not set (running by hand, in tests, under another supervisor).
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends READY=1, STOPPING=1, WATCHDOG=1 and STATUS=... to systemd."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._address: str | None = None
        if address:
            # A leading '@' names a socket in the abstract namespace.
            self._address = "\0" + address[1:] if address.startswith("@") else address

    @property
    def enabled(self) -> bool:
        """True when a notification socket is configured."""
        return self._address is not None

    def notify(self, *fields: str) -> None:
        """Send fields such as "READY=1"; errors are ignored (the service must not die of it)."""
        if self._address is None:
            return
        payload = "\n".join(fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload, self._address)
        except OSError:
            pass

    def ready(self, status: str = "") -> None:
        """Start-up finished: the listener accepts associations."""
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self) -> None:
        """Shutdown began."""
        self.notify("STOPPING=1")

    def watchdog(self) -> None:
        """The service is healthy (systemd's WatchdogSec)."""
        self.notify("WATCHDOG=1")

    def status(self, text: str) -> None:
        """Free-text status line shown by `systemctl status`."""
        self.notify(f"STATUS={text}")


def watchdog_interval() -> float | None:
    """Half the watchdog period systemd asks for, in seconds, or None when not requested."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2_000_000, 0.1)
    except ValueError:
        return None
