"""Secure DICOM Files (PS3.15 Annex D) against tools we did not write.

Our files are opened by `openssl cms -decrypt` (password and RSA recipients), their inner
Digested-data checked by `openssl cms -digest_verify` (Signed-data by `-verify -noverify`), and
the plaintext compared byte for byte with the PS3.10 file and parsed by DCMTK's dcmdump.
Files written by `openssl cms -encrypt` (AES-128/192/256, Triple-DES; password and RSA; DER and
streamed BER) are opened by our reader. Negative cases give the documented errors.
"""

from __future__ import annotations

import datetime
import io
import os
import subprocess
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import algos, cms, core, parser  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pydicom.data import get_testdata_file

from appliance.media.secure import (
    ContentCipher,
    DigestMismatchError,
    EnvelopeSettings,
    KeyCredential,
    NotDicomContentError,
    NotSecureFileError,
    PasswordKek,
    PasswordPolicy,
    PasswordPolicyError,
    RecipientError,
    SecureFileReader,
    SecureFileWriter,
    SecureMediaError,
    SignatureError,
    Signer,
    TamperedFileError,
    TruncatedFileError,
    UnsupportedSecureFileError,
    WrongKeyError,
    WrongPasswordError,
    is_secure_dicom_file,
)
from appliance.media.secure import password as password_module
from appliance.media.secure import recipients as recipients_module
from appliance.media.secure.der import BerReader, definite_header
from appliance.media.secure.inner import ContentSink, read_digested, read_signed
from tests.peers.data import make_instance
from tests.peers.discs import dcmdump_ok

pytestmark = pytest.mark.timeout(120)

OPENSSL = "openssl"
PASSWORD = "Disc-Pass-2024"
OTHER_PASSWORD = "Other-Pass-9999"
ITERATIONS = 2048  # what `openssl cms` itself uses: fast tests, same code path
CIPHERS = list(ContentCipher)
OPENSSL_CIPHER = {
    ContentCipher.AES128_CBC: "-aes128",
    ContentCipher.AES192_CBC: "-aes192",
    ContentCipher.AES256_CBC: "-aes256",
    ContentCipher.DES_EDE3_CBC: "-des3",
}


