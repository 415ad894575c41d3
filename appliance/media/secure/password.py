"""Passwords of secure discs: the DICOM repertoire rule, a strength policy, and the per-disc KEK.

PS3.15 D.1.1 allows only characters of the DICOM Default Character Repertoire (ISO-IR 6,
printable ASCII) in passwords, encoded as those bytes: a password typed on any keyboard then
opens the disc anywhere. Anything else is refused, never transliterated.

PBKDF2 at a high iteration count is deliberately slow. `PasswordKek` derives the key-encryption
key once per disc (one random salt shared by the disc's files); each file still gets its own
content key and IVs, wrapped with that KEK. A reader that keeps derived KEKs by salt (ours does)
pays the derivation once per disc too; `openssl cms` pays it per file.

Nothing here keeps the password: only the derived key, which `repr` never shows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Final

from asn1crypto import algos, cms, core  # type: ignore[import-untyped]
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from appliance.media.secure.algorithms import DEFAULT_CIPHER, ContentCipher, DigestName
from appliance.media.secure.errors import PasswordPolicyError, RecipientError
from appliance.media.secure.keywrap import wrap_key, wrapped_size

PWRI_KEK_OID: Final = "1.2.840.113549.1.9.16.3.9"
"""id-alg-PWRI-KEK (RFC 3211): asn1crypto has no name for it."""
DEFAULT_ITERATIONS: Final = 600_000
"""PBKDF2-HMAC-SHA256 rounds: OWASP's 2023 figure; about 60 ms once per disc here."""
MIN_ITERATIONS: Final = 1_000
"""RFC 8018's floor; anything lower is refused when writing."""
MAX_ITERATIONS: Final = 10_000_000
"""Refused above this when reading: a hostile file could otherwise stall the reader."""
SALT_BYTES: Final = 16
DEFAULT_PRF: Final = DigestName.SHA256
_FIRST_PRINTABLE: Final = 0x20
_LAST_PRINTABLE: Final = 0x7E


def password_bytes(password: str) -> bytes:
    """The password's bytes if it uses only the DICOM default repertoire (printable ASCII).

    Raises PasswordPolicyError naming the position of the first bad character, never the
    password itself.
    """
    for position, char in enumerate(password, start=1):
        if not _FIRST_PRINTABLE <= ord(char) <= _LAST_PRINTABLE:
            raise PasswordPolicyError(
                f"character {position} of the password is not allowed: DICOM passwords use "
                "printable ASCII only (letters A-Z a-z, digits, space and ASCII punctuation; "
                "no accented letters, no symbols like ¥ or €)"
            )
    # Every character was checked to be ASCII, so this cannot fail (and so cannot put the
    # password into an exception).
    return password.encode("ascii")


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """What a password for a new secure disc must meet (reading only checks the repertoire)."""

    min_length: int = 10
    """Fewest characters."""
    min_classes: int = 2
    """Fewest kinds of character among lower case, upper case, digits, other printable."""

    def __post_init__(self) -> None:
        if self.min_length < 1 or not 1 <= self.min_classes <= 4:
            raise ValueError("password policy: min_length >= 1 and 1 <= min_classes <= 4")

    def check(self, password: str) -> bytes:
        """The password's bytes, or PasswordPolicyError saying what is missing."""
        encoded = password_bytes(password)
        if len(encoded) < self.min_length:
            raise PasswordPolicyError(
                f"the password is too short: at least {self.min_length} characters are required"
            )
        classes = sum(
            any(test(c) for c in password)
            for test in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
        )
        if classes < self.min_classes:
            raise PasswordPolicyError(
                f"the password is too simple: use at least {self.min_classes} of lower case, "
                "upper case, digits and other characters"
            )
        return encoded


def derive_kek(
    password: bytes, salt: bytes, iterations: int, prf: DigestName, length: int
) -> bytes:
    """PBKDF2 (RFC 8018) of the password bytes."""
    kdf = PBKDF2HMAC(algorithm=prf.hash_algorithm, length=length, salt=salt, iterations=iterations)
    return kdf.derive(password)


