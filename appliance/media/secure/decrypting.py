"""A readable stream of plaintext over CBC ciphertext that arrives in chunks.

CMS pads the encrypted content with PKCS#7 padding, so the last block can only be judged once
the ciphertext has ended: it is held back until then, checked, and released without the
padding. Bad padding nearly always means a wrong content key or changed ciphertext.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.ciphers import CipherContext

from appliance.media.secure.errors import TamperedFileError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class PlaintextStream(io.RawIOBase):
    """Raw stream of the decrypted, unpadded content (wrap it in `io.BufferedReader`)."""

    def __init__(
        self, ciphertext: Iterator[bytes], decryptor: CipherContext, block_size: int, what: str
    ) -> None:
        super().__init__()
        self._ciphertext = ciphertext
        self._decryptor = decryptor
        self._block = block_size
        self._what = what
        self._ready = memoryview(b"")
        self._held = b""
        self._done = False

    def readable(self) -> bool:
        """Always: this is a reading stream."""
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Fill `buffer` with the next plaintext bytes; 0 at the end of the content."""
        while not self._ready and not self._done:
            self._fill()
        target = memoryview(buffer).cast("B")
        count = min(len(target), len(self._ready))
        target[:count] = self._ready[:count]
        self._ready = self._ready[count:]
        return count

    def _fill(self) -> None:
        chunk = next(self._ciphertext, None)
        if chunk is None:
            self._done = True
            self._ready = memoryview(self._unpad())
            return
        data = self._held + self._decryptor.update(chunk)
        cut = max(0, len(data) - self._block)
        self._ready, self._held = memoryview(data)[:cut], data[cut:]

    def _unpad(self) -> bytes:
        try:
            last = self._held + self._decryptor.finalize()
        except ValueError:  # not a whole number of blocks
            raise TamperedFileError(f"{self._what}: the encrypted content is cut") from None
        if len(last) != self._block:
            raise TamperedFileError(f"{self._what}: the encrypted content is cut")
        pad = last[-1]
        if not 1 <= pad <= self._block or last[-pad:] != bytes([pad]) * pad:
            raise TamperedFileError(f"{self._what}: the encrypted content does not decrypt")
        return last[:-pad]