@dataclass(frozen=True)
class Identity:
    """An RSA key with a self-signed certificate, also as PEM files for openssl."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    key_pem: Path
    cert_pem: Path

    @property
    def credential(self) -> KeyCredential:
        return KeyCredential(self.key, self.certificate)


def _identity(directory: Path, name: str) -> Identity:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Kiosk test {name}")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = directory / f"{name}.key.pem"
    cert_pem = directory / f"{name}.cert.pem"
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_pem.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return Identity(key, certificate, key_pem, cert_pem)


@pytest.fixture(scope="module")
def alice(tmp_path_factory: pytest.TempPathFactory) -> Identity:
    return _identity(tmp_path_factory.mktemp("pki"), "alice")


@pytest.fixture(scope="module")
def mallory(tmp_path_factory: pytest.TempPathFactory) -> Identity:
    return _identity(tmp_path_factory.mktemp("pki"), "mallory")


@pytest.fixture(scope="module")
def kek() -> PasswordKek:
    return PasswordKek.derive(PASSWORD, iterations=ITERATIONS)


@pytest.fixture
def dicom_file(tmp_path: Path) -> Path:
    """A PS3.10 file with patient data (what goes on a disc)."""
    (tmp_path / "src").mkdir()
    return make_instance(
        tmp_path / "src", patient_name="Secret^Patient", patient_id="PID-SEC-1", rows=96
    )


def _openssl(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([OPENSSL, *map(str, args)], capture_output=True, timeout=60, check=False)


def _openssl_decrypt(secure: Path, out: Path, *credentials: str | Path) -> bytes:
    """`openssl cms -decrypt`: the inner content DER (DigestedData/SignedData)."""
    result = _openssl(
        "cms", "-decrypt", "-binary", "-inform", "DER", "-in", secure, "-out", out, *credentials
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return out.read_bytes()


def _openssl_unwrap_inner(inner: bytes, content_type: str, work: Path) -> bytes:
    """Check the inner content with openssl and return the PS3.10 file it holds.

    The decrypted content is the bare DigestedData/SignedData SEQUENCE; openssl wants it in
    a ContentInfo, so wrap it first.
    """
    spec = cms.DigestedData if content_type == "digested_data" else cms.SignedData
    wrapped = work / "inner_ci.der"
    wrapped.write_bytes(
        cms.ContentInfo({"content_type": content_type, "content": spec.load(inner)}).dump()
    )
    plain = work / "plain.dcm"
    if content_type == "digested_data":
        args: tuple[str, ...] = ("-digest_verify",)
    else:
        args = ("-verify", "-noverify")
    result = _openssl("cms", *args, "-binary", "-inform", "DER", "-in", wrapped, "-out", plain)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"Verification successful" in result.stderr
    return plain.read_bytes()


def _writer(
    *,
    passwords: tuple[PasswordKek, ...] = (),
    certificates: tuple[x509.Certificate, ...] = (),
    cipher: ContentCipher = ContentCipher.AES256_CBC,
    signer: Signer | None = None,
) -> SecureFileWriter:
    return SecureFileWriter(
        EnvelopeSettings(
            passwords=passwords, certificates=certificates, cipher=cipher, signer=signer
        )
    )


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _envelope(inner: bytes, content_type: str, kek: PasswordKek) -> bytes:
    """A Secure DICOM File built in memory by asn1crypto alone (a reference for the tests)."""
    cipher = ContentCipher.AES256_CBC.spec
    cek, iv = os.urandom(32), os.urandom(16)
    pad = 16 - len(inner) % 16
    ciphertext = cipher.encryptor(cek, iv).update(inner + bytes([pad]) * pad)
    enveloped = cms.EnvelopedData(
        {
            "version": "v3",
            "recipient_infos": [kek.recipient_info(cek)],
            "encrypted_content_info": {
                "content_type": content_type,
                "content_encryption_algorithm": algos.EncryptionAlgorithm(
                    {"algorithm": "aes256_cbc", "parameters": core.OctetString(iv)}
                ),
                "encrypted_content": ciphertext,
            },
        }
    )
    return bytes(cms.ContentInfo({"content_type": "enveloped_data", "content": enveloped}).dump())


# -- structure ----------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 127, 128, 255, 256, 65535, 65536, 2**24, 2**32 + 5])
def test_definite_header_matches_asn1crypto(length: int) -> None:
    class _Sized(bytes):
        # asn1crypto's header only looks at len(); this keeps 4 GiB out of memory.
        def __len__(self) -> int:
            return length

    expected = parser._dump_header(2, 0, 0, _Sized())
    assert definite_header(2, False, 0, length) == expected
    assert definite_header(0, True, 16, length) == parser._dump_header(0, 1, 16, _Sized())


def test_output_is_canonical_der_of_the_profile(
    dicom_file: Path, tmp_path: Path, kek: PasswordKek, alice: Identity
) -> None:
    secure = tmp_path / "SECURE"
    result = _writer(passwords=(kek,), certificates=(alice.certificate,)).encrypt_file(
        dicom_file, secure
    )
    data = secure.read_bytes()
    assert result.size == len(data) and result.plaintext_size == dicom_file.stat().st_size
    info = cms.ContentInfo.load(data, strict=True)
    # A forced re-encoding gives the same bytes: every length is right and the DER canonical.
    assert info.dump(force=True) == data
    assert info["content_type"].native == "enveloped_data"
    enveloped = info["content"]
    assert enveloped["version"].native == "v3"
    kinds = sorted(ri.name for ri in enveloped["recipient_infos"])
    assert kinds == ["ktri", "pwri"]
    for ri in enveloped["recipient_infos"]:
        if ri.name == "ktri":
            assert ri.chosen["version"].native == "v0"
            assert ri.chosen["rid"].name == "issuer_and_serial_number"
            assert ri.chosen["key_encryption_algorithm"]["algorithm"].dotted == (
                "1.2.840.113549.1.1.1"
            )
        else:
            kdf = ri.chosen["key_derivation_algorithm"]
            assert kdf["algorithm"].native == "pbkdf2"
            assert kdf["parameters"]["prf"]["algorithm"].native == "sha256"
            assert len(kdf["parameters"]["salt"].chosen.native) == 16
            kea = ri.chosen["key_encryption_algorithm"]
            assert kea["algorithm"].dotted == "1.2.840.113549.1.9.16.3.9"
    eci = enveloped["encrypted_content_info"]
    assert eci["content_type"].dotted == "1.2.840.113549.1.7.5"
    assert eci["content_encryption_algorithm"]["algorithm"].native == "aes256_cbc"
    # Nothing of the patient is visible.
    for phi in (b"Secret^Patient", b"PID-SEC-1", b"DICM"):
        assert phi not in data


def test_rsa_only_envelope_is_version_0(dicom_file: Path, tmp_path: Path, alice: Identity) -> None:
    secure = tmp_path / "SECURE"
    _writer(certificates=(alice.certificate,)).encrypt_file(dicom_file, secure)
    assert cms.ContentInfo.load(secure.read_bytes())["content"]["version"].native == "v0"


def test_fresh_content_key_and_iv_per_file_with_one_kek_per_disc(
    dicom_file: Path, tmp_path: Path, kek: PasswordKek
) -> None:
    writer = _writer(passwords=(kek,))
    seen: list[tuple[bytes, bytes, bytes]] = []
    for n in range(3):
        target = tmp_path / f"F{n}"
        writer.encrypt_file(dicom_file, target)
        enveloped = cms.ContentInfo.load(target.read_bytes())["content"]
        pwri = enveloped["recipient_infos"][0].chosen
        salt = pwri["key_derivation_algorithm"]["parameters"]["salt"].chosen.native
        iv = enveloped["encrypted_content_info"]["content_encryption_algorithm"][
            "parameters"
        ].native
        seen.append((salt, iv, pwri["encrypted_key"].native))
    assert len({s for s, _, _ in seen}) == 1, "one salt (one PBKDF2 run) per disc"
    assert len({iv for _, iv, _ in seen}) == 3
    assert len({k for _, _, k in seen}) == 3


# -- our files, opened by openssl ---------------------------------------------------------------


@pytest.mark.parametrize("cipher", CIPHERS, ids=[c.value for c in CIPHERS])
@pytest.mark.parametrize("recipients", ["password", "rsa", "both"])
def test_openssl_opens_our_files(
    cipher: ContentCipher,
    recipients: str,
    dicom_file: Path,
    tmp_path: Path,
    alice: Identity,
) -> None:
    kek = PasswordKek.derive(PASSWORD, iterations=ITERATIONS, cipher=cipher)
    writer = _writer(
        passwords=(kek,) if recipients != "rsa" else (),
        certificates=(alice.certificate,) if recipients != "password" else (),
        cipher=cipher,
    )
    secure = tmp_path / "SECURE"
    result = writer.encrypt_file(dicom_file, secure)
    original = dicom_file.read_bytes()
    credentials: list[tuple[str | Path, ...]] = []
    if recipients != "rsa":
        credentials.append(("-pwri_password", PASSWORD))
    if recipients != "password":
        credentials.append(("-recip", alice.cert_pem, "-inkey", alice.key_pem))
    for n, credential in enumerate(credentials):
        work = tmp_path / f"work{n}"
        work.mkdir()
        inner = _openssl_decrypt(secure, work / "inner.der", *credential)
        plain = _openssl_unwrap_inner(inner, "digested_data", work)
        assert plain == original
        assert plain[128:132] == b"DICM"
        assert dcmdump_ok(work / "plain.dcm")
    assert result.plaintext_sha256 == __import__("hashlib").sha256(original).hexdigest()


def test_openssl_opens_every_recipient_of_a_mixed_file(
    dicom_file: Path, tmp_path: Path, alice: Identity, mallory: Identity
) -> None:
    keks = (
        PasswordKek.derive(PASSWORD, iterations=ITERATIONS),
        PasswordKek.derive(OTHER_PASSWORD, iterations=ITERATIONS),
    )
    secure = tmp_path / "SECURE"
    _writer(passwords=keks, certificates=(alice.certificate, mallory.certificate)).encrypt_file(
        dicom_file, secure
    )
    for n, credential in enumerate(
        [
            ("-pwri_password", PASSWORD),
            ("-pwri_password", OTHER_PASSWORD),
            ("-recip", alice.cert_pem, "-inkey", alice.key_pem),
            ("-recip", mallory.cert_pem, "-inkey", mallory.key_pem),
        ]
    ):
        work = tmp_path / f"w{n}"
        work.mkdir()
        inner = _openssl_decrypt(secure, work / "inner.der", *credential)
        assert _openssl_unwrap_inner(inner, "digested_data", work) == dicom_file.read_bytes()


def test_signed_data_verified_by_openssl_and_signer_reported(
    dicom_file: Path, tmp_path: Path, kek: PasswordKek, alice: Identity
) -> None:
    secure = tmp_path / "SECURE"
    _writer(passwords=(kek,), signer=Signer(alice.key, alice.certificate)).encrypt_file(
        dicom_file, secure
    )
    info = cms.ContentInfo.load(secure.read_bytes(), strict=True)
    assert info.dump(force=True) == secure.read_bytes()
    eci = info["content"]["encrypted_content_info"]
    assert eci["content_type"].native == "signed_data"
    inner = _openssl_decrypt(secure, tmp_path / "inner.der", "-pwri_password", PASSWORD)
    assert _openssl_unwrap_inner(inner, "signed_data", tmp_path) == dicom_file.read_bytes()

    result = SecureFileReader(passwords=[PASSWORD]).decrypt_file(secure, tmp_path / "OUT")
    assert result.content_type == "signed-data"
    (signer,) = result.signers
    assert signer.subject == "CN=Kiosk test alice"
    assert signer.serial_number == alice.certificate.serial_number
    assert (tmp_path / "OUT").read_bytes() == dicom_file.read_bytes()


# -- openssl's files, opened by us --------------------------------------------------------------


@pytest.mark.parametrize("cipher", CIPHERS, ids=[c.value for c in CIPHERS])
@pytest.mark.parametrize("stream", [False, True], ids=["der", "stream"])
@pytest.mark.parametrize("recipient", ["password", "rsa"])
def test_we_open_openssl_files(
    cipher: ContentCipher,
    stream: bool,
    recipient: str,
    dicom_file: Path,
    tmp_path: Path,
    alice: Identity,
) -> None:
    secure = tmp_path / "OPENSSL"
    args: list[str | Path] = ["cms", "-encrypt", "-binary", OPENSSL_CIPHER[cipher]]
    args += ["-stream"] if stream else []
    args += ["-in", dicom_file, "-outform", "DER", "-out", secure]
    args += ["-pwri_password", PASSWORD] if recipient == "password" else [alice.cert_pem]
    result = _openssl(*args)
    assert result.returncode == 0, result.stderr
    assert is_secure_dicom_file(secure)
    reader = (
        SecureFileReader(passwords=[PASSWORD])
        if recipient == "password"
        else SecureFileReader(keys=[alice.credential])
    )
    out = tmp_path / "PLAIN"
    report = reader.decrypt_file(secure, out)
    assert out.read_bytes() == dicom_file.read_bytes()
    assert report.cipher is cipher
    assert report.opened_with == ("password" if recipient == "password" else "certificate")
    # openssl labels the content id-data: accepted, with the warning that nothing checks it.
    assert report.content_type == "data" and report.warnings


def test_rsa_recipient_named_by_subject_key_identifier(
    dicom_file: Path, tmp_path: Path, alice: Identity
) -> None:
    secure = tmp_path / "OPENSSL"
    args = ["cms", "-encrypt", "-binary", "-aes256", "-keyid", "-in", dicom_file]
    assert _openssl(*args, "-outform", "DER", "-out", secure, alice.cert_pem).returncode == 0
    rid = cms.ContentInfo.load(secure.read_bytes())["content"]["recipient_infos"][0].chosen["rid"]
    assert rid.name == "subject_key_identifier"
    out = io.BytesIO()
    SecureFileReader(keys=[alice.credential]).decrypt(secure.open("rb"), out)
    assert out.getvalue() == dicom_file.read_bytes()


def test_rsa_oaep_recipient_is_outside_the_profile(
    dicom_file: Path, tmp_path: Path, alice: Identity
) -> None:
    secure = tmp_path / "OPENSSL"
    args = ["cms", "-encrypt", "-binary", "-aes256", "-in", dicom_file, "-outform", "DER"]
    args += ["-out", secure, "-recip", alice.cert_pem, "-keyopt", "rsa_padding_mode:oaep"]
    result = _openssl(*args)
    assert result.returncode == 0, result.stderr
    _expect(
        UnsupportedSecureFileError,
        lambda: SecureFileReader(keys=[alice.credential]).decrypt(secure.open("rb"), None),
    )


def test_rsa_key_without_certificate_tries_every_recipient(
    dicom_file: Path, tmp_path: Path, alice: Identity
) -> None:
    secure = tmp_path / "OPENSSL"
    assert (
        _openssl(
            "cms",
            "-encrypt",
            "-binary",
            "-aes256",
            "-in",
            dicom_file,
            "-outform",
            "DER",
            "-out",
            secure,
            alice.cert_pem,
        ).returncode
        == 0
    )
    reader = SecureFileReader(keys=[KeyCredential(alice.key)])
    assert reader.decrypt(secure.open("rb"), None).size == dicom_file.stat().st_size


def test_openssl_digested_and_signed_inner_content_verify_here(
    dicom_file: Path, tmp_path: Path, alice: Identity
) -> None:
    """The inner structures made by openssl itself check out with our inner reader."""
    digested = tmp_path / "dd.der"
    assert (
        _openssl(
            "cms",
            "-digest_create",
            "-md",
            "sha256",
            "-binary",
            "-in",
            dicom_file,
            "-outform",
            "DER",
            "-out",
            digested,
        ).returncode
        == 0
    )
    signed = tmp_path / "sd.der"
    assert (
        _openssl(
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-in",
            dicom_file,
            "-signer",
            alice.cert_pem,
            "-inkey",
            alice.key_pem,
            "-outform",
            "DER",
            "-out",
            signed,
        ).returncode
        == 0
    )
    for path, read in (
        (digested, lambda r, o: read_digested(r, o, "dd")),
        (signed, lambda r, o: read_signed(r, o, "sd", ())),
    ):
        inner = cms.ContentInfo.load(path.read_bytes())["content"].untag().dump()
        out = io.BytesIO()
        report = read(BerReader(io.BytesIO(inner)), ContentSink(out))
        assert out.getvalue() == dicom_file.read_bytes()
        assert report.digest is not None and report.digest.value == "sha256"
    assert report.signers[0].subject == "CN=Kiosk test alice"


# -- round trip, streaming, caching --------------------------------------------------------------


def test_round_trip_of_sample_files_and_kek_derived_once(
    tmp_path: Path, kek: PasswordKek, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = _writer(passwords=(kek,))
    samples = [Path(get_testdata_file(n)) for n in ("CT_small.dcm", "MR_small.dcm")]
    calls: list[int] = []
    real = recipients_module.derive_kek

    def counting(*args: Any) -> bytes:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(recipients_module, "derive_kek", counting)
    reader = SecureFileReader(passwords=[PASSWORD])
    for n, sample in enumerate(samples):
        secure = tmp_path / f"S{n}"
        writer.encrypt_file(sample, secure)
        result = reader.decrypt_file(secure, tmp_path / f"P{n}")
        assert (tmp_path / f"P{n}").read_bytes() == sample.read_bytes()
        assert result.content_type == "digested-data" and not result.warnings
    assert len(calls) == 1, "one PBKDF2 run for the files of one disc"


def test_in_place_replacement_keeps_the_name(dicom_file: Path, kek: PasswordKek) -> None:
    original = dicom_file.read_bytes()
    _writer(passwords=(kek,)).encrypt_file(dicom_file, dicom_file)
    assert is_secure_dicom_file(dicom_file)
    assert not list(dicom_file.parent.glob(".*partial"))
    out = io.BytesIO()
    SecureFileReader(passwords=[PASSWORD]).decrypt(dicom_file.open("rb"), out)
    assert out.getvalue() == original


def _peaks(tmp_path: Path, kek: PasswordKek, size: int) -> tuple[int, int]:
    """Peak Python memory of encrypting, then of decrypting, a file of `size` bytes."""
    plain = tmp_path / f"plain{size}"
    with plain.open("wb") as fh:  # a sparse file: cheap to make, read as zeros
        fh.truncate(size)
    secure = tmp_path / f"secure{size}"
    writer = _writer(passwords=(kek,))
    reader = SecureFileReader(passwords=[PASSWORD], require_dicom=False)
    writer.encrypt_file(plain, secure)  # warm up: per-thread buffers exist from here on
    tracemalloc.start()
    try:
        writer.encrypt_file(plain, secure)
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with secure.open("rb") as fh:
            assert reader.decrypt(fh, None).size == size
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return write_peak, read_peak


def test_memory_does_not_grow_with_file_size(tmp_path: Path, kek: PasswordKek) -> None:
    small = _peaks(tmp_path, kek, 3 * 1024 * 1024)
    large = _peaks(tmp_path, kek, 64 * 1024 * 1024)
    for before, after in zip(small, large, strict=True):
        assert after < 16 * 1024 * 1024, (small, large)
        assert after - before < 1024 * 1024, (small, large)


# -- negative cases -----------------------------------------------------------------------------


@pytest.fixture
def secure_file(dicom_file: Path, tmp_path: Path, kek: PasswordKek, alice: Identity) -> Path:
    secure = tmp_path / "SECURE"
    _writer(passwords=(kek,), certificates=(alice.certificate,)).encrypt_file(dicom_file, secure)
    return secure


def _expect(
    error: type[SecureMediaError], action: Callable[[], object], *secrets: str
) -> SecureMediaError:
    with pytest.raises(error) as caught:
        action()
    text = f"{caught.value} {caught.value!r}"
    for secret in secrets:
        assert secret not in text
    # No chained exception could carry a secret into a log.
    error = caught.value
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    return error


def test_wrong_password(secure_file: Path, tmp_path: Path) -> None:
    reader = SecureFileReader(passwords=[OTHER_PASSWORD])
    _expect(
        WrongPasswordError,
        lambda: reader.decrypt_file(secure_file, tmp_path / "OUT"),
        OTHER_PASSWORD,
        PASSWORD,
    )
    assert not (tmp_path / "OUT").exists()
    # openssl agrees that the password is wrong.
    assert _openssl_decrypt_fails(secure_file, tmp_path, "-pwri_password", OTHER_PASSWORD)


def _openssl_decrypt_fails(secure: Path, tmp_path: Path, *credential: str | Path) -> bool:
    result = _openssl(
        "cms",
        "-decrypt",
        "-binary",
        "-inform",
        "DER",
        "-in",
        secure,
        "-out",
        tmp_path / "x.der",
        *credential,
    )
    return result.returncode != 0


def test_wrong_key(secure_file: Path, alice: Identity, mallory: Identity) -> None:
    _expect(
        WrongKeyError,
        lambda: SecureFileReader(keys=[mallory.credential]).decrypt(secure_file.open("rb"), None),
    )
    # Without a certificate to match, the wrong key is still told apart from damage.
    _expect(
        WrongKeyError,
        lambda: SecureFileReader(keys=[KeyCredential(mallory.key)]).decrypt(
            secure_file.open("rb"), None
        ),
    )
    with pytest.raises(RecipientError, match="does not belong"):
        KeyCredential(mallory.key, alice.certificate)


def test_password_for_a_certificate_only_file(
    dicom_file: Path, tmp_path: Path, alice: Identity
) -> None:
    secure = tmp_path / "SECURE"
    _writer(certificates=(alice.certificate,)).encrypt_file(dicom_file, secure)
    error = _expect(
        WrongPasswordError,
        lambda: SecureFileReader(passwords=[PASSWORD]).decrypt(secure.open("rb"), None),
    )
    assert "not encrypted for a password" in str(error)


@pytest.mark.parametrize("where", ["content", "last block", "recipient key"])
def test_flipped_ciphertext_byte(secure_file: Path, tmp_path: Path, where: str) -> None:
    size = secure_file.stat().st_size
    info = cms.ContentInfo.load(secure_file.read_bytes())
    encrypted_key = next(
        ri.chosen["encrypted_key"].native
        for ri in info["content"]["recipient_infos"]
        if ri.name == "pwri"
    )
    offset = {
        "content": size // 2,
        "last block": size - 1,
        "recipient key": secure_file.read_bytes().index(encrypted_key) + 5,
    }[where]
    _flip(secure_file, offset)
    reader = SecureFileReader(passwords=[PASSWORD])
    expected: type[SecureMediaError] = (
        WrongPasswordError if where == "recipient key" else TamperedFileError
    )
    error = _expect(expected, lambda: reader.decrypt_file(secure_file, tmp_path / "OUT"))
    if where == "content":
        assert isinstance(error, DigestMismatchError)
    assert not (tmp_path / "OUT").exists(), "nothing half-decrypted is left"


@pytest.mark.parametrize("keep", [0.5, 0.999, 20])
def test_truncated_file(secure_file: Path, tmp_path: Path, keep: float) -> None:
    data = secure_file.read_bytes()
    cut = int(len(data) * keep) if keep < 1 else int(keep)
    secure_file.write_bytes(data[:cut])
    reader = SecureFileReader(passwords=[PASSWORD])
    _expect(TruncatedFileError, lambda: reader.decrypt_file(secure_file, tmp_path / "OUT"))
    assert not (tmp_path / "OUT").exists()


def test_trailing_data_is_refused(secure_file: Path) -> None:
    secure_file.write_bytes(secure_file.read_bytes() + b"\0\0\0\0")
    reader = SecureFileReader(passwords=[PASSWORD])
    _expect(TamperedFileError, lambda: reader.decrypt(secure_file.open("rb"), None))


def test_bad_digest(secure_file: Path, tmp_path: Path, kek: PasswordKek) -> None:
    """A conformant envelope (built by asn1crypto alone) whose inner digest is wrong."""
    inner = bytearray(
        _openssl_decrypt(secure_file, tmp_path / "inner.der", "-pwri_password", PASSWORD)
    )
    inner[-1] ^= 0x01  # the digest OCTET STRING is the last member
    forged = tmp_path / "FORGED"
    forged.write_bytes(_envelope(bytes(inner), "digested_data", kek))
    reader = SecureFileReader(passwords=[PASSWORD])
    _expect(DigestMismatchError, lambda: reader.decrypt_file(forged, tmp_path / "OUT"))
    assert not (tmp_path / "OUT").exists()
    # The unforged inner content in the same reference envelope opens fine.
    inner[-1] ^= 0x01
    forged.write_bytes(_envelope(bytes(inner), "digested_data", kek))
    assert reader.decrypt_file(forged, tmp_path / "OUT").content_type == "digested-data"


def test_bad_signature(dicom_file: Path, tmp_path: Path, kek: PasswordKek, alice: Identity) -> None:
    secure = tmp_path / "SECURE"
    _writer(passwords=(kek,), signer=Signer(alice.key, alice.certificate)).encrypt_file(
        dicom_file, secure
    )
    inner = bytearray(_openssl_decrypt(secure, tmp_path / "inner.der", "-pwri_password", PASSWORD))
    inner[-1] ^= 0x01  # the last byte of the RSA signature
    forged = tmp_path / "FORGED"
    forged.write_bytes(_envelope(bytes(inner), "signed_data", kek))
    reader = SecureFileReader(passwords=[PASSWORD])
    _expect(SignatureError, lambda: reader.decrypt(forged.open("rb"), None))


@pytest.mark.parametrize(
    "bad", ["Pässwort-2024", "Disc-Pass-¥100", "Disc\tPass-2024", "Disc-€-2024"]
)
def test_password_outside_the_dicom_repertoire(bad: str) -> None:
    error = _expect(
        PasswordPolicyError, lambda: PasswordKek.derive(bad, iterations=ITERATIONS), bad
    )
    assert "printable ASCII" in str(error)
    _expect(PasswordPolicyError, lambda: SecureFileReader(passwords=[bad]), bad)


def test_password_policy_is_configurable() -> None:
    with pytest.raises(PasswordPolicyError, match="too short"):
        PasswordKek.derive("Ab1-", iterations=ITERATIONS)
    with pytest.raises(PasswordPolicyError, match="too simple"):
        PasswordKek.derive("abcdefghijkl", iterations=ITERATIONS)
    lenient = PasswordPolicy(min_length=4, min_classes=1)
    assert (
        PasswordKek.derive("abcd", iterations=ITERATIONS, policy=lenient).iterations == ITERATIONS
    )
    assert "Disc" not in repr(PasswordKek.derive(PASSWORD, iterations=ITERATIONS))


def test_clear_files_are_not_secure(dicom_file: Path) -> None:
    assert not is_secure_dicom_file(dicom_file)
    _expect(
        NotSecureFileError,
        lambda: SecureFileReader(passwords=[PASSWORD]).decrypt(dicom_file.open("rb"), None),
    )


def test_content_that_is_not_dicom(tmp_path: Path, kek: PasswordKek) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(1000))
    secure = tmp_path / "SECURE"
    _writer(passwords=(kek,)).encrypt_file(blob, secure)
    _expect(
        NotDicomContentError,
        lambda: SecureFileReader(passwords=[PASSWORD]).decrypt_file(secure, tmp_path / "OUT"),
    )
    assert not (tmp_path / "OUT").exists()


def test_weak_recipient_certificate_is_refused(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weak")])
    now = datetime.datetime.now(datetime.UTC)
    weak = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(RecipientError, match="2048"):
        EnvelopeSettings(certificates=(weak,))
    with pytest.raises(RecipientError, match="at least one"):
        EnvelopeSettings()


def test_iteration_floor_when_writing() -> None:
    with pytest.raises(RecipientError):
        PasswordKek.derive(PASSWORD, iterations=10)
    assert password_module.DEFAULT_ITERATIONS >= 600_000
