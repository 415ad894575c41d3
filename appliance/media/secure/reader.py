"""Read Secure DICOM Files: detect them, open them with a password or a private key, check them.

Any conformant file is read, not only ours: BER with indefinite lengths and chunked content
(`openssl cms -stream`), AES-128/192/256-CBC and Triple-DES, password (PBKDF2 + RFC 3211) and
RSA recipients, Digested-data and Signed-data content, and the plain id-data content other
writers produce (accepted with a warning: nothing then shows the content is intact).

The plaintext streams to a sink while it is decrypted; it is only known good once `decrypt`
returns. `decrypt_file` therefore writes to a temporary name and renames only after every
check passed, so nothing half-decrypted or unverified is ever left where a caller looks.

Errors say what went wrong without the password: `WrongPasswordError` / `WrongKeyError`, and
`TamperedFileError` (with `TruncatedFileError`, `DigestMismatchError`, `SignatureError`) when
the key was right but the file is not what was written.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from asn1crypto import algos, cms, core  # type: ignore[import-untyped]
from cryptography import x509 as cx509

from appliance.media.secure.algorithms import ContentCipher, DigestName
from appliance.media.secure.decrypting import PlaintextStream
from appliance.media.secure.der import (
    CONTEXT,
    OBJECT_IDENTIFIER,
    SEQUENCE,
    SET,
    UNIVERSAL,
    BerReader,
    Header,
)
from appliance.media.secure.errors import (
    NotSecureFileError,
    SecureMediaError,
    TamperedFileError,
    TruncatedFileError,
    UnsupportedSecureFileError,
    WrongKeyError,
)
from appliance.media.secure.inner import (
    CHUNK,
    ContentReport,
    ContentSink,
    load_member,
    read_data,
    read_digested,
    read_signed,
)
from appliance.media.secure.password import password_bytes
from appliance.media.secure.recipients import ContentKey, KekCache, KeyCredential, open_content_key
from appliance.media.secure.signing import SignerIdentity

ENVELOPED_DATA_OID: Final = "1.2.840.113549.1.7.3"
NO_INTEGRITY_WARNING: Final = (
    "the file holds plain data (no digest, no signature): its integrity cannot be checked"
)


@dataclass(frozen=True, slots=True)
class DecryptResult:
    """What a Secure DICOM File held and how it was protected."""

    content_type: str
    """"digested-data", "signed-data" or "data" (the last only from other writers)."""
    cipher: ContentCipher
    digest: DigestName | None
    """The content digest that was checked (None for plain data)."""
    opened_with: str
    """"password" or "certificate"."""
    signers: tuple[SignerIdentity, ...]
    """For Signed-data: who signed (signatures verified; trust is the caller's call)."""
    warnings: tuple[str, ...]
    size: int
    """Bytes of the decrypted PS3.10 file."""
    sha256: str
    """Hex SHA-256 of the decrypted PS3.10 file."""


def is_secure_dicom_head(head: bytes) -> bool:
    """True if `head` (the first bytes of a file, 32 are plenty) starts a CMS EnvelopedData."""
    reader = BerReader(io.BytesIO(head))
    try:
        outer = reader.read_header()
        if not outer.is_a(UNIVERSAL, SEQUENCE) or not outer.constructed:
            return False
        oid = reader.read_header()
        if not oid.is_a(UNIVERSAL, OBJECT_IDENTIFIER):
            return False
        value = core.ObjectIdentifier.load(reader.read_element(oid))
        return bool(value.dotted == ENVELOPED_DATA_OID)
    except (SecureMediaError, ValueError):
        return False


def is_secure_dicom_file(path: Path) -> bool:
    """True if the file starts like a Secure DICOM File (reads 64 bytes)."""
    with path.open("rb") as fh:
        return is_secure_dicom_head(fh.read(64))


@dataclass(frozen=True, slots=True)
class _Envelope:
    """The outer structure read up to the ciphertext."""

    containers: list[tuple[Header, int]]
    """Open containers with where their contents start, outermost first (closed later)."""
    cipher: ContentCipher
    iv: bytes
    content_type: str
    key: ContentKey


class SecureFileReader:
    """Opens Secure DICOM Files with the given passwords and/or private keys.

    Derived password keys are kept for the life of the reader, so the files of one disc cost
    one PBKDF2 run. Reuse one reader per disc or job; it is not meant for several threads.
    """

    def __init__(
        self,
        *,
        passwords: Sequence[str] = (),
        keys: Sequence[KeyCredential] = (),
        signer_certificates: Sequence[cx509.Certificate] = (),
        require_dicom: bool = True,
    ) -> None:
        """`signer_certificates` help check signatures of files that do not carry their
        signer's certificate; `require_dicom` refuses content that is not a PS3.10 file."""
        self._passwords = [password_bytes(p) for p in passwords]
        self._keys = list(keys)
        self._signer_certificates = tuple(signer_certificates)
        self._require_dicom = require_dicom
        self._cache = KekCache()

    def decrypt(
        self, source: BinaryIO, sink: BinaryIO | None, *, name: str = "the file"
    ) -> DecryptResult:
        """Decrypt the Secure DICOM File read from `source`, writing the PS3.10 file to `sink`
        (None: only check it). `name` is used in error messages.

        What reached `sink` is only good when this returns; on an error, discard it.
        """
        outer = BerReader(source, what=name)
        envelope = self._open_envelope(outer, name)
        cipher, key = envelope.cipher, envelope.key
        header = outer.read_header()
        if not header.is_a(CONTEXT, 0):
            raise UnsupportedSecureFileError(f"{name} has no encrypted content inside")
        spec = cipher.spec
        plain = io.BufferedReader(
            PlaintextStream(
                outer.iter_octets(header, CHUNK),
                spec.decryptor(key.key, envelope.iv),
                spec.block_size,
                name,
            ),
            CHUNK,
        )
        out = ContentSink(sink)
        report = self._read_content(plain, out, envelope.content_type, key, name)
        for container, start in reversed(envelope.containers):
            outer.skip_to_end(container, start)
        outer.expect_end()
        warnings = (NO_INTEGRITY_WARNING,) if report.content_type == "data" else ()
        return DecryptResult(
            content_type=report.content_type,
            cipher=cipher,
            digest=report.digest,
            opened_with=key.via,
            signers=report.signers,
            warnings=warnings,
            size=out.size,
            sha256=out.sha256.hexdigest(),
        )

    def _open_envelope(self, outer: BerReader, name: str) -> _Envelope:
        """Read up to the encrypted content and recover the content key."""
        try:
            info = outer.read_header()
            if not info.is_a(UNIVERSAL, SEQUENCE) or not info.constructed:
                raise NotSecureFileError(f"{name} is not a Secure DICOM File")
            info_start = outer.position
            oid = outer.read_header()
            if not oid.is_a(UNIVERSAL, OBJECT_IDENTIFIER):
                raise NotSecureFileError(f"{name} is not a Secure DICOM File")
            content_type = core.ObjectIdentifier.load(outer.read_element(oid)).dotted
        except (TamperedFileError, ValueError):
            raise NotSecureFileError(f"{name} is not a Secure DICOM File") from None
        if content_type != ENVELOPED_DATA_OID:
            raise NotSecureFileError(f"{name} is CMS but not enveloped (encrypted) data")
        explicit = outer.expect(CONTEXT, 0, "enveloped data")
        explicit_start = outer.position
        enveloped = outer.expect(UNIVERSAL, SEQUENCE, "enveloped data")
        enveloped_start = outer.position
        load_member(core.Integer, outer.read_element(), name)
        if outer.peek_header().is_a(CONTEXT, 0):  # originatorInfo: nothing we need
            outer.read_element()
        recipients_header = outer.expect(UNIVERSAL, SET, "recipient infos")
        recipients = load_member(cms.RecipientInfos, outer.read_element(recipients_header), name)
        eci = outer.expect(UNIVERSAL, SEQUENCE, "encrypted content info")
        eci_start = outer.position
        inner_type = load_member(cms.ContentType, outer.read_element(), name).native
        algorithm = load_member(algos.EncryptionAlgorithm, outer.read_element(), name)
        cipher = ContentCipher.from_asn1(algorithm["algorithm"].native)
        iv = algorithm["parameters"].native
        if not isinstance(iv, bytes) or len(iv) != cipher.spec.block_size:
            raise TamperedFileError(f"{name} is damaged: the content IV is malformed")
        try:
            key = open_content_key(
                recipients, cipher, passwords=self._passwords, keys=self._keys, cache=self._cache
            )
        except (ValueError, KeyError, TypeError):  # a recipient info asn1crypto cannot parse
            raise TamperedFileError(f"{name} is damaged: malformed recipient info") from None
        return _Envelope(
            [
                (info, info_start),
                (explicit, explicit_start),
                (enveloped, enveloped_start),
                (eci, eci_start),
            ],
            cipher,
            iv,
            inner_type,
            key,
        )

    def _read_content(
        self, plain: BinaryIO, out: ContentSink, content_type: str, key: ContentKey, name: str
    ) -> ContentReport:
        what = f"the decrypted content of {name}"
        inner = BerReader(plain, what=what, truncated=TamperedFileError)
        try:
            if content_type == "digested_data":
                report = read_digested(inner, out, what)
            elif content_type == "signed_data":
                report = read_signed(inner, out, what, self._signer_certificates)
            elif content_type == "data":
                report = read_data(plain, out)
            else:
                raise UnsupportedSecureFileError(f"{name} encrypts {content_type} content")
            inner.expect_end()
            if self._require_dicom:
                out.check_dicom(what)
        except TruncatedFileError:
            raise  # the file itself ended early, whatever the key
        except (TamperedFileError, ValueError) as exc:
            if not key.confirmed:
                # An unmatched RSA recipient yields a random key for a wrong private key.
                raise WrongKeyError(f"the private key does not open {name}") from None
            if isinstance(exc, TamperedFileError):
                raise
            raise TamperedFileError(f"{name} is damaged ({type(exc).__name__})") from None
        return report

    def decrypt_file(self, source: Path, target: Path) -> DecryptResult:
        """Decrypt `source` into `target`; `target` appears only when every check passed."""
        partial = target.with_name(f".{target.name}.decrypt-partial")
        try:
            with source.open("rb") as src, partial.open("wb") as dst:
                result = self.decrypt(src, dst, name=source.name)
            partial.replace(target)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
        return result
