"""Disc passwords, held in the daemon's memory only and handed over on a local socket.

A password must never reach the job store, a log or a file. The vault keeps it in this
process's memory under a random handle; the job's params carry only the handle
(`BurnRequest.secret_ref`). A daemon restart empties the vault, so a recovered job whose handle
is gone fails with "password needed" and is submitted again with the password.

`kioskctl burn --encrypt --password-stdin` runs in another process and writes to the job store
itself, so it first deposits the password with the daemon over a UNIX socket in `<var>/run`
(mode 0600, same user only, checked with SO_PEERCRED), receives the handle, then submits the
job with it. Depositing before submitting means the burn runner can never claim a job whose
password is still on its way. Unclaimed deposits expire, and the vault is bounded, so a local
client cannot grow the daemon's memory.

Protocol: one JSON line each way. Request `{"passwords": ["..."], "purpose": "encrypt"}`; reply
`{"handle": "..."}` or `{"error": "..."}` (the password policy's message, never the password).
A password that opens a disc someone else wrote (`"purpose": "open"`, disc import) is held to the
DICOM repertoire only: our strength policy is for the discs we write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from appliance.errors import KioskError

log = logging.getLogger(__name__)

SOCKET_NAME: Final = "secrets.sock"
"""File name of the socket in the daemon's run directory."""
MAX_ENTRIES: Final = 256
"""Secrets held at once; more are refused (a job normally holds one for minutes)."""
UNCLAIMED_SECONDS: Final = 3600.0
"""A deposit no job has used within this time is dropped."""
MAX_REQUEST: Final = 64 * 1024
_TIMEOUT: Final = 5.0


class SecretError(KioskError):
    """A secret could not be deposited (full vault, refused password, no daemon)."""


@dataclass(frozen=True, slots=True)
class JobSecret:
    """What a job needs to encrypt and verify its discs."""

    passwords: tuple[str, ...]

    def __repr__(self) -> str:
        return f"JobSecret({len(self.passwords)} password(s))"


@dataclass(slots=True)
class _Entry:
    secret: JobSecret
    deposited: float
    claimed: bool = False


@dataclass(slots=True)
class SecretVault:
    """Handle -> JobSecret, in process memory, thread-safe."""

    _entries: dict[str, _Entry] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    clock: Callable[[], float] = time.monotonic

    def deposit(self, secret: JobSecret) -> str:
        """Keep `secret` and return its handle (random, unguessable, safe to store)."""
        with self._lock:
            self._expire()
            if len(self._entries) >= MAX_ENTRIES:
                raise SecretError("too many passwords are waiting for their jobs; try later")
            handle = secrets.token_urlsafe(24)
            self._entries[handle] = _Entry(secret, self.clock())
            return handle

    def claim(self, handle: str) -> JobSecret | None:
        """The secret for a job that starts using it (it no longer expires), or None."""
        with self._lock:
            self._expire()
            entry = self._entries.get(handle)
            if entry is None:
                return None
            entry.claimed = True
            return entry.secret

    def discard(self, handle: str) -> None:
        """Forget a secret (its job is finished)."""
        with self._lock:
            self._entries.pop(handle, None)

    def _expire(self) -> None:
        limit = self.clock() - UNCLAIMED_SECONDS
        for handle in [
            h for h, e in self._entries.items() if not e.claimed and e.deposited < limit
        ]:
            del self._entries[handle]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        return f"SecretVault({len(self)} secret(s))"


PROCESS_VAULT = SecretVault()
"""The daemon's vault: the socket server fills it, the burn runners read it."""


# -- the socket ------------------------------------------------------------------------------------


PasswordCheck = Callable[[str], object]
"""Raises a KioskError (with a message for the user) if a password is not acceptable."""


class SecretServer:
    """Accepts deposits on `<run>/secrets.sock` for the life of the daemon."""

    def __init__(
        self,
        path: Path,
        vault: SecretVault,
        check: PasswordCheck,
        open_check: PasswordCheck | None = None,
    ) -> None:
        self.path = path
        self.vault = vault
        self.check = check
        self.open_check = open_check if open_check is not None else check
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Bind the socket (replacing a stale one) and serve in a daemon thread."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The umask makes the socket 0600 from the moment it exists: no window for others.
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(8)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="secrets", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and remove the socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    self._handle(conn)
                except (OSError, ValueError) as exc:
                    log.warning("password socket: request dropped (%s)", type(exc).__name__)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(_TIMEOUT)
        if not _same_user(conn):
            _reply(conn, {"error": "not allowed"})
            return
        try:
            request = json.loads(_read_line(conn))
            passwords = request["passwords"]
            purpose = request.get("purpose", "encrypt")
            if (
                purpose not in ("encrypt", "open")
                or not isinstance(passwords, list)
                or not passwords
                or not all(isinstance(p, str) for p in passwords)
            ):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            _reply(conn, {"error": "malformed request"})
            return
        check = self.check if purpose == "encrypt" else self.open_check
        try:
            for password in passwords:
                check(password)
            handle = self.vault.deposit(JobSecret(tuple(passwords)))
        except KioskError as exc:
            _reply(conn, {"error": str(exc)})
            return
        log.info("password deposited for a job (%d password(s))", len(passwords))
        _reply(conn, {"handle": handle})


def _same_user(conn: socket.socket) -> bool:
    """Only our own user (or root) may deposit: the socket's mode says so too."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return uid in (os.getuid(), 0)


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too large")
    return data


def _reply(conn: socket.socket, message: dict[str, str]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def deposit_passwords(
    path: Path, passwords: Sequence[str], *, purpose: str = "encrypt", timeout: float = _TIMEOUT
) -> str:
    """Client side: hand `passwords` to the daemon listening on `path`; return the handle.

    `purpose` is "encrypt" (a disc we write: the strength policy applies) or "open" (a disc
    we import: only the DICOM repertoire is checked).

    Raises SecretError with the daemon's reason (e.g. the password policy) or when no daemon
    answers.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            message = {"passwords": list(passwords), "purpose": purpose}
            sock.sendall(json.dumps(message).encode() + b"\n")
            reply = json.loads(_read_line(sock))
    except (OSError, ValueError):
        raise SecretError(
            "the daemon does not take passwords right now (is kioskd running?)"
        ) from None
    if "handle" in reply:
        return str(reply["handle"])
    raise SecretError(str(reply.get("error", "the password was refused")))
