"""C-STORE requests written straight onto an established association's socket.

pynetdicom turns every data fragment into a P-DATA primitive, queues it to its DUL thread and
encodes it there: with a peer that takes 16 kB PDUs (DCMTK's default) a 200 MB study is 13,000
round trips through Python objects, queues and a state machine, and each `send_c_store` waits up
to a millisecond for the association reactor to pause. That caps a sender near 150 MB/s, a
third of what DCMTK-based peers reach. Here a request is framed with `struct` and written with
one `sendmsg` per block of fragments, and the association reactor is paused once for a whole
batch. Responses still come in through pynetdicom (its DUL thread decodes them into the DIMSE
message queue), as do release and abort.

While a `StoreWire` is open nothing else may use the association: the requests it writes
bypass pynetdicom, which must not interleave PDUs of its own.
"""

from __future__ import annotations

import queue
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import split_dataset

from appliance.dicom.dimse_encode import Element, command_set
from appliance.dicom.scu_session import AssociationLostError

_MAX_FRAGMENT = 4 * 1024 * 1024
"""Fragment size when the peer announces no PDU limit (0): big enough to be cheap, small
enough that a multi-gigabyte data set is never held in memory at once."""

_BLOCK_FRAGMENTS = 256
"""Fragments read from the file and written with one sendmsg (at most 512 buffers, under the
kernel's IOV_MAX of 1024)."""

_MAX_IOV = 1024
"""Buffers one sendmsg may take (the kernel's IOV_MAX)."""

_WAIT_SLICE = 0.05
"""How often a wait for a response looks whether the association died meanwhile."""

_PDV_HEADER = struct.Struct(">BBLLBB")
"""P-DATA-TF PDU header (type, reserved, PDU length) + PDV item header (length, context ID,
message control header), for a PDU that carries exactly one PDV."""

_COMMAND_LAST = 0x03
_DATA_MORE = 0x00
_DATA_LAST = 0x02


@dataclass(frozen=True, slots=True)
class StoreResponse:
    """What the peer answered to one C-STORE request."""

    status: int
    error_comment: str | None


def encode_store_command(
    *,
    message_id: int,
    sop_class_uid: str,
    sop_instance_uid: str,
    priority: int = 0,
    move_originator_ae: str | None = None,
    move_originator_message_id: int | None = None,
) -> bytes:
    """The command set of a C-STORE-RQ (PS3.7 9.3.1.1)."""
    elements: list[Element] = [
        (0x00000002, "UI", sop_class_uid),
        (0x00000100, "US", 0x0001),  # Command Field: C-STORE-RQ
        (0x00000110, "US", message_id),
        (0x00000700, "US", priority),
        (0x00000800, "US", 0x0001),  # Command Data Set Type: a data set follows
        (0x00001000, "UI", sop_instance_uid),
    ]
    if move_originator_ae is not None and move_originator_message_id is not None:
        elements += [
            (0x00001030, "AE", move_originator_ae),
            (0x00001031, "US", move_originator_message_id),
        ]
    return command_set(elements)


def dataset_offset(fh: BinaryIO, path: Path) -> int:
    """Where the data set starts in the PS3.10 file `fh` (opened from `path`).

    Our store writes a File Meta Information Group Length first, which gives the answer from
    the first 144 bytes; any other file is parsed.
    """
    fh.seek(0)
    head = fh.read(144)
    if len(head) == 144 and head[128:132] == b"DICM" and head[132:140] == b"\2\0\0\0UL\4\0":
        return 144 + int(struct.unpack("<L", head[140:144])[0])
    return int(split_dataset(path)[1])


def _send_all(sock: socket.socket, buffers: list[memoryview | bytes]) -> None:
    """sendmsg until every byte of `buffers` is written (the kernel may take only part)."""
    views = [memoryview(b) for b in buffers]
    first = 0
    while first < len(views):
        sent = sock.sendmsg(views[first : first + _MAX_IOV])
        while first < len(views) and sent >= len(views[first]):
            sent -= len(views[first])
            first += 1
        if sent:
            views[first] = views[first][sent:]


class Readable(Protocol):
    """Where a data set is read from: an open file, or anything with the same `read`."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to `size` bytes; b"" at the end."""
        ...


