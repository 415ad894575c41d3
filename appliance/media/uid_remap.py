"""Deterministic keyed replacement of UIDs (and keyed tokens for pseudonyms).

The same secret maps the same original UID to the same new UID, in every instance and every run,
so a study stays one study, references between objects still resolve, and a second disc of the same
job (or a re-burn) gets the same UIDs. Without the secret the mapping can be neither reversed nor
recomputed from a guessed original (HMAC-SHA256, not a bare hash).
"""

from __future__ import annotations

import hashlib
import hmac
import re

from appliance.media.identity_errors import IdentityTransformError

UID_MAX = 64
MIN_SECRET_BYTES = 16
# Leave at least this many digits of keyed value under a caller's root: ~76 bits, enough that two
# different originals practically never collide within one archive.
MIN_KEYED_DIGITS = 23

STANDARD_UID_ROOT = "1.2.840.10008."
"""UIDs under the DICOM root are defined by the standard (SOP classes, transfer syntaxes, well-known
instances and frames of reference): they never identify a patient and are never replaced."""

_UID_ROOT = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def keyed_digest(secret: bytes, domain: bytes, value: str) -> bytes:
    """HMAC-SHA256 of value under secret, separated by domain so that a UID and a patient ID with
    the same text never share a digest."""
    return hmac.new(secret, domain + b"\x00" + value.encode("utf-8"), hashlib.sha256).digest()


def check_secret(secret: bytes) -> bytes:
    """Refuse secrets too short to key the mapping safely."""
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise IdentityTransformError(f"secret: must be at least {MIN_SECRET_BYTES} bytes")
    return secret


def check_uid_root(root: str) -> str:
    """A UID root the caller owns, with room for the keyed part."""
    root = root.strip().rstrip(".")
    if not _UID_ROOT.fullmatch(root):
        raise IdentityTransformError("uid_root: is not a valid UID root (digits and dots)")
    if len(root) + 1 + MIN_KEYED_DIGITS > UID_MAX:
        raise IdentityTransformError(
            f"uid_root: longer than {UID_MAX - 1 - MIN_KEYED_DIGITS} characters"
        )
    return root


def _uuid_v8_int(digest: bytes) -> int:
    """128 bits of digest as an RFC 9562 version-8 (custom) UUID integer.

    2.25 UIDs are defined as the integer form of a UUID (PS3.5 B.2), so the version and variant
    bits are set as a UUID requires rather than using 128 raw bits.
    """
    value = int.from_bytes(digest[:16], "big")
    value &= ~(0xF << 76)  # version nibble
    value |= 0x8 << 76
    value &= ~(0x3 << 62)  # variant bits
    value |= 0x2 << 62
    return value


class UidRemapper:
    """Maps original UIDs to new ones, deterministically under a secret.

    Without uid_root: ``2.25.<UUIDv8 integer from HMAC-SHA256(secret, uid)>``. With uid_root:
    ``<root>.<keyed integer>``, as many digits as fit in 64 characters.
    """

    def __init__(self, secret: bytes, uid_root: str | None = None) -> None:
        self._secret = check_secret(secret)
        self._root = check_uid_root(uid_root) if uid_root is not None else None
        self._cache: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        """The replacement for uid; standard UIDs and empty values are returned unchanged."""
        original = uid.strip().rstrip("\x00")
        if not original or original.startswith(STANDARD_UID_ROOT):
            return original
        cached = self._cache.get(original)
        if cached is not None:
            return cached
        digest = keyed_digest(self._secret, b"uid", original)
        if self._root is None:
            new = f"2.25.{_uuid_v8_int(digest)}"
        else:
            digits = UID_MAX - len(self._root) - 1
            keyed = int.from_bytes(digest, "big") % (10**digits)
            # str(int) never has a leading zero, which a UID component may not have.
            new = f"{self._root}.{keyed}"
            if len(new) > UID_MAX:  # pragma: no cover - arithmetic guarantees the length
                raise IdentityTransformError("uid_root: generated UID is too long")
        self._cache[original] = new
        return new
