"""Read the decrypted content of a Secure DICOM File: Digested-data, Signed-data or plain data.

The PS3.10 file inside is streamed to the caller's sink while every digest the content
announces is computed; the digest or the signatures are checked once the content has ended.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from asn1crypto import algos, cms, core  # type: ignore[import-untyped]
from cryptography import x509 as cx509

from appliance.media.secure.algorithms import DigestName
from appliance.media.secure.der import (
    CONTEXT,
    OCTET_STRING,
    SEQUENCE,
    SET,
    UNIVERSAL,
    BerReader,
)
from appliance.media.secure.errors import (
    DigestMismatchError,
    NotDicomContentError,
    TamperedFileError,
    UnsupportedSecureFileError,
)
from appliance.media.secure.signing import SignerIdentity, verify_signers

CHUNK = 1024 * 1024
DICM_END = 132
"""A PS3.10 file has `DICM` at bytes 128-131."""


@dataclass(slots=True)
class ContentSink:
    """Where the plaintext goes, with its size, SHA-256 and first bytes."""

    sink: BinaryIO | None
    size: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)
    head: bytearray = field(default_factory=bytearray)

    def write(self, data: bytes) -> None:
        """Take the next plaintext bytes."""
        if len(self.head) < DICM_END:
            self.head += data[: DICM_END - len(self.head)]
        self.sha256.update(data)
        self.size += len(data)
        if self.sink is not None:
            self.sink.write(data)

    def check_dicom(self, what: str) -> None:
        """Raise NotDicomContentError unless the content is a PS3.10 file."""
        if bytes(self.head[128:DICM_END]) != b"DICM":
            raise NotDicomContentError(f"{what} does not hold a DICOM file (no DICM prefix)")


@dataclass(frozen=True, slots=True)
class ContentReport:
    """What the content was and how its integrity was shown."""

    content_type: str
    """"digested-data", "signed-data" or "data"."""
    digest: DigestName | None
    signers: tuple[SignerIdentity, ...] = ()


def load_member(spec: Any, data: bytes, what: str) -> Any:
    """Parse one member with asn1crypto, completely (its lazy parsing would fail later)."""
    try:
        value = spec.load(data, strict=True)
        _ = value.native
    except ValueError:
        raise TamperedFileError(f"{what} is damaged: malformed {spec.__name__}") from None
    return value


def read_data(plain: BinaryIO, out: ContentSink) -> ContentReport:
    """Plain id-data content: the file itself, with nothing to check it against."""
    while chunk := plain.read(CHUNK):
        out.write(chunk)
    return ContentReport("data", None)


def _read_encapsulated(
    reader: BerReader, out: ContentSink, hashes: dict[DigestName, Any], what: str
) -> None:
    encap = reader.expect(UNIVERSAL, SEQUENCE, "encapsulated content")
    start = reader.position
    content_type = load_member(cms.ContentType, reader.read_element(), what).native
    if content_type != "data":
        raise UnsupportedSecureFileError(f"{what} encapsulates {content_type}, not a file")
    explicit = reader.read_header()
    if not explicit.is_a(CONTEXT, 0):
        raise UnsupportedSecureFileError(f"{what} has detached content (not on the disc)")
    explicit_start = reader.position
    octets = reader.expect(UNIVERSAL, OCTET_STRING, "content octets")
    for chunk in reader.iter_octets(octets, CHUNK):
        for running in hashes.values():
            running.update(chunk)
        out.write(chunk)
    reader.skip_to_end(explicit, explicit_start)
    reader.skip_to_end(encap, start)


def read_digested(reader: BerReader, out: ContentSink, what: str) -> ContentReport:
    """DigestedData: stream the content, then compare the digest that follows it."""
    outer = reader.expect(UNIVERSAL, SEQUENCE, "DigestedData")
    start = reader.position
    load_member(core.Integer, reader.read_element(), what)
    algorithm = load_member(algos.DigestAlgorithm, reader.read_element(), what)
    digest = DigestName.from_asn1(algorithm["algorithm"].native)
    running = {digest: digest.new()}
    _read_encapsulated(reader, out, running, what)
    stated = load_member(core.OctetString, reader.read_element(), what).native
    reader.skip_to_end(outer, start)
    if not hmac.compare_digest(stated, running[digest].digest()):
        raise DigestMismatchError(f"{what}: the content does not match its {digest.name} digest")
    return ContentReport("digested-data", digest)


def read_signed(
    reader: BerReader,
    out: ContentSink,
    what: str,
    extra_certificates: tuple[cx509.Certificate, ...],
) -> ContentReport:
    """SignedData: stream the content, then check every signer's signature."""
    outer = reader.expect(UNIVERSAL, SEQUENCE, "SignedData")
    start = reader.position
    load_member(core.Integer, reader.read_element(), what)
    listed = load_member(cms.DigestAlgorithms, reader.read_element(), what)
    names = {DigestName.from_asn1(a["algorithm"].native) for a in listed}
    hashes = {name: name.new() for name in names}
    _read_encapsulated(reader, out, hashes, what)
    certificates = list(extra_certificates)
    header = reader.peek_header()
    if header.is_a(CONTEXT, 0):
        for choice in _load_certificates(reader.read_element(), what):
            if choice.name == "certificate":
                certificates.append(cx509.load_der_x509_certificate(choice.chosen.dump()))
        header = reader.peek_header()
    if header.is_a(CONTEXT, 1):  # CRLs: not used to check a disc's signature
        reader.read_element()
        header = reader.peek_header()
    if not header.is_a(UNIVERSAL, SET):
        raise TamperedFileError(f"{what} is damaged: signer infos expected")
    signer_infos = load_member(cms.SignerInfos, reader.read_element(), what)
    reader.skip_to_end(outer, start)
    digests = {name: h.digest() for name, h in hashes.items()}
    signers = verify_signers(signer_infos, certificates, digests)
    first = DigestName.from_asn1(signer_infos[0]["digest_algorithm"]["algorithm"].native)
    return ContentReport("signed-data", first, tuple(signers))


def _load_certificates(data: bytes, what: str) -> Any:
    load: Callable[..., Any] = cms.CertificateSet.load
    try:
        value = load(data, strict=True, implicit=0)
        _ = value.native
    except ValueError:
        raise TamperedFileError(f"{what} is damaged: malformed certificates") from None
    return value
