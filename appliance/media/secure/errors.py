"""Errors of Secure DICOM Files (PS3.15 Annex D): writing, reading and passwords.

Every message is for an operator and never contains a password, a key or patient data; the
reader names the failing file by what the caller knows (its path), not by anything inside it.
"""

from __future__ import annotations

from appliance.media.errors import MediaError


class SecureMediaError(MediaError):
    """A Secure DICOM File could not be written or read."""


class PasswordPolicyError(SecureMediaError):
    """A password is outside the DICOM default repertoire or weaker than the policy asks."""


class RecipientError(SecureMediaError):
    """A recipient (password or certificate) cannot be used to encrypt a file."""


class SecureWriteError(SecureMediaError):
    """The source could not be read or the encrypted file could not be written."""


class NotSecureFileError(SecureMediaError):
    """The file is not a CMS EnvelopedData, so not a Secure DICOM File."""


class UnsupportedSecureFileError(SecureMediaError):
    """A Secure DICOM File uses an algorithm or structure outside what we read."""


class CredentialError(SecureMediaError):
    """The password or key given does not open the file."""


class WrongPasswordError(CredentialError):
    """No password recipient of the file opens with the given password(s)."""


class WrongKeyError(CredentialError):
    """No key-transport recipient of the file opens with the given private key(s)."""


class TamperedFileError(SecureMediaError):
    """The file was opened but its content is damaged: changed, truncated or malformed."""


class TruncatedFileError(TamperedFileError):
    """The file ends before its structure does."""


class DigestMismatchError(TamperedFileError):
    """The digest inside the file does not match its content."""


class SignatureError(TamperedFileError):
    """The signature inside the file does not verify against its content."""


class NotDicomContentError(TamperedFileError):
    """The decrypted content is not a DICOM PS3.10 file (no DICM prefix at offset 128)."""
