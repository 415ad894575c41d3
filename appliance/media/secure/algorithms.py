"""The algorithms of the Basic DICOM Media Security Profile (PS3.15 D.1.1), by name.

Content ciphers: AES-128/192/256-CBC (RFC 3565) and Triple-DES CBC (RFC 3370); readers must
handle all four, writers default to AES-256-CBC. Digests: SHA-1 and SHA-2 (the profile lists
SHA-1, -256, -384, -512; SHA-1 is only read, never written). The names are OpenSSL's spelling so
the configuration and `openssl cms` speak alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from appliance.media.secure.errors import UnsupportedSecureFileError


class ContentCipher(StrEnum):
    """A content (and key-encryption) cipher, named as `openssl cms` names it."""

    AES128_CBC = "aes-128-cbc"
    AES192_CBC = "aes-192-cbc"
    AES256_CBC = "aes-256-cbc"
    DES_EDE3_CBC = "des-ede3-cbc"

    @property
    def spec(self) -> CipherSpec:
        """Key and block sizes and the ASN.1 name of this cipher."""
        return _SPECS[self]

    @classmethod
    def from_asn1(cls, name: str) -> ContentCipher:
        """The cipher an asn1crypto EncryptionAlgorithm name or dotted OID stands for."""
        for cipher, spec in _SPECS.items():
            if name == spec.asn1_name:
                return cipher
        raise UnsupportedSecureFileError(
            f"the file is encrypted with {name}, which the DICOM media security profile does "
            "not allow (AES-CBC or Triple-DES only)"
        )


@dataclass(frozen=True, slots=True)
class CipherSpec:
    """What the CMS layer needs to know about one CBC cipher."""

    asn1_name: str
    """asn1crypto's name of the algorithm OID (EncryptionAlgorithmId)."""
    key_size: int
    """Key length in bytes."""
    block_size: int
    """Block (and IV) length in bytes."""

    def _algorithm(self, key: bytes) -> Any:
        if self.asn1_name == "tripledes_3key":
            return TripleDES(key)
        return algorithms.AES(key)

    def encryptor(self, key: bytes, iv: bytes) -> CipherContext:
        """A raw CBC encryptor (no padding: callers pad as CMS says)."""
        return Cipher(self._algorithm(key), modes.CBC(iv)).encryptor()

    def decryptor(self, key: bytes, iv: bytes) -> CipherContext:
        """A raw CBC decryptor (no padding removal)."""
        return Cipher(self._algorithm(key), modes.CBC(iv)).decryptor()


_SPECS: Mapping[ContentCipher, CipherSpec] = MappingProxyType(
    {
        ContentCipher.AES128_CBC: CipherSpec("aes128_cbc", 16, 16),
        ContentCipher.AES192_CBC: CipherSpec("aes192_cbc", 24, 16),
        ContentCipher.AES256_CBC: CipherSpec("aes256_cbc", 32, 16),
        ContentCipher.DES_EDE3_CBC: CipherSpec("tripledes_3key", 24, 8),
    }
)

DEFAULT_CIPHER = ContentCipher.AES256_CBC


class DigestName(StrEnum):
    """A message digest of the profile, as hashlib names it."""

    SHA1 = "sha1"
    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"

    def new(self) -> Any:
        """A fresh hashlib object."""
        return hashlib.new(self.value)

    @property
    def hash_algorithm(self) -> hashes.HashAlgorithm:
        """The `cryptography` hash of the same name (signatures, PBKDF2)."""
        return _HASHES[self]()

    @property
    def size(self) -> int:
        """Digest length in bytes."""
        return self.hash_algorithm.digest_size

    @classmethod
    def from_asn1(cls, name: str) -> DigestName:
        """The digest an asn1crypto DigestAlgorithmId / HmacAlgorithmId name stands for."""
        try:
            return cls(name)
        except ValueError:
            raise UnsupportedSecureFileError(
                f"the file uses the digest {name}, outside the DICOM media security profile"
            ) from None


_HASHES: Mapping[DigestName, type[hashes.HashAlgorithm]] = MappingProxyType(
    {
        DigestName.SHA1: hashes.SHA1,
        DigestName.SHA256: hashes.SHA256,
        DigestName.SHA384: hashes.SHA384,
        DigestName.SHA512: hashes.SHA512,
    }
)

DEFAULT_DIGEST = DigestName.SHA256
WRITABLE_DIGESTS = frozenset({DigestName.SHA256, DigestName.SHA384, DigestName.SHA512})
"""Digests our writer offers: SHA-1 is read for interchange but never written."""
