"""The key wrap of RFC 3211 (password recipients): what id-alg-PWRI-KEK means.

Not the AES Key Wrap of RFC 3394: the content-encryption key is framed, padded and
CBC-encrypted twice with the key-encryption key, so any block cipher (AES or Triple-DES) works:

    block  = len(CEK) || ~CEK[0] ~CEK[1] ~CEK[2] || CEK || random padding
             (a multiple of the cipher's block size, at least two blocks)
    pass 1 = CBC(KEK, IV, block)
    pass 2 = CBC(KEK, last block of pass 1, pass 1)

The check bytes make a wrong password visible (all but 1 in 2^24 wrong keys fail them), before
any content is decrypted.
"""

from __future__ import annotations

import os

from appliance.media.secure.algorithms import CipherSpec
from appliance.media.secure.errors import RecipientError

_CHECK_BYTES = 3


def wrap_key(spec: CipherSpec, kek: bytes, iv: bytes, cek: bytes) -> bytes:
    """Wrap `cek` with `kek` (a key of `spec`) and `iv`, RFC 3211 section 2.3.1."""
    if not 1 <= len(cek) <= 255 or len(cek) < _CHECK_BYTES:
        raise RecipientError("a content key must be 3 to 255 bytes long to be wrapped")
    framed = bytes([len(cek)]) + bytes(b ^ 0xFF for b in cek[:_CHECK_BYTES]) + cek
    framed += os.urandom(wrapped_size(spec, len(cek)) - len(framed))
    first = spec.encryptor(kek, iv).update(framed)
    return spec.encryptor(kek, first[-spec.block_size :]).update(first)


def wrapped_size(spec: CipherSpec, key_size: int) -> int:
    """Bytes of a wrapped `key_size`-byte key: the framed key padded to whole blocks, at least
    two (the same for every key of one size, so envelope layouts are known in advance)."""
    size = spec.block_size
    return max(2 * size, -(-(1 + _CHECK_BYTES + key_size) // size) * size)


def unwrap_key(spec: CipherSpec, kek: bytes, iv: bytes, wrapped: bytes) -> bytes | None:
    """The content key, or None when the check bytes fail (wrong password or damaged key).

    RFC 3211 section 2.3.2: decrypting the last block with the one before it as IV gives the
    IV of the second pass; undoing both passes gives the framed key back.
    """
    size = spec.block_size
    if len(wrapped) < 2 * size or len(wrapped) % size:
        return None
    last_iv = spec.decryptor(kek, wrapped[-2 * size : -size]).update(wrapped[-size:])
    first = spec.decryptor(kek, last_iv).update(wrapped)
    framed = spec.decryptor(kek, iv).update(first)
    length = framed[0]
    check = framed[1 : 1 + _CHECK_BYTES]
    key = framed[1 + _CHECK_BYTES : 1 + _CHECK_BYTES + length]
    if length < _CHECK_BYTES or len(key) != length:
        return None
    if any((c ^ k) != 0xFF for c, k in zip(check, key[:_CHECK_BYTES], strict=True)):
        return None
    return key
