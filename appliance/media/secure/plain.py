"""Envelope bytes that are not a DICOM file: CMS EnvelopedData around plain id-data.

Secure DICOM Files must carry Digested-data or Signed-data (PS3.15 D.1.1); that rule is for
DICOM files. A non-DICOM file on a secure disc (the encrypted web bundle) is better served by
plain id-data content: `openssl cms -decrypt` then writes the original bytes themselves, which
a recipient can use at once (with Digested-data it writes a DER structure they would have to
unwrap). Its integrity comes from the file's own checks (a ZIP's CRC-32 per member) and from
the disc's checksum list.

The envelope is the one of `SecureFileWriter` (same recipients, same per-disc password KEKs,
same cipher, the template of `template`), only the encrypted content type is id-data and the
ciphertext is the padded bytes without any inner structure. A signer in the settings is not
used: the content is not Signed-data.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

from appliance.media.secure.errors import SecureWriteError
from appliance.media.secure.file_target import encrypt_into
from appliance.media.secure.template import EnvelopeTemplate
from appliance.media.secure.writer import EncryptResult, EnvelopeSettings

CHUNK = 1024 * 1024
"""Bytes read and encrypted per step (memory does not grow with the file)."""
DATA_CONTENT_TYPE = "data"
"""asn1crypto's name of id-data (1.2.840.113549.1.7.1)."""


class PlainDataWriter:
    """Envelopes arbitrary bytes for the recipients of one `EnvelopeSettings`.

    Safe to share between threads: every call uses its own content key and IV.
    """

    def __init__(self, settings: EnvelopeSettings) -> None:
        """`settings` as for the disc's DICOM files (its signer and digest are not used)."""
        self.settings = settings
        self._template = EnvelopeTemplate(
            passwords=settings.passwords,
            certificates=settings.certificates,
            cipher=settings.cipher,
            content_type=DATA_CONTENT_TYPE,
        )

    def encrypt(self, source: BinaryIO, size: int, sink: BinaryIO) -> EncryptResult:
        """Read exactly `size` bytes from `source` and write their envelope (DER) to `sink`.

        Raises SecureWriteError when the source holds fewer bytes than `size`.
        """
        spec = self.settings.cipher.spec
        block = spec.block_size
        cek = os.urandom(spec.key_size)
        iv = os.urandom(block)
        pad = block - size % block  # PKCS#7: always at least one byte
        plain_hash = hashlib.sha256()
        out_hash = hashlib.sha256()
        written = 0

        def put(data: bytes) -> None:
            nonlocal written
            sink.write(data)
            out_hash.update(data)
            written += len(data)

        put(self._template.prefix(cek, iv, size + pad))
        encryptor = spec.encryptor(cek, iv)
        remaining = size
        while remaining:
            chunk = source.read(min(CHUNK, remaining))
            if not chunk:
                raise SecureWriteError("the source file is shorter than its size said")
            plain_hash.update(chunk)
            put(encryptor.update(chunk))
            remaining -= len(chunk)
        put(encryptor.update(bytes([pad]) * pad) + encryptor.finalize())
        return EncryptResult(
            plaintext_size=size,
            plaintext_sha256=plain_hash.hexdigest(),
            size=written,
            sha256=out_hash.hexdigest(),
        )

    def encrypt_file(self, source: Path, target: Path) -> EncryptResult:
        """Envelope the file `source` into `target`; the target appears complete or not at
        all. SecureWriteError when the source cannot be read or the target written."""
        return encrypt_into(source, target, self.encrypt)