class StoreWire:
    """Send C-STORE requests over `assoc` (established, reactor paused by `open_wire`)."""

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        provider = assoc.dul.socket
        raw = getattr(provider, "socket", None)
        if not isinstance(raw, socket.socket):
            raise AssociationLostError("the association has no open connection")
        self._sock = raw
        peer_max = int(assoc.acceptor.maximum_length or 0)
        # A PDU of `peer_max` bytes carries one PDV item: 4 length + 1 context + 1 flags.
        self.fragment = min(peer_max - 6, _MAX_FRAGMENT) if peer_max else _MAX_FRAGMENT
        self._timeout = assoc.dimse_timeout
        self._message_id = 0

    def next_message_id(self) -> int:
        """A fresh Message ID (1..65535, wrapping)."""
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    def _pdu(self, context_id: int, flags: int, length: int) -> bytes:
        return _PDV_HEADER.pack(0x04, 0x00, length + 6, length + 2, context_id, flags)

    def _write(self, buffers: list[memoryview | bytes]) -> None:
        try:
            _send_all(self._sock, buffers)
        except OSError as exc:
            raise AssociationLostError(
                f"the connection broke while sending ({exc.strerror})"
            ) from None

    def _write_command(self, context_id: int, command: bytes) -> None:
        self._write([self._pdu(context_id, _COMMAND_LAST, len(command)), command])

    def _write_data(self, context_id: int, data: memoryview, last_block: bool) -> None:
        buffers: list[memoryview | bytes] = []
        size = self.fragment
        for start in range(0, len(data), size):
            piece = data[start : start + size]
            last = last_block and start + size >= len(data)
            buffers.append(self._pdu(context_id, _DATA_LAST if last else _DATA_MORE, len(piece)))
            buffers.append(piece)
        self._write(buffers)

    def send_file(
        self, context_id: int, command: bytes, fh: Readable, length: int, *, pad_odd: bool = False
    ) -> None:
        """Write a request whose data set is the next `length` bytes of the open file `fh`.

        `pad_odd` appends a NUL byte to an odd-length data set: a deflated stream may have any
        length in a file, but on the network every fragment must be even (PS3.5 A.5), and
        DCMTK-based peers abort otherwise. A file that turns out shorter than `length` leaves a
        half-sent message behind: the association cannot go on and AssociationLostError is
        raised (the caller aborts it).
        """
        self._write_command(context_id, command)
        block = self.fragment * _BLOCK_FRAGMENTS
        left = length
        while left > 0:
            chunk = fh.read(min(block, left))
            if not chunk:
                raise AssociationLostError("a file shrank while it was being sent")
            left -= len(chunk)
            if left <= 0 and pad_odd and length % 2:
                chunk += b"\0"
            self._write_data(context_id, memoryview(chunk), last_block=left <= 0)

    def send_bytes(self, context_id: int, command: bytes, dataset: bytes) -> None:
        """Write a request whose data set is `dataset` (already encoded for the context)."""
        self._write_command(context_id, command)
        view = memoryview(dataset)
        block = self.fragment * _BLOCK_FRAGMENTS
        for start in range(0, len(view), block):
            self._write_data(
                context_id, view[start : start + block], last_block=start + block >= len(view)
            )

    def receive(self, message_id: int) -> StoreResponse:
        """Wait for the C-STORE-RSP to `message_id`; raise AssociationLostError if none can come."""
        deadline = None if self._timeout is None else time.monotonic() + float(self._timeout)
        msg_queue = self.assoc.dimse.msg_queue
        while True:
            try:
                _context_id, message = msg_queue.get(timeout=_WAIT_SLICE)
            except queue.Empty:
                if self._dead():
                    raise AssociationLostError(
                        "the peer aborted or closed the association"
                    ) from None
                if deadline is not None and time.monotonic() > deadline:
                    raise AssociationLostError(
                        "no C-STORE response within the DIMSE timeout"
                    ) from None
                continue
            if not isinstance(message, C_STORE) or message.MessageIDBeingRespondedTo != message_id:
                continue  # not ours (a peer may send stray messages); keep waiting
            status = message.Status
            if status is None:
                raise AssociationLostError("the peer sent a C-STORE response without a status")
            comment = getattr(message, "ErrorComment", None)
            return StoreResponse(int(status), str(comment) if comment else None)

    def _dead(self) -> bool:
        assoc = self.assoc
        return bool(assoc.acse.is_aborted() or not assoc.dul.is_alive() or assoc.is_aborted)


@contextmanager
def open_wire(assoc: Association) -> Iterator[StoreWire]:
    """Pause the association's reactor (it would take our responses off the DIMSE queue) and
    hand out a StoreWire; the reactor runs again on exit, e.g. to release or abort."""
    # pynetdicom's own send_* methods pause the requestor's reactor the same way.
    assoc._reactor_checkpoint.clear()
    deadline = time.monotonic() + 5
    while not assoc._is_paused and assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.0001)
    try:
        yield StoreWire(assoc)
    finally:
        assoc._reactor_checkpoint.set()
