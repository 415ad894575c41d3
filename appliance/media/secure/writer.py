"""Write Secure DICOM Files: a PS3.10 file in, its CMS envelope out, streamed.

Per file: a fresh content key and IV; one recipient info per configured password (through the
disc's `PasswordKek`) and per certificate; the inner Digested-data (or Signed-data with a
signer) around the whole file; PKCS#7 padding; AES-CBC or Triple-DES. Memory stays at two
1 MiB buffers whatever the file size (see `framing` for how lengths are known up front).

The content digest is SHA-256 of the whole PS3.10 file by default, which is also the plaintext
checksum a disc manifest keeps, so it is reported and not computed twice. The SHA-256 of the
written file (what lands on the disc) is computed on the way out when asked.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from cryptography import x509 as cx509

from appliance.media.secure.algorithms import (
    DEFAULT_CIPHER,
    DEFAULT_DIGEST,
    WRITABLE_DIGESTS,
    ContentCipher,
    DigestName,
)
from appliance.media.secure.errors import RecipientError, SecureWriteError
from appliance.media.secure.framing import envelope_prefix, inner_frame
from appliance.media.secure.password import PasswordKek
from appliance.media.secure.recipients import certificate_recipient, check_recipient_certificate
from appliance.media.secure.signing import Signer

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

CHUNK = 1024 * 1024
"""Bytes read, hashed and encrypted per step: large enough that per-call overhead vanishes."""
OVERLAP_MIN = 64 * 1024
"""Chunks at least this large are hashed on a helper thread while this one encrypts or writes
(SHA-256 and AES both release the GIL, so they run on two cores); smaller ones inline."""

_helper_lock = threading.Lock()
_helper: ThreadPoolExecutor | None = None


def _hash_helper() -> ThreadPoolExecutor:
    """The process's hashing helpers (created on first use, idle threads otherwise)."""
    global _helper  # noqa: PLW0603 - one pool for the process, made lazily
    with _helper_lock:
        if _helper is None:
            _helper = ThreadPoolExecutor(2, thread_name_prefix="secure-hash")
        return _helper


def _update(hashes: tuple[Any, ...], data: memoryview) -> None:
    for running in hashes:
        running.update(data)


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


class _Sink:
    """Writes to the output, counting and (optionally) hashing."""

    def __init__(self, sink: BinaryIO, hashing: bool) -> None:
        self._sink = sink
        self.hash: Any = hashlib.sha256() if hashing else None
        self.count = 0

    def write(self, data: bytes | memoryview) -> None:
        if self.hash is not None and len(data) >= OVERLAP_MIN:
            hashing = _hash_helper().submit(self.hash.update, data)
            try:
                self._sink.write(data)
            finally:
                hashing.result()
        else:
            if self.hash is not None:
                self.hash.update(data)
            self._sink.write(data)
        self.count += len(data)


class SecureFileWriter:
    """Turns PS3.10 files into Secure DICOM Files with one set of `EnvelopeSettings`.

    Safe to share between threads: every call uses its own keys and buffers.
    """

    def __init__(self, settings: EnvelopeSettings) -> None:
        self.settings = settings
        # Per-thread buffers: allocating (and zeroing) 2 MiB per file costs more than the
        # encryption of a small instance.
        self._local = threading.local()

    def _buffers(self) -> tuple[memoryview, memoryview]:
        buffers: tuple[memoryview, memoryview] | None = getattr(self._local, "buffers", None)
        if buffers is None:
            buffers = (memoryview(bytearray(CHUNK)), memoryview(bytearray(CHUNK + 16)))
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
        settings = self.settings
        spec = settings.cipher.spec
        cek = os.urandom(spec.key_size)
        iv = os.urandom(spec.block_size)
        recipients = [kek.recipient_info(cek) for kek in settings.passwords]
        recipients += [certificate_recipient(c, cek) for c in settings.certificates]
        frame = inner_frame(size, settings.digest, settings.signer, signing_time)
        plain_size = frame.overhead + size
        pad = spec.block_size - plain_size % spec.block_size
        out = _Sink(sink, hash_output)
        out.write(
            envelope_prefix(recipients, frame.content_type, settings.cipher, iv, plain_size + pad)
        )

        encryptor = spec.encryptor(cek, iv)
        content_hash = settings.digest.new()
        plain_hash = content_hash if settings.digest is DigestName.SHA256 else hashlib.sha256()
        hashes = (content_hash,) if plain_hash is content_hash else (content_hash, plain_hash)
        out.write(encryptor.update(frame.prefix))
        view, encrypted_view = self._buffers()
        remaining = size
        while remaining:
            count = source.readinto(view[: min(CHUNK, remaining)])
            if not count:
                raise SecureWriteError("the source file is shorter than its size said")
            chunk = view[:count]
            if count >= OVERLAP_MIN:
                hashing = _hash_helper().submit(_update, hashes, chunk)
                try:
                    encrypted = encryptor.update_into(chunk, encrypted_view)
                finally:
                    hashing.result()
            else:
                _update(hashes, chunk)
                encrypted = encryptor.update_into(chunk, encrypted_view)
            out.write(encrypted_view[:encrypted])
            remaining -= count
        trailer = frame.trailer(content_hash.digest())
        out.write(encryptor.update(trailer + bytes([pad]) * pad))
        out.write(encryptor.finalize())
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
        partial = target.with_name(f".{target.name}.secure-partial")
        try:
            with source.open("rb") as src:
                size = os.fstat(src.fileno()).st_size
                with partial.open("wb") as dst:
                    result = self.encrypt(src, size, dst, hash_output=hash_output)
                if src.read(1):
                    raise SecureWriteError(f"{source.name} grew while it was being encrypted")
            partial.replace(target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise SecureWriteError(
                f"{source.name} cannot be encrypted ({exc.strerror or type(exc).__name__})"
            ) from None
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
        return result
