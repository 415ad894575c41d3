"""Whole PDUs from a socket through one reused buffer.

pynetdicom reads a PDU with recv() calls of at most 4 KiB, each appended to a new bytearray,
then copies the result again before decoding: for a 64 KiB P-DATA-TF that is 17 system calls
and several copies. Here one recv_into() fills a large buffer with whatever the kernel has
(often several PDUs at once) and a PDU is handed out as a view of that buffer.
"""

from __future__ import annotations

import socket
import struct

PDU_TYPES = frozenset(range(0x01, 0x08))
"""A-ASSOCIATE-RQ/AC/RJ, P-DATA-TF, A-RELEASE-RQ/RP, A-ABORT (PS3.8 9.3.1)."""

BUFFER_SIZE = 256 * 1024
"""Initial buffer: four PDUs of our default maximum size."""

LARGEST_BUFFERED = 16 * 1024 * 1024
"""A PDU larger than this is read into its own bytearray, growing with what actually arrives
(a bogus length in a header must not make us allocate gigabytes)."""

_HEADER = struct.Struct(">BBL")


class PeerClosedError(OSError):
    """The peer closed the connection before a whole PDU arrived."""

    def __init__(self, received: int) -> None:
        super().__init__(f"connection closed after {received} byte(s) of a PDU")
        self.received = received
        """Bytes of the unfinished PDU that did arrive (0: closed between PDUs)."""


class PduReader:
    """Reads PDUs from one socket. Not thread-safe: the DUL thread is its only user."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray(BUFFER_SIZE)
        self._start = 0
        self._end = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out (the socket may look idle meanwhile)."""
        return self._end - self._start

    def read_pdu(self) -> tuple[int, memoryview | bytes]:
        """The next PDU: (type, the whole PDU including its 6-byte header).

        A memoryview into the buffer is only valid until the next call. For an unknown PDU
        type only the header is consumed and returned (the caller aborts the association).
        Raises PeerClosedError (an OSError), or OSError/TimeoutError from the socket.
        """
        self._fill(6)
        pdu_type, _, length = _HEADER.unpack_from(self._buf, self._start)
        if pdu_type not in PDU_TYPES:
            return pdu_type, self._take(6)
        if 6 + length > LARGEST_BUFFERED:
            return pdu_type, self._read_large(6 + length)
        self._fill(6 + length)
        return pdu_type, self._take(6 + length)

    def _take(self, size: int) -> memoryview:
        start = self._start
        self._start += size
        view = memoryview(self._buf)[start : start + size]
        if self._start == self._end:
            self._start = self._end = 0
        return view

    def _fill(self, wanted: int) -> None:
        """Make `wanted` bytes available from `_start`, reading as much as the kernel has."""
        if self._end - self._start >= wanted:
            return
        if self._start + wanted > len(self._buf):
            leftover = self._end - self._start
            if wanted > len(self._buf):
                grown = bytearray(wanted)
                grown[:leftover] = self._buf[self._start : self._end]
                self._buf = grown
            else:
                self._buf[:leftover] = self._buf[self._start : self._end]
            self._start, self._end = 0, leftover
        view = memoryview(self._buf)
        while self._end - self._start < wanted:
            count = self.sock.recv_into(view[self._end :])
            if not count:
                raise PeerClosedError(self._end - self._start)
            self._end += count

    def _read_large(self, size: int) -> bytes:
        data = bytearray(self._buf[self._start : self._end])
        self._start = self._end = 0
        while len(data) < size:
            chunk = self.sock.recv(min(size - len(data), 1024 * 1024))
            if not chunk:
                raise PeerClosedError(len(data))
            data += chunk
        return bytes(data)
