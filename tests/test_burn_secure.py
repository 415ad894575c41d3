"""Encrypted discs (STD-GEN-SEC-*) from burn jobs, checked with tools we did not write.

A real kioskd receives the study (DCMTK storescu) and is stopped; the burn job then runs in
this process, so the test holds the in-memory password vault the daemon would hold. Every file
of the DICOM part of the image is opened by `openssl cms -decrypt` (password and RSA), its
digest checked by `openssl cms -digest_verify`, parsed by dcmdump, and the decrypted DICOMDIR
checked by dciodvfy and pydicom's FileSet. The image, the job store, the logs and every file
the job left are searched for the patient's data and for the password.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pydicom
import pytest
from asn1crypto import cms  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from appliance.config import KioskConfig, load_config
from appliance.errors import ConfigError
from appliance.jobs.burn import BurnHandler
from appliance.jobs.burn_request import BURN, BurnRequest, BurnRequestError, resolve_options
from appliance.jobs.burn_secure import PASSWORD_NEEDED
from appliance.jobs.drives_wiring import build_drives
from appliance.jobs.model import Job, JobState
from appliance.jobs.queue import JobStore
from appliance.jobs.runner import JobRunner
from appliance.jobs.secrets import (
    JobSecret,
    SecretError,
    SecretServer,
    SecretVault,
    deposit_passwords,
)
from appliance.media.fileset import build_fileset
from appliance.media.iso import build_iso
from appliance.media.secure import (
    EnvelopeSettings,
    PasswordKek,
    PasswordPolicy,
    SecureFileReader,
    SecureFileWriter,
)
from appliance.media.secure.fileset import encrypt_fileset
from appliance.media.secure.profiles import media_profile
from appliance.media.verify import verify_image, verify_secure_image
from tests.peers.data import make_instance
from tests.peers.dcmtk import storescu
from tests.peers.discs import dciodvfy_errors, dcmdump_ok, extract_iso, iso_paths
from tests.peers.kioskd import KioskdProcess

pytestmark = pytest.mark.timeout(180)

PASSWORD = "Kiosk-Disc-7731"
PATIENT = ("Quixotic", "Zebulon")
PATIENT_ID = "PID-77-QZ"
BIRTH = "19431107"


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A recipient (the "other hospital"): key and self-signed certificate as PEM files."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hospital B imaging")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .sign(key, hashes.SHA256())
    )
    key_pem, cert_pem = directory / "hospital_b.key", directory / "hospital_b.pem"
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_pem, cert_pem


def _study(directory: Path, count: int) -> tuple[str, list[Path]]:
    directory.mkdir(parents=True, exist_ok=True)
    study = generate_uid()
    series = generate_uid()
    files = [
        make_instance(
            directory,
            patient_name="^".join(PATIENT),
            patient_id=PATIENT_ID,
            birth_date=BIRTH,
            study_uid=study,
            series_uid=series,
            instance_number=n + 1,
        )
        for n in range(count)
    ]
    return study, files


def _openssl(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, timeout=60, check=False
    )


def _openssl_open(secure: Path, work: Path, *credential: str | Path) -> bytes:
    """Decrypt with openssl, verify the Digested-data with openssl; the PS3.10 bytes."""
    inner = work / "inner.der"
    result = _openssl(
        "cms", "-decrypt", "-binary", "-inform", "DER", "-in", secure, "-out", inner, *credential
    )
    assert result.returncode == 0, result.stderr
    wrapped = work / "inner_ci.der"
    wrapped.write_bytes(
        cms.ContentInfo(
            {"content_type": "digested_data", "content": cms.DigestedData.load(inner.read_bytes())}
        ).dump()
    )
    plain = work / "plain.dcm"
    result = _openssl(
        "cms", "-digest_verify", "-binary", "-inform", "DER", "-in", wrapped, "-out", plain
    )
    assert result.returncode == 0 and b"Verification successful" in result.stderr, result.stderr
    return plain.read_bytes()


@pytest.fixture
def received(make_kioskd: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A stopped kioskd whose store holds one study; its config, loaded here as it loads it."""
    key_pem, cert_pem = _certificate(tmp_path)
    settings = {
        "profiles": {"seccd": {"media_profile": "STD-GEN-SEC-CD"}},
        "security": {
            "pbkdf2_iterations": 2048,
            "recipients": {"hospital_b": str(cert_pem)},
        },
    }
    daemon: KioskdProcess = make_kioskd(settings)
    study, files = _study(tmp_path / "src", 4)
    assert storescu(daemon.port, files).returncode == 0
    assert daemon.stop() == 0
    for name in [k for k in os.environ if k.startswith("KIOSK")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KIOSK_ETC_DIR", str(daemon.root / "etc"))
    config = load_config(daemon.config_file)
    sent = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    return {
        "daemon": daemon,
        "config": config,
        "study": study,
        "sent": sent,
        "key_pem": key_pem,
        "cert_pem": cert_pem,
    }


def _run_job(config: KioskConfig, vault: SecretVault, request: BurnRequest) -> Job:
    store = JobStore(config.paths.index_file)
    try:
        submitted = store.submit(BURN, request.to_params(), resource="pseudo", max_attempts=1)
        drive = build_drives(config)["pseudo"]
        runner = JobRunner(
            store, "test", {BURN: BurnHandler(config, "pseudo", drive, vault)}, resource="pseudo"
        )
        job = runner.run_once()
        assert job is not None and job.id == submitted.id
        return job
    finally:
        store.close()


def test_secure_disc_opens_with_openssl_and_leaks_nothing(
    received: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config: KioskConfig = received["config"]
    vault = SecretVault()
    handle = vault.deposit(JobSecret((PASSWORD,)))
    request = BurnRequest(
        study_uids=[received["study"]],
        profile="seccd",
        recipients=["hospital_b"],
        secret_ref=handle,
    )
    job = _run_job(config, vault, request)
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.result is not None
    (disc,) = job.result["discs"]
    assert disc["decrypted_verification"] is True
    assert job.result["options"]["media_profile"] == "STD-GEN-SEC-CD"
    assert len(vault) == 0, "the password is forgotten when the job is done"

    (image,) = sorted((config.paths.var / "discs").glob("*.iso"))
    paths = iso_paths(image)
    assert "/DICOMDIR" in paths and "/README.TXT" in paths
    assert not any(p.startswith(("/INDEX", "/IHE_PDI")) for p in paths), "no web content"
    root = extract_iso(image, tmp_path / "disc")
    assert "encrypted" in (root / "README.TXT").read_text(encoding="latin-1")

    # Every DICOM file, DICOMDIR included, is a Secure DICOM File under its File ID; openssl
    # opens each with the password and with the recipient's key; the content is PS3.10.
    clear = tmp_path / "clear"
    dicom_part = [root / "DICOMDIR", *(p for p in (root / "DICOM").rglob("*") if p.is_file())]
    assert len(dicom_part) == 1 + len(received["sent"])
    for n, secure in enumerate(dicom_part):
        data = secure.read_bytes()
        assert data[128:132] != b"DICM" and data[:1] == b"\x30"
        work = tmp_path / f"w{n}"
        work.mkdir()
        plain = _openssl_open(secure, work, "-pwri_password", PASSWORD)
        assert plain[128:132] == b"DICM"
        assert dcmdump_ok(work / "plain.dcm")
        by_key = _openssl_open(
            secure, work, "-recip", received["cert_pem"], "-inkey", received["key_pem"]
        )
        assert by_key == plain
        target = clear / secure.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(plain)
    # The decrypted DICOMDIR is valid and references exactly the files on the image.
    assert dciodvfy_errors(clear / "DICOMDIR") == []
    fileset = FileSet(pydicom.dcmread(clear / "DICOMDIR"))
    assert {str(i.SOPInstanceUID) for i in fileset} == received["sent"]
    referenced = {"/".join(i.ReferencedFileID) for i in fileset}
    assert referenced == {p.relative_to(root).as_posix() for p in dicom_part[1:]}

    # No patient data in clear anywhere on the image, in any usual encoding.
    blob = image.read_bytes()
    for value in (*PATIENT, "^".join(PATIENT), PATIENT_ID, BIRTH, "1943-11-07"):
        for encoding in ("ascii", "utf-16-le", "utf-16-be"):
            assert value.encode(encoding) not in blob, (value, encoding)
            assert value.upper().encode(encoding) not in blob, (value, encoding)

    # The password is nowhere: job store, daemon var dir (labels, work, logs), our logs.
    secret = PASSWORD.encode()
    for path in config.paths.var.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
    assert PASSWORD not in caplog.text
    assert PASSWORD not in json.dumps(job.params) + json.dumps(job.result)
    assert PASSWORD not in received["daemon"].log()


def test_certificate_only_disc_and_password_needed_after_restart(
    received: dict[str, Any], tmp_path: Path
) -> None:
    config: KioskConfig = received["config"]
    vault = SecretVault()
    job = _run_job(
        config,
        vault,
        BurnRequest(study_uids=[received["study"]], encrypt=True, recipients=["hospital_b"]),
    )
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.result is not None
    assert job.result["discs"][0]["decrypted_verification"] is False
    (image,) = sorted((config.paths.var / "discs").glob("*.iso"))
    root = extract_iso(image, tmp_path / "disc")
    plain = _openssl_open(
        root / "DICOMDIR", tmp_path, "-recip", received["cert_pem"], "-inkey", received["key_pem"]
    )
    assert pydicom.dcmread(tmp_path / "plain.dcm").file_meta.MediaStorageSOPClassUID == (
        "1.2.840.10008.1.3.10"
    )
    assert plain[128:132] == b"DICM"

    # A job whose password was held by a daemon that has restarted since (a fresh vault).
    stale = SecretVault().deposit(JobSecret((PASSWORD,)))
    job = _run_job(
        config,
        SecretVault(),
        BurnRequest(study_uids=[received["study"]], profile="seccd", secret_ref=stale),
    )
    assert job.state is JobState.FAILED
    assert job.error == PASSWORD_NEEDED
    assert "password needed" in PASSWORD_NEEDED


def test_requests_that_cannot_make_a_secure_disc(received: dict[str, Any]) -> None:
    config: KioskConfig = received["config"]
    study = [received["study"]]
    # Web content on a secure disc is the encrypted web bundle (tests/test_web_bundle.py).
    bundled = resolve_options(
        config, BurnRequest(study_uids=study, profile="seccd", web=True, secret_ref="x")
    )
    assert bundled.secure and bundled.web
    with pytest.raises(BurnRequestError, match="unknown recipient"):
        resolve_options(config, BurnRequest(study_uids=study, encrypt=True, recipients=["nope"]))
    with pytest.raises(BurnRequestError, match="password or a recipient"):
        resolve_options(config, BurnRequest(study_uids=study, profile="seccd"))
    with pytest.raises(BurnRequestError, match="always encrypts"):
        resolve_options(config, BurnRequest(study_uids=study, profile="seccd", encrypt=False))
    with pytest.raises(BurnRequestError, match="encrypted discs only"):
        resolve_options(config, BurnRequest(study_uids=study, recipients=["hospital_b"]))
    options = resolve_options(config, BurnRequest(study_uids=study, encrypt=True, secret_ref="h"))
    assert options.secure and options.media_profile == "STD-GEN-SEC-CD" and not options.web


def test_bad_recipient_certificate_stops_the_handler_at_start(
    received: dict[str, Any], tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate")
    data = received["config"].model_dump()
    data["security"]["recipients"] = {"broken": str(bogus)}
    config = KioskConfig.model_validate(data)
    drive = build_drives(config)["pseudo"]
    with pytest.raises(ConfigError, match=r"security\.recipients\.broken"):
        BurnHandler(config, "pseudo", drive, SecretVault())


# -- media level: verification of secure images ----------------------------------------------


def test_clear_dicom_file_on_a_secure_image_fails_verification(tmp_path: Path) -> None:
    _, files = _study(tmp_path / "src", 3)
    root = tmp_path / "root"
    profile, secure = media_profile("STD-GEN-SEC-CD")
    assert secure
    fileset = build_fileset(files, root, profile, fileset_id="T1")
    kek = PasswordKek.derive(PASSWORD, iterations=2048)
    secured = encrypt_fileset(
        root, fileset.manifest, SecureFileWriter(EnvelopeSettings(passwords=(kek,)))
    )
    reader = SecureFileReader(passwords=[PASSWORD])
    image = build_iso(root, tmp_path / "ok.iso", volume_label="SECURE_OK", joliet=False)
    assert verify_image(image.path, secured.manifest, expected_sha256=image.sha256).ok
    report = verify_secure_image(image.path, secured.plaintext, reader)
    assert report.ok, report.summary()
    assert report.checked_files == 4

    # One instance put back in clear under its File ID, and a stray clear copy elsewhere.
    victim = secured.plaintext.entries[1]
    original = next(
        f
        for f in files
        if str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
        == victim.sop_instance_uid
    )
    shutil.copyfile(original, root / victim.path)
    (root / "EXTRA").mkdir()
    shutil.copyfile(files[0], root / "EXTRA" / "IM1")
    bad = build_iso(root, tmp_path / "bad.iso", volume_label="SECURE_BAD", joliet=False)
    report = verify_secure_image(bad.path, secured.plaintext, reader)
    assert not report.ok
    reasons = {p.path: p.reason for p in report.problems}
    assert reasons[victim.path] == "is a clear-text DICOM file on a secure disc"
    assert reasons["EXTRA/IM1"] == "is a clear-text DICOM file on a secure disc"

    # The wrong password is reported per file, not as a crash.
    report = verify_secure_image(
        image.path, secured.plaintext, SecureFileReader(passwords=["Wrong-Pass-123"])
    )
    assert len(report.problems) == 4
    assert all("password" in p.reason for p in report.problems)


# -- the password hand-over ----------------------------------------------------------------------


def test_password_socket_deposits_and_refuses(tmp_path: Path) -> None:
    vault = SecretVault()
    policy = PasswordPolicy()
    server = SecretServer(tmp_path / "run" / "secrets.sock", vault, policy.check)
    server.start()
    try:
        assert stat.S_IMODE(server.path.stat().st_mode) == 0o600
        handle = deposit_passwords(server.path, [PASSWORD])
        secret = vault.claim(handle)
        assert secret is not None and secret.passwords == (PASSWORD,)
        assert PASSWORD not in repr(secret) and PASSWORD not in repr(vault)
        for bad in ("Pässwort-12345", "Sh0rt!"):
            with pytest.raises(SecretError) as caught:
                deposit_passwords(server.path, [bad])
            assert bad not in str(caught.value)
        with pytest.raises(SecretError, match="printable ASCII"):
            deposit_passwords(server.path, ["Ünïcode-Pass-1"])
        assert len(vault) == 1
    finally:
        server.stop()
    assert not server.path.exists()
    with pytest.raises(SecretError, match="kioskd running"):
        deposit_passwords(server.path, [PASSWORD], timeout=1)


def test_vault_forgets_unclaimed_deposits() -> None:
    now = [1000.0]
    vault = SecretVault(clock=lambda: now[0])
    kept = vault.deposit(JobSecret((PASSWORD,)))
    dropped = vault.deposit(JobSecret((PASSWORD,)))
    assert vault.claim(kept) is not None
    now[0] += 7200
    assert vault.claim(dropped) is None, "unclaimed for two hours: gone"
    assert vault.claim(kept) is not None, "a running job keeps its password"
    vault.discard(kept)
    assert len(vault) == 0
