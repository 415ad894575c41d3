"""Encrypted discs in burn jobs: the keys a job uses, and how they are found.

The configuration names recipient certificates; they are loaded
and checked once when the burn handler is built (daemon start), so a bad file stops the daemon
with the key's name instead of failing jobs later. The passwords of a job come from the
in-memory vault (`jobs.secrets`) by the handle in its params. For each disc the password KEKs
are derived afresh (one PBKDF2 run and one salt per disc, shared by the disc's files).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from appliance.config import KioskConfig
from appliance.errors import ConfigError, KioskError
from appliance.jobs.burn_request import BurnOptions, BurnRequest
from appliance.jobs.model import JobError
from appliance.jobs.secrets import SecretVault
from appliance.media.secure import (
    ContentCipher,
    EnvelopeSettings,
    PasswordKek,
    PasswordPolicy,
    SecureFileReader,
    SecureFileWriter,
    Signer,
    check_recipient_certificate,
)

PASSWORD_NEEDED = (
    "password needed: the disc password is no longer in memory (the daemon restarted); "
    "submit the job again with its password"
)


@dataclass(frozen=True, slots=True)
class SecurityMaterial:
    """Certificates and signing key from the configuration, loaded and checked."""

    recipients: dict[str, x509.Certificate]
    signer: Signer | None


def _read(path: Path, key: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path} ({exc.strerror})") from None


def load_security(config: KioskConfig) -> SecurityMaterial:
    """Load every configured recipient certificate; ConfigError naming the key when one is
    unreadable, not RSA, too short or out of its validity period."""
    security = config.security
    recipients: dict[str, x509.Certificate] = {}
    for name, path in security.recipients.items():
        key = f"security.recipients.{name}"
        try:
            certificate = x509.load_pem_x509_certificate(_read(path, key))
            check_recipient_certificate(certificate)
        except ValueError:
            raise ConfigError(f"{key}: {path} is not a PEM certificate") from None
        except KioskError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        recipients[name] = certificate
    # Signed-data needs a signing key in the configuration; until it has one, discs carry
    # Digested-data (SHA-256), which the profile allows.
    signer = None
    return SecurityMaterial(recipients, signer)


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
        signer_certificates = (self.signer.certificate,) if self.signer else ()
        return SecureFileReader(passwords=self._passwords, signer_certificates=signer_certificates)

    def __repr__(self) -> str:
        return (
            f"JobSecurity({len(self._passwords)} password(s), "
            f"{len(self.certificates)} certificate(s), {self.cipher.value})"
        )


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