class PasswordKek:
    """A key-encryption key derived from a password once, for all files of one disc.

    Build it with `PasswordKek.derive`; give it to the writer, which calls `recipient_info`
    for every file with that file's fresh content key.
    """

    __slots__ = ("_kdf", "_key", "cipher", "iterations", "prf", "salt")

    def __init__(
        self, key: bytes, *, salt: bytes, iterations: int, cipher: ContentCipher, prf: DigestName
    ) -> None:
        if len(key) != cipher.spec.key_size:
            raise RecipientError("the derived key does not fit the key-encryption cipher")
        self._key = key
        self.salt = salt
        self.iterations = iterations
        self.cipher = cipher
        self.prf = prf
        # The same for every file of the disc: encoded once (asn1crypto is slow enough that
        # this is a tenth of the cost of a small file).
        self._kdf = bytes(
            algos.KdfAlgorithm(
                {
                    "algorithm": "pbkdf2",
                    "parameters": algos.Pbkdf2Params(
                        {
                            "salt": algos.Pbkdf2Salt(name="specified", value=salt),
                            "iteration_count": iterations,
                            "prf": {"algorithm": prf.value, "parameters": core.Null()},
                        }
                    ),
                }
            ).dump()
        )

    @classmethod
    def derive(
        cls,
        password: str,
        *,
        iterations: int = DEFAULT_ITERATIONS,
        cipher: ContentCipher = DEFAULT_CIPHER,
        prf: DigestName = DEFAULT_PRF,
        salt: bytes | None = None,
        policy: PasswordPolicy | None = None,
    ) -> PasswordKek:
        """Check the password (against `policy`, default `PasswordPolicy()`), then run PBKDF2
        with a random 16-byte salt (or `salt`) and keep only the derived key."""
        encoded = (policy or PasswordPolicy()).check(password)
        if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise RecipientError(
                f"PBKDF2 iterations must be {MIN_ITERATIONS}..{MAX_ITERATIONS}, not {iterations}"
            )
        if prf is DigestName.SHA1:
            raise RecipientError("PBKDF2 with HMAC-SHA1 is read, never written: use SHA-256")
        salt = os.urandom(SALT_BYTES) if salt is None else salt
        if len(salt) < 8:
            raise RecipientError("a PBKDF2 salt has at least 8 bytes")
        key = derive_kek(encoded, salt, iterations, prf, cipher.spec.key_size)
        return cls(key, salt=salt, iterations=iterations, cipher=cipher, prf=prf)

    def wrapped_key_size(self, cek_size: int) -> int:
        """Bytes of a `cek_size`-byte content key once wrapped (RFC 3211 frame, padded)."""
        return wrapped_size(self.cipher.spec, cek_size)

    def wrap(self, cek: bytes) -> tuple[bytes, bytes]:
        """A fresh key-encryption IV and `cek` wrapped under the KEK with it."""
        spec = self.cipher.spec
        iv = os.urandom(spec.block_size)
        return iv, wrap_key(spec, self._key, iv, cek)

    def recipient_info(self, cek: bytes) -> Any:
        """A PasswordRecipientInfo (asn1crypto RecipientInfo) wrapping `cek` with a fresh IV."""
        return self.recipient_info_for(*self.wrap(cek))

    def recipient_info_for(self, iv: bytes, encrypted_key: bytes) -> Any:
        """The PasswordRecipientInfo carrying a key already wrapped with `iv` (see `wrap`)."""
        kdf = algos.KdfAlgorithm.load(self._kdf)
        kek_cipher = algos.EncryptionAlgorithm(
            {"algorithm": self.cipher.spec.asn1_name, "parameters": core.OctetString(iv)}
        )
        pwri = cms.PasswordRecipientInfo(
            {
                "version": "v0",
                "key_derivation_algorithm": kdf,
                "key_encryption_algorithm": cms.KeyEncryptionAlgorithm(
                    {"algorithm": PWRI_KEK_OID, "parameters": kek_cipher}
                ),
                "encrypted_key": encrypted_key,
            }
        )
        return cms.RecipientInfo(name="pwri", value=pwri)

    def __repr__(self) -> str:
        return (
            f"PasswordKek(cipher={self.cipher.value}, prf=hmacWith{self.prf.name}, "
            f"iterations={self.iterations})"
        )
