"""A pynetdicom C-STORE sender for generated CT instances: one-shot or as a background thread.

Data sets are sent byte for byte (pynetdicom's chunked send of the file's data set). TCP_NODELAY
is set on the sender's socket, else every C-STORE waits for a delayed ACK (~40 ms).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from pydicom import dcmread
from pynetdicom.association import Association

from tests.peers.pynetdicom_scu import raw_sender_ae

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"


def sop_uid_of(path: Path) -> str:
    """The SOP Instance UID of a file."""
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def set_nodelay(assoc: Association) -> None:
    """Disable Nagle on an established association's socket."""
    provider = getattr(assoc.dul, "socket", None)
    sock = getattr(provider, "socket", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def open_ct_association(
    port: int, *, called: str = "KIOSK", calling: str = "TESTSCU", timeout: float = 30
) -> Association:
    """Associate for CT Image Storage in Explicit VR Little Endian (the generated instances)."""
    ae = raw_sender_ae(calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(CT_IMAGE_STORAGE, [EXPLICIT_VR_LE])
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if assoc.is_established:
        set_nodelay(assoc)
    return assoc


def status_of(response: object) -> int | None:
    """The Status of a C-STORE response, None when there was no response."""
    status = getattr(response, "Status", None)
    return int(status) if status is not None else None


def send_files(
    port: int, files: Iterable[Path], *, called: str = "KIOSK", calling: str = "TESTSCU"
) -> dict[str, int | None]:
    """Send files over one association and release it; SOP Instance UID -> response status."""
    assoc = open_ct_association(port, called=called, calling=calling)
    if not assoc.is_established:
        raise RuntimeError(f"association with {called} on port {port} failed")
    result: dict[str, int | None] = {}
    try:
        for path in files:
            result[sop_uid_of(path)] = status_of(assoc.send_c_store(path))
    finally:
        if assoc.is_established:
            assoc.release()
    return result


class LoopSender(threading.Thread):
    """Sends `files` (cycling when `repeat`) over one association until told to stop, the list
    ends or the association dies. Every SOP Instance UID answered with 0x0000 goes into `acked`
    (uid -> path, with the time of the answer in `acked_at`)."""

    def __init__(
        self,
        port: int,
        files: list[Path],
        uids: dict[Path, str],
        *,
        repeat: bool = False,
        pause: float = 0.0,
        called: str = "KIOSK",
        calling: str = "LOOPSCU",
        on_ack: Callable[[str], None] | None = None,
        timeout: float = 30,
    ) -> None:
        super().__init__(name=f"sender-{calling}", daemon=True)
        self.port = port
        self.files = files
        self.uids = uids
        self.repeat = repeat
        self.pause = pause
        self.called = called
        self.calling = calling
        self.on_ack = on_ack
        self.timeout = timeout
        self.stop_event = threading.Event()
        self.established = threading.Event()
        self.acked: dict[str, Path] = {}
        self.acked_at: dict[str, float] = {}
        self.failures: list[tuple[str, int | None]] = []
        self.error: BaseException | None = None
        self.released = False

    def stop(self) -> None:
        """Ask the loop to end after the current C-STORE."""
        self.stop_event.set()

    def run(self) -> None:
        """Associate and send until stopped."""
        try:
            assoc = open_ct_association(
                self.port, called=self.called, calling=self.calling, timeout=self.timeout
            )
        except BaseException as exc:  # pragma: no cover - reported to the test
            self.error = exc
            return
        if not assoc.is_established:
            return
        self.established.set()
        try:
            while not self.stop_event.is_set():
                for path in self.files:
                    if self.stop_event.is_set() or not assoc.is_established:
                        return
                    try:
                        status = status_of(assoc.send_c_store(path))
                    except Exception:
                        return  # the association died under us
                    uid = self.uids[path]
                    if status == 0x0000:
                        self.acked[uid] = path
                        self.acked_at[uid] = time.monotonic()
                        if self.on_ack is not None:
                            self.on_ack(uid)
                    else:
                        self.failures.append((uid, status))
                        if status is None:
                            return
                    if self.pause:
                        time.sleep(self.pause)
                if not self.repeat:
                    return
        finally:
            if assoc.is_established:
                assoc.release()
                self.released = True
