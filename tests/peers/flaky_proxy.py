"""A TCP proxy in front of a Q/R SCP that breaks the first C-MOVE association midway.

    with FlakyProxy(peer_port, cut_moves=1) as proxy:   # kioskd's node points at proxy.port
        ...

Every connection is forwarded both ways. A connection whose A-ASSOCIATE-RQ proposes Study Root
C-MOVE is a move; for the first `cut_moves` of them, the proxy forwards the peer's first
P-DATA-TF PDU (the first pending C-MOVE response, sent after the first sub-operation) and then
closes both sides instead of forwarding the second: to the SCU the peer vanished in the middle
of the move, exactly as when the peer's association process dies.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self

from tests.peers.net import free_port

STUDY_ROOT_MOVE = b"1.2.840.10008.5.1.4.1.2.2.2"
P_DATA_TF = 0x04


class FlakyProxy:
    """Forwards 127.0.0.1:port to 127.0.0.1:target_port, cutting chosen moves."""

    def __init__(self, target_port: int, *, cut_moves: int = 1, forward_pdata: int = 1) -> None:
        self.target_port = target_port
        self.cut_moves = cut_moves
        self.forward_pdata = forward_pdata
        self.port = 0
        self.connections = 0
        self.moves = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._stop = threading.Event()

    def __enter__(self) -> Self:
        self.port = free_port()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.settimeout(0.2)
        self._listener = listener
        threading.Thread(target=self._accept, name="flaky-proxy", daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _Relay(self, client, upstream).start()

    def take_cut(self) -> bool:
        """Called for every move connection: True when this one is to be broken."""
        with self._lock:
            self.moves += 1
            if self.cuts < self.cut_moves:
                self.cuts += 1
                return True
            return False


class _Relay:
    """One proxied connection: two pumps, the peer-to-client one counting PDUs."""

    def __init__(self, proxy: FlakyProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.cut: bool | None = None
        self._decided = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._client_to_peer, daemon=True).start()
        threading.Thread(target=self._peer_to_client, daemon=True).start()

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _client_to_peer(self) -> None:
        first = True
        try:
            while data := self.client.recv(65536):
                if first:
                    # The A-ASSOCIATE-RQ fits the first segment on loopback.
                    self.cut = STUDY_ROOT_MOVE in data and self.proxy.take_cut()
                    self._decided.set()
                    first = False
                self.upstream.sendall(data)
        except OSError:
            pass
        finally:
            self._decided.set()
            self.close()

    def _peer_to_client(self) -> None:
        buffer = b""
        pdata = 0
        try:
            while data := self.upstream.recv(65536):
                self._decided.wait(5)
                if not self.cut:
                    self.client.sendall(data)
                    continue
                buffer += data
                # Forward whole PDUs only, and stop before P-DATA number forward_pdata + 1.
                while len(buffer) >= 6:
                    length = int.from_bytes(buffer[2:6], "big")
                    if len(buffer) < 6 + length:
                        break
                    pdu, buffer = buffer[: 6 + length], buffer[6 + length :]
                    if pdu[0] == P_DATA_TF:
                        pdata += 1
                        if pdata > self.proxy.forward_pdata:
                            return
                    self.client.sendall(pdu)
        except OSError:
            pass
        finally:
            self.close()
