"""Write Secure DICOM Files: a PS3.10 file in, its CMS envelope out, streamed.

Per file: a fresh content key and IV; one recipient info per configured password (through the
disc's `PasswordKek`) and per certificate; the inner Digested-data (or Signed-data with a
signer) around the whole file; PKCS#7 padding; AES-CBC or Triple-DES. Memory stays at two
buffers of about 1 MiB per thread whatever the file size (see `framing` for how lengths are
known up front).

The content digest is SHA-256 of the whole PS3.10 file by default, which is also the plaintext
checksum a disc manifest keeps, so it is reported and not computed twice. The SHA-256 of the
written file (what lands on the disc) is computed on the way out when asked.

Speed (bench/secure.py): the envelope's structures are encoded once per writer and patched per
file (`template`); a file of up to a chunk is read with one call and written with one; the
hashes run on a helper thread while this one encrypts and writes, but only while a core is
idle (`_running`): the burn job's two workers keep both cores busy on their own.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from cryptography import x509 as cx509
from cryptography.hazmat.primitives.ciphers import CipherContext

from appliance.media.secure.algorithms import (
    DEFAULT_CIPHER,
    DEFAULT_DIGEST,
    WRITABLE_DIGESTS,
    ContentCipher,
    DigestName,
)
from appliance.media.secure.errors import RecipientError, SecureWriteError
from appliance.media.secure.file_target import encrypt_into
from appliance.media.secure.framing import content_type_for, inner_frame
from appliance.media.secure.lanes import HelperLane, InlineLane, Lane
from appliance.media.secure.password import PasswordKek
from appliance.media.secure.recipients import check_recipient_certificate
from appliance.media.secure.signing import Signer
from appliance.media.secure.template import EnvelopeTemplate

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

CHUNK = 1024 * 1024
"""Bytes read, hashed and encrypted per step: large enough that per-call overhead vanishes
(a whole CT or MR slice is one step), small enough to stay in the CPU caches."""
OUT_SLACK = 64 * 1024
"""Room beyond one chunk in the output buffer, for the envelope prefix and the inner trailer,
so that a file of up to about one chunk is written with a single write call."""
PIECE = 256 * 1024
"""Bytes encrypted before they are handed to the output hash: the helper hashes the first
pieces while this thread encrypts the next ones."""
OVERLAP_MIN = 64 * 1024
"""Files at least this large may be hashed on a helper thread while this one encrypts and
writes (SHA-256 and AES both release the GIL); smaller ones always inline: the hand-off would
cost more than it saves."""
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
"""CPUs this process may run on: the helper threads only help while one is idle."""

_helper_lock = threading.Lock()
_helper: ThreadPoolExecutor | None = None
_active = 0
"""Calls of `SecureFileWriter.encrypt` running now, in any writer (guarded by _helper_lock)."""


def _hash_helper() -> ThreadPoolExecutor:
    """The process's hashing helpers (created on first use, idle threads otherwise).

    A call holds one helper thread for its whole length and overlaps only while fewer than
    CORES calls run, so CORES threads are always enough: no call waits for a helper."""
    global _helper  # noqa: PLW0603 - one pool for the process, made lazily
    with _helper_lock:
        if _helper is None:
            _helper = ThreadPoolExecutor(CORES, thread_name_prefix="secure-hash")
        return _helper


@contextlib.contextmanager
def _running() -> Iterator[bool]:
    """Count this call as running; yield whether a core is left for a hashing helper.

    Measured on the 2-core kiosk with 0.5 MB slices: one writer alone gains ~15% from hashing
    on the second core, but two writers (the burn job's two workers) each doing everything
    inline beat the same two with helpers by ~30%: the cores are busy already and the hand-offs
    only add waiting. So a call overlaps only while fewer calls than cores are running.
    """
    global _active  # noqa: PLW0603 - a process-wide count, like the cores it shares
    with _helper_lock:
        _active += 1
        spare = _active < CORES
    try:
        yield spare
    finally:
        with _helper_lock:
            _active -= 1


@dataclass(frozen=True, slots=True)
class EnvelopeSettings:
    """Who can open the files and how they are protected (one object per job or disc)."""

    passwords: tuple[PasswordKek, ...] = ()
    """Password recipients, each derived once (`PasswordKek.derive`)."""
    certificates: tuple[cx509.Certificate, ...] = ()
    """RSA recipients, identified by issuer and serial number."""
    cipher: ContentCipher = DEFAULT_CIPHER
    """Content cipher: AES-256-CBC unless an older reader needs AES-128/192 or Triple-DES."""
    digest: DigestName = DEFAULT_DIGEST
    """Digest of the Digested-data (or of the signature)."""
    signer: Signer | None = None
    """Sign (Signed-data) instead of only digesting (Digested-data)."""
    check_certificates: bool = field(default=True, repr=False)
    """Validate recipient certificates (RSA >= 2048 bits, in validity, key encipherment)."""

    def __post_init__(self) -> None:
        if not self.passwords and not self.certificates:
            raise RecipientError("a secure file needs at least one password or certificate")
        if self.digest not in WRITABLE_DIGESTS:
            raise RecipientError(f"the digest {self.digest.value} is not offered for writing")
        if self.check_certificates:
            for certificate in self.certificates:
                check_recipient_certificate(certificate)


@dataclass(frozen=True, slots=True)
class EncryptResult:
    """What one file became."""

    plaintext_size: int
    """Bytes of the PS3.10 file."""
    plaintext_sha256: str
    """Hex SHA-256 of the PS3.10 file (what decrypting must give back)."""
    size: int
    """Bytes of the Secure DICOM File."""
    sha256: str | None
    """Hex SHA-256 of the Secure DICOM File, when asked for."""


class Source(Protocol):
    """What the writer reads from: a binary file or any stream with `readinto`."""

    def readinto(self, buffer: WriteableBuffer, /) -> int | None:
        """Fill `buffer`; the count read, 0 at the end."""


class _Output:
    """Gathers the file's bytes in one buffer and writes it when full (or at the end);
    counts them and sends them to the output hash as soon as they are final."""

    __slots__ = ("_buffer", "_fill", "_hashes", "_lane", "_sink", "count", "hash")

    def __init__(self, sink: BinaryIO, buffer: memoryview, lane: Lane, hashing: bool) -> None:
        self._sink = sink
        self._buffer = buffer
        self._fill = 0
        self._lane = lane
        self.hash: Any = hashlib.sha256() if hashing else None
        self._hashes: tuple[Any, ...] = (self.hash,) if hashing else ()
        self.count = 0

    def put(self, data: bytes) -> None:
        """Append bytes as they are."""
        if len(data) > len(self._buffer) - self._fill:
            self.flush()
            if len(data) > len(self._buffer):
                self._done(data)
                _write_all(self._sink, memoryview(data))
                return
        self._buffer[self._fill : self._fill + len(data)] = data
        self._done(self._buffer[self._fill : self._fill + len(data)])
        self._fill += len(data)

    def encrypt(self, encryptor: CipherContext, data: memoryview, block_size: int) -> None:
        """Append `encryptor`'s output for `data` (at most len(data) + a block - 1 bytes),
        a piece at a time so the output hash can start before the whole chunk is encrypted."""
        for start in range(0, len(data), PIECE):
            piece = data[start : start + PIECE]
            if len(piece) + block_size > len(self._buffer) - self._fill:
                self.flush()
            count = encryptor.update_into(piece, self._buffer[self._fill :])
            self._done(self._buffer[self._fill : self._fill + count])
            self._fill += count

    def make_room(self, size: int) -> bool:
        """Flush unless `size` more bytes fit; True if it flushed (and so waited for the lane)."""
        if size <= len(self._buffer) - self._fill:
            return False
        self.flush()
        return True

    def flush(self) -> None:
        """Write what the buffer holds; return once it may be filled again."""
        if self._fill:
            _write_all(self._sink, self._buffer[: self._fill])
            self._fill = 0
            self._lane.barrier()  # the output hash may still be reading the buffer

    def _done(self, data: bytes | memoryview) -> None:
        if self._hashes:
            self._lane.update(self._hashes, data)
        self.count += len(data)


def _write_all(sink: BinaryIO, data: memoryview) -> None:
    """Write all of `data`: a raw (unbuffered) file may take less than offered per call."""
    while data:
        written = sink.write(data)
        if written is None:  # pragma: no cover - only non-blocking sinks return None
            raise SecureWriteError("the output refused to take data")
        data = data[written:]


class SecureFileWriter:
    """Turns PS3.10 files into Secure DICOM Files with one set of `EnvelopeSettings`.

    Safe to share between threads: every call uses its own keys and buffers.
    """

    def __init__(self, settings: EnvelopeSettings) -> None:
        self.settings = settings
        # The recipient infos and algorithm identifiers, encoded once for all files.
        self._template = EnvelopeTemplate(
            passwords=settings.passwords,
            certificates=settings.certificates,
            cipher=settings.cipher,
            content_type=content_type_for(settings.signer),
        )
        # Per-thread buffers: allocating (and zeroing) 2 MiB per file costs more than the
        # encryption of a small instance.
        self._local = threading.local()

    def _buffers(self) -> tuple[memoryview, memoryview]:
        buffers: tuple[memoryview, memoryview] | None = getattr(self._local, "buffers", None)
        if buffers is None:
            buffers = (memoryview(bytearray(CHUNK)), memoryview(bytearray(CHUNK + OUT_SLACK)))
            self._local.buffers = buffers
        return buffers

    def encrypt(
        self,
        source: Source,
        size: int,
        sink: BinaryIO,
        *,
        hash_output: bool = True,
        signing_time: datetime | None = None,
    ) -> EncryptResult:
        """Read exactly `size` bytes from `source`, write the Secure DICOM File to `sink`.

        Raises SecureWriteError when the source holds fewer bytes than `size`.
        """
        with _running() as spare_core:
            overlap = spare_core and size >= OVERLAP_MIN
            return self._encrypt(source, size, sink, hash_output, signing_time, overlap)

    def _encrypt(
        self,
        source: Source,
        size: int,
        sink: BinaryIO,
        hash_output: bool,
        signing_time: datetime | None,
        overlap: bool,
    ) -> EncryptResult:
        settings = self.settings
        spec = settings.cipher.spec
        block = spec.block_size
        cek = os.urandom(spec.key_size)
        iv = os.urandom(block)
        frame = inner_frame(size, settings.digest, settings.signer, signing_time)
        plain_size = frame.overhead + size
        pad = block - plain_size % block
        view, out_view = self._buffers()
        lane: Lane = HelperLane(_hash_helper()) if overlap else InlineLane()
        try:
            out = _Output(sink, out_view, lane, hash_output)
            out.put(self._template.prefix(cek, iv, plain_size + pad))
            encryptor = spec.encryptor(cek, iv)
            content_hash = settings.digest.new()
            plain_hash = content_hash if settings.digest is DigestName.SHA256 else hashlib.sha256()
            hashes = (content_hash,) if plain_hash is content_hash else (content_hash, plain_hash)
            out.encrypt(encryptor, memoryview(frame.prefix), block)
            remaining = size
            while remaining:
                wanted = min(CHUNK, remaining)
                # Write the last chunk's output first: the helper hashes its tail meanwhile.
                # `make_room` waits for the helper whenever it writes, which also frees `view`.
                if not out.make_room(wanted + block) and remaining != size:
                    lane.barrier()  # `view` is still being hashed
                count = source.readinto(view[:wanted])
                if not count:
                    raise SecureWriteError("the source file is shorter than its size said")
                chunk = view[:count]
                # Hashed on the helper (if any) while this thread encrypts the same bytes.
                lane.update(hashes, chunk)
                out.encrypt(encryptor, chunk, block)
                remaining -= count
            lane.barrier()  # the content digest is complete
            trailer = frame.trailer(content_hash.digest())
            out.encrypt(encryptor, memoryview(trailer + bytes([pad]) * pad), block)
            out.put(encryptor.finalize())  # CBC without padding: nothing after whole blocks
            out.flush()
        finally:
            lane.close()
        return EncryptResult(
            plaintext_size=size,
            plaintext_sha256=plain_hash.hexdigest(),
            size=out.count,
            sha256=out.hash.hexdigest() if out.hash is not None else None,
        )

    def encrypt_file(
        self, source: Path, target: Path, *, hash_output: bool = True
    ) -> EncryptResult:
        """Encrypt the file `source` into `target` (which may be `source` itself: the file is
        then replaced). The target appears complete or not at all."""
        return encrypt_into(
            source,
            target,
            lambda src, size, dst: self.encrypt(src, size, dst, hash_output=hash_output),
        )
