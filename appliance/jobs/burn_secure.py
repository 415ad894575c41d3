"""Encrypted discs in burn jobs: the keys a job uses, and how they are found.

The configuration names recipient certificates, a signing key and decryption keys; they are
loaded and checked when the daemon starts and when the burn handler is built, so a bad file
stops the daemon with the key's name instead of failing jobs later (see `secure_keys`). With a
signing key, discs carry Signed-data and their verification insists on our signature. The
passwords of a job come from the in-memory vault (`jobs.secrets`) by the handle in its params.
For each disc the password KEKs are derived afresh (one PBKDF2 run and one salt per disc,
shared by the disc's files).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import BinaryIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.config import KioskConfig
from appliance.errors import ConfigError, KioskError
from appliance.jobs.burn_request import BurnOptions, BurnRequest
from appliance.jobs.model import JobError
from appliance.jobs.secrets import SecretVault
from appliance.jobs.secure_keys import load_certificate, load_decryption_keys, load_signer
from appliance.media.secure import (
    ContentCipher,
    DecryptResult,
    EnvelopeSettings,
    KeyCredential,
    PasswordKek,
    PasswordPolicy,
    SecureFileReader,
    SecureFileWriter,
    SignatureError,
    Signer,
    check_recipient_certificate,
)

PASSWORD_NEEDED = (
    "password needed: the disc password is no longer in memory (the daemon restarted); "
    "submit the job again with its password"
)


@dataclass(frozen=True, slots=True)
class SecurityMaterial:
    """Certificates and keys from the configuration, loaded and checked."""

    recipients: dict[str, x509.Certificate]
    """Recipient certificates by their name in `security.recipients`."""
    signer: Signer | None
    """The signing key and certificate (Signed-data), or None (Digested-data, SHA-256)."""
    decryption_keys: tuple[KeyCredential, ...] = ()
    """Private keys that open discs encrypted to this kiosk (disc import)."""


def load_security(config: KioskConfig) -> SecurityMaterial:
    """Load every key file named in `[security]`; ConfigError naming the key when one is
    unreadable, not RSA, too short, out of its validity period or not matching its pair."""
    security = config.security
    recipients: dict[str, x509.Certificate] = {}
    for name, path in security.recipients.items():
        key = f"security.recipients.{name}"
        certificate = load_certificate(path, key)
        try:
            check_recipient_certificate(certificate)
        except KioskError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        recipients[name] = certificate
    return SecurityMaterial(recipients, load_signer(security), load_decryption_keys(security))


class JobSecurity:
    """The keys of one encrypted burn job (the passwords never leave this object)."""

    __slots__ = ("_passwords", "certificates", "cipher", "iterations", "policy", "signer")

    def __init__(
        self,
        *,
        passwords: tuple[str, ...],
        certificates: tuple[x509.Certificate, ...],
        signer: Signer | None,
        cipher: ContentCipher,
        iterations: int,
        policy: PasswordPolicy,
    ) -> None:
        self._passwords = passwords
        self.certificates = certificates
        self.signer = signer
        self.cipher = cipher
        self.iterations = iterations
        self.policy = policy

    def disc_writer(self) -> SecureFileWriter:
        """A writer for one disc: PBKDF2 runs here, once, with a fresh salt."""
        keks = tuple(
            PasswordKek.derive(
                password, iterations=self.iterations, cipher=self.cipher, policy=self.policy
            )
            for password in self._passwords
        )
        settings = EnvelopeSettings(
            passwords=keks,
            certificates=self.certificates,
            cipher=self.cipher,
            signer=self.signer,
            check_certificates=False,  # checked when the configuration was loaded
        )
        return SecureFileWriter(settings)

    def reader(self) -> SecureFileReader | None:
        """A reader that opens this job's discs, or None without a password (certificate
        recipients only: their private keys are at the receiving end)."""
        if not self._passwords:
            return None
        if self.signer is not None:
            return SignedByReader(self.signer.certificate, passwords=self._passwords)
        return SecureFileReader(passwords=self._passwords)

    def bundle_reader(self) -> SecureFileReader | None:
        """A reader that opens this job's encrypted web bundle (a ZIP archive, plain id-data:
        not DICOM, not signed), or None without a password."""
        if not self._passwords:
            return None
        return SecureFileReader(passwords=self._passwords, require_dicom=False)

    def __repr__(self) -> str:
        return (
            f"JobSecurity({len(self._passwords)} password(s), "
            f"{len(self.certificates)} certificate(s), {self.cipher.value})"
        )


class SignedByReader(SecureFileReader):
    """A reader that also demands Signed-data signed by one certificate (ours).

    The reader alone checks that a signature matches the certificate carried in the file;
    verifying our own disc should also prove the signer is us, and that no file went out
    with Digested-data only."""

    def __init__(self, certificate: x509.Certificate, *, passwords: tuple[str, ...]) -> None:
        """`certificate` is the signing certificate every file must be signed with."""
        super().__init__(passwords=passwords, signer_certificates=(certificate,))
        self._fingerprint = hashlib.sha256(
            certificate.public_bytes(serialization.Encoding.DER)
        ).hexdigest()

    def decrypt(
        self, source: BinaryIO, sink: BinaryIO | None, *, name: str = "the file"
    ) -> DecryptResult:
        """Decrypt and check as the base reader does; SignatureError unless our certificate
        signed the file."""
        result = super().decrypt(source, sink, name=name)
        if result.content_type != "signed-data":
            raise SignatureError(f"{name} is not signed (the job was to sign every file)")
        if not any(s.certificate_sha256 == self._fingerprint for s in result.signers):
            raise SignatureError(f"{name} is signed, but not with the configured signing key")
        return result


def job_security(
    config: KioskConfig,
    material: SecurityMaterial,
    options: BurnOptions,
    request: BurnRequest,
    vault: SecretVault,
) -> JobSecurity | None:
    """The keys of an encrypted job (None for a clear one); JobError "password needed" when
    the job's password is not in memory any more."""
    if not options.secure:
        return None
    passwords: tuple[str, ...] = ()
    if request.secret_ref is not None:
        secret = vault.claim(request.secret_ref)
        if secret is None:
            raise JobError(PASSWORD_NEEDED)
        passwords = secret.passwords
    security = config.security
    return JobSecurity(
        passwords=passwords,
        certificates=tuple(material.recipients[name] for name in options.recipients),
        signer=material.signer,
        cipher=ContentCipher(security.cipher),
        iterations=security.pbkdf2_iterations,
        policy=PasswordPolicy(security.password_min_length, security.password_min_classes),
    )
