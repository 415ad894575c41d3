"""Signed-data inside a Secure DICOM File: the signer we write with, and checking signers.

We sign with RSA PKCS#1 v1.5 over signed attributes (content type, message digest, signing
time) and put the signer's certificate into the SignedData, so any reader can check the
signature without configuration. Checking proves the content is what that certificate's key
signed; whether to trust the certificate is the caller's decision (the reader reports who it
is), since a disc from another hospital is signed by a certificate we may never have seen.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asn1crypto import cms, core, parser  # type: ignore[import-untyped]
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from appliance.media.secure.algorithms import DigestName
from appliance.media.secure.errors import (
    RecipientError,
    SignatureError,
    TamperedFileError,
    UnsupportedSecureFileError,
)
from appliance.media.secure.recipients import asn1_certificate, issuer_and_serial

_RSA_SIGNATURES = frozenset(
    {"rsassa_pkcs1v15", "sha1_rsa", "sha224_rsa", "sha256_rsa", "sha384_rsa", "sha512_rsa"}
)


@dataclass(frozen=True, slots=True)
class Signer:
    """The key and certificate files are signed with (Signed-data instead of Digested-data)."""

    private_key: rsa.RSAPrivateKey
    certificate: cx509.Certificate

    def __post_init__(self) -> None:
        public = self.certificate.public_key()
        if not isinstance(self.private_key, rsa.RSAPrivateKey) or not isinstance(
            public, rsa.RSAPublicKey
        ):
            raise RecipientError("signing needs an RSA key and its certificate")
        if public.public_numbers() != self.private_key.public_key().public_numbers():
            raise RecipientError("the signing key does not belong to the signing certificate")

    @property
    def signature_size(self) -> int:
        """Bytes of every RSA signature of this key."""
        return (self.private_key.key_size + 7) // 8

    def trailer(self, digest: DigestName, content_digest: bytes, signing_time: datetime) -> bytes:
        """The SignedData members after the content: certificates and signerInfos (DER).

        `content_digest` is the `digest` of the content octets (the whole PS3.10 file)."""
        attributes = cms.CMSAttributes(
            [
                {"type": "content_type", "values": ["data"]},
                {"type": "signing_time", "values": [cms.Time(name="utc_time", value=signing_time)]},
                {"type": "message_digest", "values": [content_digest]},
            ]
        )
        signature = self.private_key.sign(
            attributes.dump(), padding.PKCS1v15(), digest.hash_algorithm
        )
        return self._trailer(digest, attributes, signature)

    def trailer_size(self, digest: DigestName) -> int:
        """Length of every `trailer` (fixed: digest, UTCTime and signature have fixed sizes)."""
        attributes = cms.CMSAttributes(
            [
                {"type": "content_type", "values": ["data"]},
                {"type": "signing_time", "values": [cms.Time(name="utc_time", value=_EPOCH)]},
                {"type": "message_digest", "values": [bytes(digest.size)]},
            ]
        )
        return len(self._trailer(digest, attributes, bytes(self.signature_size)))

    def _trailer(self, digest: DigestName, attributes: Any, signature: bytes) -> bytes:
        cert = cms.CertificateChoices(
            name="certificate",
            value=asn1_certificate(self.certificate),
        )
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    name="issuer_and_serial_number", value=issuer_and_serial(self.certificate)
                ),
                "digest_algorithm": {"algorithm": digest.value},
                "signed_attrs": attributes,
                "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
                "signature": signature,
            }
        )
        certificates = cms.CertificateSet([cert], implicit=0)
        return bytes(certificates.dump() + cms.SignerInfos([signer_info]).dump())


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


# -- checking --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignerIdentity:
    """Who signed a file (from the certificate that verified the signature)."""

    subject: str
    """RFC 4514 subject of the signer's certificate."""
    issuer: str
    """RFC 4514 issuer."""
    serial_number: int
    certificate_sha256: str
    """Hex SHA-256 of the certificate's DER: compare with a configured trusted signer."""
    signing_time: datetime | None
    """The signed signing-time attribute, when present."""


def verify_signers(
    signer_infos: Any,
    certificates: Sequence[cx509.Certificate],
    digests: Mapping[DigestName, bytes],
) -> list[SignerIdentity]:
    """Check every SignerInfo against the content digests; the signers, or SignatureError."""
    found: list[SignerIdentity] = []
    for signer_info in signer_infos:
        found.append(_verify_one(signer_info, certificates, digests))
    if not found:
        raise SignatureError("the Signed-data carries no signer")
    return found


def _find_certificate(sid: Any, certificates: Sequence[cx509.Certificate]) -> cx509.Certificate:
    for certificate in certificates:
        if sid.name == "issuer_and_serial_number":
            if issuer_and_serial(certificate).dump() == sid.chosen.dump():
                return certificate
        else:
            try:
                ski = certificate.extensions.get_extension_for_class(cx509.SubjectKeyIdentifier)
            except cx509.ExtensionNotFound:
                continue
            if ski.value.digest == sid.chosen.native:
                return certificate
    raise UnsupportedSecureFileError(
        "the signer's certificate is neither in the file nor among the configured ones"
    )


def _verify_one(
    signer_info: Any,
    certificates: Sequence[cx509.Certificate],
    digests: Mapping[DigestName, bytes],
) -> SignerIdentity:
    certificate = _find_certificate(signer_info["sid"], certificates)
    digest_name = DigestName.from_asn1(signer_info["digest_algorithm"]["algorithm"].native)
    content_digest = digests.get(digest_name)
    if content_digest is None:
        raise TamperedFileError("a signer uses a digest the Signed-data does not announce")
    algorithm = signer_info["signature_algorithm"]["algorithm"].native
    key = certificate.public_key()
    if algorithm not in _RSA_SIGNATURES or not isinstance(key, rsa.RSAPublicKey):
        raise UnsupportedSecureFileError(f"signatures of type {algorithm} are not checked")
    signature = signer_info["signature"].native
    attributes = signer_info["signed_attrs"]
    signing_time: datetime | None = None
    try:
        if isinstance(attributes, core.Void):
            key.verify(
                signature,
                content_digest,
                padding.PKCS1v15(),
                utils.Prehashed(digest_name.hash_algorithm),
            )
        else:
            signing_time = _check_attributes(attributes, content_digest)
            # The signature covers the attributes encoded as a SET, not as the [0] we read.
            signed = parser.emit(0, 1, 17, attributes.contents)
            key.verify(signature, signed, padding.PKCS1v15(), digest_name.hash_algorithm)
    except InvalidSignature:
        raise SignatureError("the signature does not match the content") from None
    return SignerIdentity(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        serial_number=certificate.serial_number,
        certificate_sha256=hashlib.sha256(
            certificate.public_bytes(serialization.Encoding.DER)
        ).hexdigest(),
        signing_time=signing_time,
    )


def _check_attributes(attributes: Any, content_digest: bytes) -> datetime | None:
    values: dict[str, Any] = {}
    for attribute in attributes:
        name = attribute["type"].native
        if name in values or len(attribute["values"]) != 1:
            raise SignatureError(f"the signed attribute {name} is malformed")
        values[name] = attribute["values"][0].native
    if values.get("content_type") != "data":
        raise SignatureError("the signed content type is not data")
    stated = values.get("message_digest")
    if not isinstance(stated, bytes) or not hmac.compare_digest(stated, content_digest):
        raise SignatureError("the signed digest does not match the content")
    moment = values.get("signing_time")
    return moment if isinstance(moment, datetime) else None
