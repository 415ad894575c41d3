"""The signing key and the decryption keys of `[security]`, with keys made by openssl.

Configuration problems (a key without its certificate, a key that does not match it, an EC key,
an expired certificate, a file that cannot be read) each give one ConfigError line naming the
key, also from a real `kioskd` at start. A burn job with a signing key writes Signed-data:
every file of the ISO is decrypted by `openssl cms -decrypt` and its content verified by
`openssl cms -verify` against the signer's certificate. The reader built from
`decryption_keys(config)` opens what `openssl cms -encrypt` made for our certificate and
refuses a file made for another one.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import pydicom
import pytest
import tomli_w
from asn1crypto import cms  # type: ignore[import-untyped]

from appliance.config import KioskConfig, load_config
from appliance.errors import ConfigError
from appliance.jobs.burn_request import BurnRequest
from appliance.jobs.burn_secure import SignedByReader, load_security
from appliance.jobs.secrets import JobSecret, SecretVault
from appliance.jobs.secure_keys import decryption_keys, import_reader, load_signer
from appliance.media.fileset import build_fileset
from appliance.media.iso import build_iso
from appliance.media.secure import (
    EnvelopeSettings,
    PasswordKek,
    SecureFileReader,
    SecureFileWriter,
    Signer,
    WrongKeyError,
)
from appliance.media.secure.fileset import encrypt_fileset
from appliance.media.secure.profiles import media_profile
from appliance.media.verify import verify_secure_image
from tests.peers.data import make_instance
from tests.peers.dcmtk import storescu
from tests.peers.discs import dcmdump_ok, extract_iso
from tests.peers.kioskd import KioskdProcess
from tests.test_burn_secure import BIRTH, PASSWORD, PATIENT, PATIENT_ID, _run_job, _study
from tests.test_config import _kioskd, _one_line

pytestmark = pytest.mark.timeout(180)


# -- keys made by openssl ---------------------------------------------------------------------


def _openssl(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, timeout=60, check=False
    )
    return result


def _pair(directory: Path, name: str, *, newkey: str = "rsa:2048") -> tuple[Path, Path]:
    """`openssl req -x509`: an unencrypted PEM key and its self-signed certificate (7 days)."""
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    extra = ["-pkeyopt", "ec_paramgen_curve:prime256v1"] if newkey == "ec" else []
    result = _openssl(
        "req", "-x509", "-newkey", newkey, *extra, "-nodes", "-keyout", key, "-out", cert,
        "-subj", f"/CN={name}", "-days", "7",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    key.chmod(0o600)
    return key, cert


def _expired_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """A key and a self-signed certificate valid 2020-2021 only (`openssl ca -selfsign`: the
    one OpenSSL 3.0 command that takes explicit validity dates)."""
    ca = directory / f"{name}-ca"
    (ca / "new").mkdir(parents=True)
    (ca / "index.txt").write_text("")
    (ca / "serial").write_text("1000\n")
    conf = ca / "ca.cnf"
    conf.write_text(
        "[ca]\ndefault_ca = here\n[here]\n"
        f"database = {ca / 'index.txt'}\nnew_certs_dir = {ca / 'new'}\nserial = {ca / 'serial'}\n"
        "default_md = sha256\npolicy = any\n[any]\ncommonName = supplied\n"
    )
    key, csr, cert = directory / f"{name}.key", ca / "req.csr", directory / f"{name}.pem"
    result = _openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
        "-subj", f"/CN={name}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    result = _openssl(
        "ca", "-batch", "-config", conf, "-selfsign", "-keyfile", key, "-in", csr, "-out", cert,
        "-startdate", "20200101000000Z", "-enddate", "20210101000000Z", "-notext",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    key.chmod(0o600)
    return key, cert


def _config(security: dict[str, Any]) -> KioskConfig:
    return KioskConfig.model_validate({"security": security})


def _signing(key: Path, cert: Path) -> dict[str, Any]:
    return {"signing_key": str(key), "signing_certificate": str(cert)}


# -- configuration errors ---------------------------------------------------------------------


def _bad_configs(tmp_path: Path) -> list[tuple[dict[str, Any], str, str]]:
    """(security table, key named, words of the reason) for every kind of bad key file."""
    key, cert = _pair(tmp_path, "signer")
    other_key, other_cert = _pair(tmp_path, "other")
    ec_key, ec_cert = _pair(tmp_path, "ec", newkey="ec")
    old_key, old_cert = _expired_pair(tmp_path, "old")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN NOTHING-----\n")
    missing = tmp_path / "missing.key"
    locked = tmp_path / "locked.key"
    result = _openssl("pkey", "-in", key, "-aes256", "-passout", "pass:secret", "-out", locked)
    assert result.returncode == 0, result.stderr
    return [
        (_signing(locked, cert), "security.signing_key", "encrypted private key"),
        (_signing(key, other_cert), "security.signing_key", "does not belong"),
        (_signing(ec_key, ec_cert), "security.signing_key", "type EC"),
        (_signing(key, ec_cert), "security.signing_certificate", "not for an RSA key"),
        (_signing(old_key, old_cert), "security.signing_certificate", "not valid now"),
        (_signing(missing, cert), "security.signing_key", "cannot read"),
        (_signing(key, tmp_path), "security.signing_certificate", "cannot read"),
        (_signing(garbage, cert), "security.signing_key", "not a PEM private key"),
        (_signing(key, garbage), "security.signing_certificate", "not a PEM certificate"),
        (
            {"decryption_keys": {"site": {"key": str(ec_key)}}},
            "security.decryption_keys.site.key",
            "type EC",
        ),
        (
            {"decryption_keys": {"site": {"key": str(key), "certificate": str(other_cert)}}},
            "security.decryption_keys.site.key",
            "does not belong",
        ),
        (
            {"decryption_keys": {"site": {"key": str(missing)}}},
            "security.decryption_keys.site.key",
            "cannot read",
        ),
        (
            {"decryption_keys": {"site": {"key": str(key), "certificate": str(garbage)}}},
            "security.decryption_keys.site.certificate",
            "not a PEM certificate",
        ),
        (
            {"decryption_keys": {"site": {"key": str(other_key)}}, **_signing(key, ec_cert)},
            "security.signing_certificate",
            "not for an RSA key",
        ),
    ]


def test_every_bad_key_file_is_one_config_error_naming_its_key(tmp_path: Path) -> None:
    for security, key, reason in _bad_configs(tmp_path):
        with pytest.raises(ConfigError) as caught:
            load_security(_config(security))
        message = _one_line(str(caught.value))
        assert message.startswith(f"{key}: "), (message, key)
        assert reason in message, (message, reason)


def test_signing_key_and_certificate_go_together(tmp_path: Path) -> None:
    key, cert = _pair(tmp_path, "signer")
    etc = tmp_path / "etc"
    etc.mkdir()
    for security, wanted in (
        ({"signing_key": str(key)}, "missing: security.signing_key is set"),
        ({"signing_certificate": str(cert)}, "set without security.signing_key"),
    ):
        path = tmp_path / "half.toml"
        path.write_text(tomli_w.dumps({"security": security}))
        with pytest.raises(ConfigError) as caught:
            load_config(path, environ={"KIOSK_ETC_DIR": str(etc)})
        message = _one_line(str(caught.value))
        assert message.startswith("config: security.signing_certificate: ")
        assert wanted in message


def test_good_keys_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key, cert = _pair(tmp_path, "signer")
    ours_key, ours_cert = _pair(tmp_path, "ours")
    old_key, old_cert = _expired_pair(tmp_path, "old")
    config = _config(
        {
            **_signing(key, cert),
            "decryption_keys": {
                "ours": {"key": str(ours_key), "certificate": str(ours_cert)},
                "retired": {"key": str(old_key), "certificate": str(old_cert)},
                "bare": {"key": str(key)},
            },
        }
    )
    caplog.set_level(logging.WARNING)
    material = load_security(config)
    assert isinstance(material.signer, Signer)
    assert material.signer.certificate.subject.rfc4514_string() == "CN=signer"
    names = [
        c.certificate.subject.rfc4514_string() if c.certificate else None
        for c in material.decryption_keys
    ]
    assert names == ["CN=ours", "CN=old", None]
    # The expired certificate of a decryption key is accepted (old discs must still open),
    # but said in the log.
    assert "security.decryption_keys.retired.certificate" in caplog.text
    assert load_signer(_config({}).security) is None
    assert decryption_keys(_config({})) == []
    assert import_reader(_config({}), ()) is None
    assert isinstance(import_reader(_config({}), (PASSWORD,)), SecureFileReader)
    assert isinstance(import_reader(config, ()), SecureFileReader)


def test_kioskd_with_a_bad_key_exits_with_one_line(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    key, _ = _pair(tmp_path, "signer")
    _, other_cert = _pair(tmp_path, "other")
    ec_key, _ = _pair(tmp_path, "ec", newkey="ec")
    cases = [
        (_signing(key, other_cert), "security.signing_key"),
        ({"signing_key": str(key)}, "security.signing_certificate"),
        ({"decryption_keys": {"site": {"key": str(ec_key)}}}, "security.decryption_keys.site.key"),
    ]
    for n, (security, named) in enumerate(cases):
        work = tmp_path / f"run{n}"
        work.mkdir()
        bad = work / "bad.toml"
        bad.write_text(tomli_w.dumps({"security": security, "paths": {"var": str(work / "var")}}))
        result = _kioskd("--config", str(bad), etc_dir=etc, cwd=work)
        assert result.returncode != 0
        assert f"{named}: " in _one_line(result.stderr)
        assert result.stdout == ""
        assert not (work / "var").exists(), "a bad key stops kioskd before it creates anything"


# -- signed discs -----------------------------------------------------------------------------


@pytest.fixture
def signed(make_kioskd: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A kioskd started with a signing key and a decryption key (so both pass the start-up
    checks), holding one study; stopped, and its config loaded here as it loads it."""
    keys = tmp_path / "keys"
    keys.mkdir()
    key, cert = _pair(keys, "signer")
    ours_key, ours_cert = _pair(keys, "ours")
    settings = {
        "profiles": {"seccd": {"media_profile": "STD-GEN-SEC-CD"}},
        "security": {
            "pbkdf2_iterations": 2048,
            **_signing(key, cert),
            "decryption_keys": {"ours": {"key": str(ours_key), "certificate": str(ours_cert)}},
        },
    }
    daemon: KioskdProcess = make_kioskd(settings)
    study, files = _study(tmp_path / "src", 3)
    assert storescu(daemon.port, files).returncode == 0
    assert daemon.stop() == 0
    for name in [k for k in os.environ if k.startswith("KIOSK")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KIOSK_ETC_DIR", str(daemon.root / "etc"))
    return {
        "config": load_config(daemon.config_file),
        "study": study,
        "files": files,
        "cert": cert,
        "other_cert": _pair(keys, "other")[1],
    }


def _openssl_signed(secure: Path, work: Path, ca_file: Path) -> subprocess.CompletedProcess[bytes]:
    """Decrypt with openssl, then verify the Signed-data with `openssl cms -verify`."""
    inner = work / "inner.der"
    result = _openssl(
        "cms", "-decrypt", "-binary", "-inform", "DER", "-in", secure, "-out", inner,
        "-pwri_password", PASSWORD,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    wrapped = work / "inner_ci.der"
    wrapped.write_bytes(
        cms.ContentInfo(
            {"content_type": "signed_data", "content": cms.SignedData.load(inner.read_bytes())}
        ).dump()
    )
    return _openssl(
        "cms", "-verify", "-binary", "-inform", "DER", "-in", wrapped, "-CAfile", ca_file,
        "-out", work / "plain.dcm",
    )  # fmt: skip


def test_signed_disc_verifies_with_openssl(signed: dict[str, Any], tmp_path: Path) -> None:
    config: KioskConfig = signed["config"]
    vault = SecretVault()
    request = BurnRequest(
        study_uids=[signed["study"]],
        profile="seccd",
        secret_ref=vault.deposit(JobSecret((PASSWORD,))),
    )
    job = _run_job(config, vault, request)
    assert job.error is None and job.result is not None
    (disc,) = job.result["discs"]
    assert disc["decrypted_verification"] is True

    (image,) = sorted((config.paths.var / "discs").glob("*.iso"))
    root = extract_iso(image, tmp_path / "disc")
    dicom_part = [root / "DICOMDIR", *(p for p in (root / "DICOM").rglob("*") if p.is_file())]
    assert len(dicom_part) == 1 + len(signed["files"])
    originals = {
        str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in signed["files"]
    }
    seen: set[str] = set()
    for n, secure in enumerate(dicom_part):
        work = tmp_path / f"w{n}"
        work.mkdir()
        result = _openssl_signed(secure, work, signed["cert"])
        assert result.returncode == 0 and b"Verification successful" in result.stderr, result.stderr
        plain = (work / "plain.dcm").read_bytes()
        assert plain[128:132] == b"DICM"
        assert dcmdump_ok(work / "plain.dcm")
        if secure.name != "DICOMDIR":
            seen.add(str(pydicom.dcmread(work / "plain.dcm").SOPInstanceUID))
    assert seen == originals
    # The same signature does not verify against a certificate that did not sign it.
    refused = _openssl_signed(dicom_part[0], tmp_path / "w0", signed["other_cert"])
    assert refused.returncode != 0 and b"Verification failure" in refused.stderr
    # Signing does not put patient data in clear.
    blob = image.read_bytes()
    for value in (*PATIENT, PATIENT_ID, BIRTH):
        assert value.encode() not in blob


def test_verifying_our_disc_demands_our_signature(tmp_path: Path) -> None:
    """SignedByReader refuses files that are only digested, or signed by someone else."""
    key, cert = _pair(tmp_path, "signer")
    other_key, other_cert = _pair(tmp_path, "other")
    ours = load_signer(_config(_signing(key, cert)).security)
    theirs = load_signer(_config(_signing(other_key, other_cert)).security)
    assert ours is not None and theirs is not None
    _, files = _study(tmp_path / "src", 2)
    profile, _ = media_profile("STD-GEN-SEC-CD")
    kek = PasswordKek.derive(PASSWORD, iterations=2048)
    reader = SignedByReader(ours.certificate, passwords=(PASSWORD,))
    outcomes: dict[str, set[str]] = {}
    for label, signer in (("ours", ours), ("theirs", theirs), ("none", None)):
        root = tmp_path / label
        fileset = build_fileset(files, root, profile, fileset_id="T1")
        secured = encrypt_fileset(
            root,
            fileset.manifest,
            SecureFileWriter(EnvelopeSettings(passwords=(kek,), signer=signer)),
        )
        image = build_iso(root, tmp_path / f"{label}.iso", volume_label="SECURE", joliet=False)
        report = verify_secure_image(image.path, secured.plaintext, reader)
        assert report.checked_files == 3
        outcomes[label] = {p.reason for p in report.problems}
    assert outcomes["ours"] == set()
    # Every file, DICOMDIR included, is refused (the reasons name the file).
    assert len(outcomes["theirs"]) == len(outcomes["none"]) == 3
    assert all("not with the configured signing key" in r for r in outcomes["theirs"])
    assert all("is not signed" in r for r in outcomes["none"])


# -- decryption keys --------------------------------------------------------------------------


def test_decryption_keys_open_discs_made_for_us(tmp_path: Path) -> None:
    ours_key, ours_cert = _pair(tmp_path, "ours")
    _, other_cert = _pair(tmp_path, "elsewhere")
    plain = make_instance(tmp_path, patient_id=PATIENT_ID)
    for_us, for_them = tmp_path / "for_us", tmp_path / "for_them"
    for cert, out in ((ours_cert, for_us), (other_cert, for_them)):
        result = _openssl(
            "cms", "-encrypt", "-aes256", "-recip", cert, "-binary", "-outform", "DER",
            "-in", plain, "-out", out,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    for entry in ({"key": str(ours_key), "certificate": str(ours_cert)}, {"key": str(ours_key)}):
        config = _config({"decryption_keys": {"ours": entry}})
        reader = SecureFileReader(keys=decryption_keys(config))
        target = tmp_path / "opened.dcm"
        opened = reader.decrypt_file(for_us, target)
        assert opened.opened_with == "certificate"
        assert target.read_bytes() == plain.read_bytes()
        target.unlink()

    config = _config(
        {"decryption_keys": {"ours": {"key": str(ours_key), "certificate": str(ours_cert)}}}
    )
    reader = SecureFileReader(keys=decryption_keys(config))
    refused = tmp_path / "refused.dcm"
    with pytest.raises(WrongKeyError, match="the private key does not open the file"):
        reader.decrypt_file(for_them, refused)
    assert not refused.exists()
    assert not list(tmp_path.glob(".refused.dcm*")), "nothing half-decrypted is left"
