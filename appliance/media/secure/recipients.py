"""Key-transport recipients (RSA certificates) and opening a file's content key.

Writing: an RSA certificate becomes a KeyTransRecipientInfo version 0, identified by
issuerAndSerialNumber, with the content key encrypted by RSAES-PKCS1-v1_5 (RFC 3370 4.2.1), as
PS3.15 D.1.1 asks. Reading: the content key is recovered from whichever recipient the caller
has a credential for (passwords first, then private keys).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asn1crypto import algos, cms, x509  # type: ignore[import-untyped]
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from appliance.media.secure.algorithms import ContentCipher, DigestName
from appliance.media.secure.errors import (
    RecipientError,
    UnsupportedSecureFileError,
    WrongKeyError,
    WrongPasswordError,
)
from appliance.media.secure.keywrap import unwrap_key
from appliance.media.secure.password import MAX_ITERATIONS, PWRI_KEK_OID, derive_kek

MIN_RSA_BITS = 2048


def check_recipient_certificate(
    certificate: cx509.Certificate, *, now: datetime | None = None
) -> None:
    """Raise RecipientError unless the certificate can receive files: an RSA key of at least
    2048 bits, inside its validity period, and (if it says) allowed to encipher keys."""
    key = certificate.public_key()
    subject = certificate.subject.rfc4514_string()[:120]
    if not isinstance(key, rsa.RSAPublicKey):
        raise RecipientError(f"certificate {subject}: only RSA keys can be recipients")
    if key.key_size < MIN_RSA_BITS:
        raise RecipientError(f"certificate {subject}: RSA key shorter than {MIN_RSA_BITS} bits")
    moment = now or datetime.now(UTC)
    if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
        raise RecipientError(f"certificate {subject} is not valid now (expired or not yet valid)")
    try:
        usage = certificate.extensions.get_extension_for_class(cx509.KeyUsage).value
    except cx509.ExtensionNotFound:
        return
    if not usage.key_encipherment:
        raise RecipientError(f"certificate {subject} does not allow key encipherment")


def asn1_certificate(certificate: cx509.Certificate) -> Any:
    """The asn1crypto view of a `cryptography` certificate (same DER)."""
    return x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def issuer_and_serial(certificate: cx509.Certificate) -> Any:
    """The asn1crypto IssuerAndSerialNumber of a certificate (its exact issuer encoding)."""
    cert = asn1_certificate(certificate)
    return cms.IssuerAndSerialNumber({"issuer": cert.issuer, "serial_number": cert.serial_number})


def certificate_recipient(certificate: cx509.Certificate, cek: bytes) -> Any:
    """A KeyTransRecipientInfo (asn1crypto RecipientInfo) giving `cek` to the certificate."""
    return certificate_recipient_for(certificate, encrypt_for(certificate, cek))


def encrypt_for(certificate: cx509.Certificate, cek: bytes) -> bytes:
    """`cek` encrypted with the certificate's RSA key (RSAES-PKCS1-v1_5): always as many bytes
    as the modulus (`encrypted_key_size`)."""
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise RecipientError("only RSA certificates can be key-transport recipients")
    return key.encrypt(cek, padding.PKCS1v15())


def encrypted_key_size(certificate: cx509.Certificate) -> int:
    """Bytes of every key `encrypt_for` encrypts for this certificate (RFC 8017 7.2.1: k)."""
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise RecipientError("only RSA certificates can be key-transport recipients")
    return (key.key_size + 7) // 8


def certificate_recipient_for(certificate: cx509.Certificate, encrypted_key: bytes) -> Any:
    """The KeyTransRecipientInfo carrying a key already encrypted for the certificate."""
    ktri = cms.KeyTransRecipientInfo(
        {
            "version": "v0",
            "rid": cms.RecipientIdentifier(
                name="issuer_and_serial_number", value=issuer_and_serial(certificate)
            ),
            "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15"},
            "encrypted_key": encrypted_key,
        }
    )
    return cms.RecipientInfo(name="ktri", value=ktri)


# -- reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyCredential:
    """A private key that may open files, with its certificate to find its recipient.

    Without a certificate every RSA recipient is tried (as `openssl cms -decrypt` does without
    `-recip`); a wrong key is then only seen when the content fails to decrypt.
    """

    private_key: rsa.RSAPrivateKey
    certificate: cx509.Certificate | None = None

    def __post_init__(self) -> None:
        if self.certificate is not None:
            public = self.certificate.public_key()
            if not isinstance(public, rsa.RSAPublicKey) or (
                public.public_numbers() != self.private_key.public_key().public_numbers()
            ):
                raise RecipientError("the private key does not belong to the certificate")


@dataclass(frozen=True, slots=True)
class ContentKey:
    """A recovered content-encryption key."""

    key: bytes
    confirmed: bool
    """True when a check proved the key right (RFC 3211 check bytes, or an RSA recipient
    matched by certificate): a later failure then means a damaged file, not a wrong key."""
    via: str
    """"password" or "certificate"."""


@dataclass(slots=True)
class KekCache:
    """Derived password KEKs by (password number, salt, iterations, PRF, length): one PBKDF2
    run per disc, since the files of a disc share their salt."""

    entries: dict[tuple[int, bytes, int, str, int], bytes] = field(default_factory=dict)

    def get(
        self, index: int, password: bytes, salt: bytes, iterations: int, prf: DigestName, size: int
    ) -> bytes:
        """The KEK, derived on first use."""
        key = (index, salt, iterations, prf.value, size)
        if key not in self.entries:
            self.entries[key] = derive_kek(password, salt, iterations, prf, size)
        return self.entries[key]


def open_content_key(
    recipient_infos: Any,
    cipher: ContentCipher,
    *,
    passwords: Sequence[bytes],
    keys: Sequence[KeyCredential],
    cache: KekCache,
) -> ContentKey:
    """The content key from the first recipient a credential opens.

    Raises WrongPasswordError / WrongKeyError (which one follows the credentials given) when
    none opens, UnsupportedSecureFileError when the only recipients a credential could use are
    of a kind we do not read (e.g. a key derivation other than PBKDF2).
    """
    infos = list(recipient_infos)
    size = cipher.spec.key_size
    pwris = [ri.chosen for ri in infos if ri.name == "pwri"]
    ktris = [ri.chosen for ri in infos if ri.name == "ktri"]
    unsupported: list[str] = []
    for index, password in enumerate(passwords):
        for pwri in pwris:
            try:
                key = _open_pwri(pwri, index, password, cache)
            except UnsupportedSecureFileError as exc:
                unsupported.append(str(exc))
                continue
            if key is not None and len(key) == size:
                return ContentKey(key, confirmed=True, via="password")
    for credential in keys:
        try:
            found = _open_ktri(ktris, credential, size)
        except UnsupportedSecureFileError as exc:
            unsupported.append(str(exc))
            continue
        if found is not None:
            return found
    if unsupported and len(unsupported) == len(pwris) * len(passwords) + len(keys):
        raise UnsupportedSecureFileError(unsupported[0])
    if passwords and not keys:
        if not pwris:
            raise WrongPasswordError("the file is not encrypted for a password")
        raise WrongPasswordError("the password does not open the file")
    if keys and not passwords:
        if not ktris:
            raise WrongKeyError("the file is not encrypted for a certificate")
        raise WrongKeyError("the private key does not open the file")
    if not passwords and not keys:
        raise WrongPasswordError("a password or a private key is needed to open the file")
    raise WrongPasswordError("neither the password nor the private key opens the file")


def _open_pwri(pwri: Any, index: int, password: bytes, cache: KekCache) -> bytes | None:
    kdf = pwri["key_derivation_algorithm"]
    kea = pwri["key_encryption_algorithm"]
    if kdf.native is None or kdf["algorithm"].native != "pbkdf2":
        raise UnsupportedSecureFileError(
            "a password recipient uses a key derivation other than PBKDF2"
        )
    if kea["algorithm"].dotted != PWRI_KEK_OID:
        raise UnsupportedSecureFileError("a password recipient uses a key wrap other than RFC 3211")
    params = kdf["parameters"]
    if params["salt"].name != "specified":
        raise UnsupportedSecureFileError("a password recipient takes its salt from elsewhere")
    inner = kea["parameters"].parse(algos.EncryptionAlgorithm)
    kek_cipher = ContentCipher.from_asn1(inner["algorithm"].native)
    iterations = int(params["iteration_count"].native)
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise UnsupportedSecureFileError(
            f"a password recipient asks for {iterations} PBKDF2 rounds"
        )
    prf = DigestName.from_asn1(params["prf"]["algorithm"].native)
    spec = kek_cipher.spec
    length = params["key_length"].native
    if length is not None and length != spec.key_size:
        raise UnsupportedSecureFileError(
            "a password recipient's key length does not fit its cipher"
        )
    iv = inner["parameters"].native
    if not isinstance(iv, bytes) or len(iv) != spec.block_size:
        raise UnsupportedSecureFileError("a password recipient's key-encryption IV is malformed")
    kek = cache.get(index, password, params["salt"].chosen.native, iterations, prf, spec.key_size)
    return unwrap_key(spec, kek, iv, pwri["encrypted_key"].native)


def _subject_key_identifier(certificate: cx509.Certificate) -> bytes | None:
    try:
        ext = certificate.extensions.get_extension_for_class(cx509.SubjectKeyIdentifier)
    except cx509.ExtensionNotFound:
        return None
    return ext.value.digest


def _open_ktri(ktris: list[Any], credential: KeyCredential, size: int) -> ContentKey | None:
    matched: Callable[[Any], bool]
    if credential.certificate is not None:
        wanted = issuer_and_serial(credential.certificate).dump()
        ski = _subject_key_identifier(credential.certificate)

        def matched(ktri: Any) -> bool:
            rid = ktri["rid"]
            if rid.name == "issuer_and_serial_number":
                return bool(rid.chosen.dump() == wanted)
            return ski is not None and rid.chosen.native == ski

    else:

        def matched(ktri: Any) -> bool:
            return True

    unsupported = False
    for ktri in ktris:
        if not matched(ktri):
            continue
        if ktri["key_encryption_algorithm"]["algorithm"].native != "rsaes_pkcs1v15":
            unsupported = True  # RSA-OAEP: outside the DICOM profile
            continue
        try:
            key = credential.private_key.decrypt(ktri["encrypted_key"].native, padding.PKCS1v15())
        except ValueError:
            continue
        if len(key) != size:
            # OpenSSL's implicit rejection returns a random key for a wrong private key.
            continue
        return ContentKey(key, confirmed=credential.certificate is not None, via="certificate")
    if unsupported:
        raise UnsupportedSecureFileError(
            "the RSA recipient uses a key encryption other than PKCS#1 v1.5"
        )
    return None
