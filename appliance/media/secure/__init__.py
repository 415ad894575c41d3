"""Secure DICOM Files (PS3.15 Annex D, Basic DICOM Media Security Profile): write and read.

A Secure DICOM File is a whole PS3.10 file (preamble, `DICM`, meta, data set) inside a CMS
EnvelopedData, DER-encoded; the encrypted content is Digested-data (default, SHA-256) or
Signed-data, never bare data. Writing:

    kek = PasswordKek.derive(password)                  # once per disc: PBKDF2 is slow
    writer = SecureFileWriter(EnvelopeSettings(passwords=(kek,), certificates=(cert,)))
    writer.encrypt_file(path, path)                     # fresh content key and IV per file

Non-DICOM content (the encrypted web bundle) is enveloped as plain id-data by
`PlainDataWriter`, for the same recipients.

Reading:

    reader = SecureFileReader(passwords=[password], keys=[KeyCredential(key, cert)])
    result = reader.decrypt_file(secure_path, plain_path)

Structures are built and parsed with asn1crypto, cryptography does the arithmetic; large
files stream in both directions (see `framing` and `der`).
"""

from appliance.media.secure.algorithms import (
    DEFAULT_CIPHER,
    DEFAULT_DIGEST,
    ContentCipher,
    DigestName,
)
from appliance.media.secure.errors import (
    CredentialError,
    DigestMismatchError,
    NotDicomContentError,
    NotSecureFileError,
    PasswordPolicyError,
    RecipientError,
    SecureMediaError,
    SecureWriteError,
    SignatureError,
    TamperedFileError,
    TruncatedFileError,
    UnsupportedSecureFileError,
    WrongKeyError,
    WrongPasswordError,
)
from appliance.media.secure.password import (
    DEFAULT_ITERATIONS,
    PasswordKek,
    PasswordPolicy,
    password_bytes,
)
from appliance.media.secure.plain import PlainDataWriter
from appliance.media.secure.reader import (
    DecryptResult,
    SecureFileReader,
    is_secure_dicom_file,
    is_secure_dicom_head,
)
from appliance.media.secure.recipients import KeyCredential, check_recipient_certificate
from appliance.media.secure.signing import Signer, SignerIdentity
from appliance.media.secure.writer import EncryptResult, EnvelopeSettings, SecureFileWriter

__all__ = [
    "DEFAULT_CIPHER",
    "DEFAULT_DIGEST",
    "DEFAULT_ITERATIONS",
    "ContentCipher",
    "CredentialError",
    "DecryptResult",
    "DigestMismatchError",
    "DigestName",
    "EncryptResult",
    "EnvelopeSettings",
    "KeyCredential",
    "NotDicomContentError",
    "NotSecureFileError",
    "PasswordKek",
    "PasswordPolicy",
    "PasswordPolicyError",
    "PlainDataWriter",
    "RecipientError",
    "SecureFileReader",
    "SecureFileWriter",
    "SecureMediaError",
    "SecureWriteError",
    "SignatureError",
    "Signer",
    "SignerIdentity",
    "TamperedFileError",
    "TruncatedFileError",
    "UnsupportedSecureFileError",
    "WrongKeyError",
    "WrongPasswordError",
    "check_recipient_certificate",
    "is_secure_dicom_file",
    "is_secure_dicom_head",
    "password_bytes",
]
