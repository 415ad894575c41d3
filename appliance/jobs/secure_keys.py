"""Key files of encrypted discs named in `[security]`: the signing key and the decryption keys.

Everything is loaded and checked when the daemon starts; every problem becomes a ConfigError
whose single line names the configuration key, so a bad file stops kioskd at once instead of
failing burn or import jobs later. Private keys must be unencrypted PEM (the daemon runs
unattended; file permissions protect them) and RSA, the only key type PS3.15 Annex D uses.

- `load_signer`: the key and certificate discs are signed with (Signed-data), or None.
- `load_decryption_keys` / `decryption_keys`: the private keys that open discs other sites
  encrypted to this kiosk, for the import job's `SecureFileReader(keys=...)`.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from appliance.config import KioskConfig
from appliance.config.schema import SecurityConfig
from appliance.errors import ConfigError
from appliance.media.secure import KeyCredential, SecureFileReader, Signer
from appliance.media.secure.recipients import MIN_RSA_BITS

log = logging.getLogger(__name__)


def read_key_file(path: Path, key: str) -> bytes:
    """The bytes of a configured file; ConfigError naming `key` when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path} ({exc.strerror})") from None


def load_certificate(path: Path, key: str) -> x509.Certificate:
    """A PEM certificate; ConfigError naming `key` when unreadable or not a certificate."""
    try:
        return x509.load_pem_x509_certificate(read_key_file(path, key))
    except ValueError:
        raise ConfigError(f"{key}: {path} is not a PEM certificate") from None


def load_private_key(path: Path, key: str) -> rsa.RSAPrivateKey:
    """An unencrypted PEM RSA private key; ConfigError naming `key` otherwise."""
    data = read_key_file(path, key)
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # cryptography's way of saying the PEM is password-protected.
        raise ConfigError(
            f"{key}: {path} is an encrypted private key; the daemon needs it unencrypted "
            "(protect it with file permissions)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"{key}: {path} is not a PEM private key") from None
    if not isinstance(private, rsa.RSAPrivateKey):
        kind = type(private).__name__.removeprefix("_").removesuffix("PrivateKey") or "other"
        raise ConfigError(
            f"{key}: {path} holds a key of type {kind}; Secure DICOM media use RSA keys only"
        )
    _warn_if_shared(path, key)
    return private


def _warn_if_shared(path: Path, key: str) -> None:
    # Not an error: the daemon's user may be in a group meant to read it. But a private key
    # that any local user can read is worth a line in the log at every start.
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s: %s can be read by other users; chmod 600 it", key, path)


def _subject(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()[:120]


def check_signing_certificate(
    certificate: x509.Certificate, key: str, *, now: datetime | None = None
) -> None:
    """ConfigError naming `key` unless the certificate can sign: an RSA key of at least
    MIN_RSA_BITS (as for recipients), inside its validity period, and, when it has a key
    usage extension, allowed to make digital signatures."""
    public = certificate.public_key()
    subject = _subject(certificate)
    if not isinstance(public, rsa.RSAPublicKey):
        raise ConfigError(f"{key}: certificate {subject} is not for an RSA key")
    if public.key_size < MIN_RSA_BITS:
        raise ConfigError(f"{key}: certificate {subject} has an RSA key under {MIN_RSA_BITS} bits")
    moment = now or datetime.now(UTC)
    if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
        raise ConfigError(
            f"{key}: certificate {subject} is not valid now (valid "
            f"{certificate.not_valid_before_utc:%Y-%m-%d} to "
            f"{certificate.not_valid_after_utc:%Y-%m-%d})"
        )
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not (usage.digital_signature or usage.content_commitment):
        raise ConfigError(f"{key}: certificate {subject} does not allow digital signatures")


def load_signer(security: SecurityConfig) -> Signer | None:
    """The configured signer (both files loaded and checked), or None when none is set."""
    if security.signing_key is None or security.signing_certificate is None:
        # The schema accepts both or neither, so this is "neither".
        return None
    private = load_private_key(security.signing_key, "security.signing_key")
    cert_key = "security.signing_certificate"
    certificate = load_certificate(security.signing_certificate, cert_key)
    check_signing_certificate(certificate, cert_key)
    if private.public_key().public_numbers() != _rsa_numbers(certificate):
        raise ConfigError(
            f"security.signing_key: {security.signing_key} does not belong to the certificate "
            f"{security.signing_certificate}"
        )
    return Signer(private, certificate)


def _rsa_numbers(certificate: x509.Certificate) -> rsa.RSAPublicNumbers | None:
    public = certificate.public_key()
    return public.public_numbers() if isinstance(public, rsa.RSAPublicKey) else None


def load_decryption_keys(
    security: SecurityConfig, *, now: datetime | None = None
) -> tuple[KeyCredential, ...]:
    """Every configured decryption key with its certificate, in configuration order.

    An expired certificate is accepted with a warning: discs encrypted to it while it was
    valid must still open, and its only use here is to pick the file's recipient."""
    credentials: list[KeyCredential] = []
    moment = now or datetime.now(UTC)
    for name, entry in security.decryption_keys.items():
        base = f"security.decryption_keys.{name}"
        private = load_private_key(entry.key, f"{base}.key")
        certificate: x509.Certificate | None = None
        if entry.certificate is not None:
            certificate = load_certificate(entry.certificate, f"{base}.certificate")
            if private.public_key().public_numbers() != _rsa_numbers(certificate):
                raise ConfigError(
                    f"{base}.key: {entry.key} does not belong to the certificate "
                    f"{entry.certificate}"
                )
            if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
                log.warning(
                    "%s.certificate: %s is outside its validity period; it still opens discs "
                    "encrypted to it, but other sites should use its successor",
                    base,
                    entry.certificate,
                )
        credentials.append(KeyCredential(private, certificate))
    return tuple(credentials)


def decryption_keys(config: KioskConfig) -> list[KeyCredential]:
    """The private keys that open discs encrypted to this kiosk (ConfigError naming the key
    when a file went bad since the daemon started)."""
    return list(load_decryption_keys(config.security))


def import_reader(config: KioskConfig, passwords: Sequence[str]) -> SecureFileReader | None:
    """The reader a disc import opens Secure DICOM Files with: the job's passwords and the
    configured decryption keys; None when there is neither (secure files are then refused
    as needing a password)."""
    keys = decryption_keys(config)
    if not passwords and not keys:
        return None
    return SecureFileReader(passwords=passwords, keys=keys)
