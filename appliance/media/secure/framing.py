"""The DER around the bytes that stream: inner Digested-/Signed-data and the outer envelope.

A Secure DICOM File is, with N the size of the PS3.10 file (PS3.15 D.1, RFC 5652):

    ContentInfo { envelopedData, [0] EnvelopedData {
        version, recipientInfos,
        EncryptedContentInfo { digestedData | signedData, cipher + IV,
                               [0] IMPLICIT  E( DER(inner) || PKCS#7 padding ) } } }
    inner = DigestedData { v0, digest alg, { data, [0] OCTET STRING (N bytes) }, digest }
          | SignedData   { v1, {digest alg}, { data, [0] OCTET STRING (N bytes) },
                           [0] certificates, signerInfos }

Everything after the N file bytes (the digest, or certificates + signer info with an RSA
signature) has a size fixed by the algorithms, so the size of DER(inner), of the padded
ciphertext and of every container follows from N before the first byte is written. The writer
then emits `prefix`, encrypts the inner prefix, the file (hashing it on the way) and the
trailer, and never holds more than one chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

from asn1crypto import algos, cms, core  # type: ignore[import-untyped]

from appliance.media.secure.algorithms import ContentCipher, DigestName
from appliance.media.secure.der import (
    CONTEXT,
    OCTET_STRING,
    SEQUENCE,
    UNIVERSAL,
    definite_header,
)
from appliance.media.secure.signing import Signer


@dataclass(frozen=True, slots=True)
class InnerFrame:
    """The DER before and after the file's bytes inside the encrypted content."""

    content_type: str
    """asn1crypto name of the inner type: "digested_data" or "signed_data"."""
    prefix: bytes
    trailer_size: int
    digest: DigestName
    signer: Signer | None
    signing_time: datetime

    @property
    def overhead(self) -> int:
        """Bytes of DER around the file."""
        return len(self.prefix) + self.trailer_size

    def trailer(self, content_digest: bytes) -> bytes:
        """The members after the file, given the digest of its bytes."""
        if self.signer is None:
            trailer = bytes(core.OctetString(content_digest).dump())
        else:
            trailer = self.signer.trailer(self.digest, content_digest, self.signing_time)
        if len(trailer) != self.trailer_size:
            raise AssertionError("the inner trailer changed size")  # pragma: no cover
        return trailer


def content_type_for(signer: Signer | None) -> str:
    """asn1crypto name of the encrypted content's type: Signed-data with a signer, else
    Digested-data."""
    return "digested_data" if signer is None else "signed_data"


@lru_cache(maxsize=16)
def _inner_constants(digest: DigestName, signed: bool) -> tuple[bytes, bytes, int]:
    """The members before the encapsulated content, the `data` content type, and the size of a
    Digested-data trailer: the same for every file of a job, so asn1crypto encodes them once."""
    if signed:
        head = (
            cms.CMSVersion("v1").dump() + cms.DigestAlgorithms([{"algorithm": digest.value}]).dump()
        )
    else:
        head = (
            cms.CMSVersion("v0").dump() + algos.DigestAlgorithm({"algorithm": digest.value}).dump()
        )
    digest_trailer = len(core.OctetString(bytes(digest.size)).dump())
    return bytes(head), bytes(cms.ContentType("data").dump()), digest_trailer


def inner_frame(
    size: int, digest: DigestName, signer: Signer | None, signing_time: datetime | None = None
) -> InnerFrame:
    """The frame of a DigestedData (no signer) or SignedData around `size` file bytes."""
    head, content_type, digest_trailer = _inner_constants(digest, signer is not None)
    octets = definite_header(UNIVERSAL, False, OCTET_STRING, size)
    explicit = definite_header(CONTEXT, True, 0, len(octets) + size)
    encap_size = len(content_type) + len(explicit) + len(octets) + size
    encap = (
        definite_header(UNIVERSAL, True, SEQUENCE, encap_size) + content_type + explicit + octets
    )
    trailer_size = digest_trailer if signer is None else signer.trailer_size(digest)
    body = len(head) + len(encap) + size + trailer_size
    prefix = definite_header(UNIVERSAL, True, SEQUENCE, body) + head + encap
    return InnerFrame(
        content_type_for(signer),
        bytes(prefix),
        trailer_size,
        digest,
        signer,
        (signing_time or datetime.now(UTC)).replace(microsecond=0),
    )


def envelope_head(recipient_infos: list[Any]) -> bytes:
    """EnvelopedData's version and recipient infos, DER."""
    has_password = any(ri.name == "pwri" for ri in recipient_infos)
    # RFC 5652 6.1: version 3 with a password recipient, else 0 (ktri v0 recipients only).
    return bytes(
        cms.CMSVersion("v3" if has_password else "v0").dump()
        + cms.RecipientInfos(recipient_infos).dump()
    )


def content_algorithm(content_type: str, cipher: ContentCipher, iv: bytes) -> bytes:
    """EncryptedContentInfo's content type and content-encryption algorithm (with IV), DER."""
    return bytes(
        cms.ContentType(content_type).dump()
        + algos.EncryptionAlgorithm(
            {"algorithm": cipher.spec.asn1_name, "parameters": core.OctetString(iv)}
        ).dump()
    )


def envelope_containers(head: bytes, algorithm: bytes, ciphertext_size: int) -> bytes:
    """Everything before the ciphertext, given `envelope_head` and `content_algorithm`: the
    ContentInfo, EnvelopedData, EncryptedContentInfo and [0] headers around them."""
    eci_head = algorithm + definite_header(CONTEXT, False, 0, ciphertext_size)
    eci_size = len(eci_head) + ciphertext_size
    eci_header = definite_header(UNIVERSAL, True, SEQUENCE, eci_size)
    enveloped_size = len(head) + len(eci_header) + eci_size
    enveloped_header = definite_header(UNIVERSAL, True, SEQUENCE, enveloped_size)
    explicit_size = len(enveloped_header) + enveloped_size
    explicit = definite_header(CONTEXT, True, 0, explicit_size)
    info_size = len(_ENVELOPED_DATA) + len(explicit) + explicit_size
    return b"".join(
        (
            definite_header(UNIVERSAL, True, SEQUENCE, info_size),
            _ENVELOPED_DATA,
            explicit,
            enveloped_header,
            head,
            eci_header,
            eci_head,
        )
    )


_ENVELOPED_DATA: Final = bytes(cms.ContentType("enveloped_data").dump())


def envelope_prefix(
    recipient_infos: list[Any],
    content_type: str,
    cipher: ContentCipher,
    iv: bytes,
    ciphertext_size: int,
) -> bytes:
    """Everything of the Secure DICOM File before the ciphertext, all encoded now (the
    reference `EnvelopeTemplate` is checked against)."""
    return envelope_containers(
        envelope_head(recipient_infos),
        content_algorithm(content_type, cipher, iv),
        ciphertext_size,
    )
