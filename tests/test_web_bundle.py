"""The encrypted web bundle (WEB.P7M) of secure discs, checked with tools we did not write.

Burn jobs run as in tests/test_burn_secure.py (a real kioskd receives the study, the job runs
here with the in-memory password vault). The image is unpacked by xorriso; WEB.P7M is opened by
`openssl cms -decrypt` with the password and with the recipient's key, the archive is tested
by `unzip -t` and unpacked by `unzip`, and the pages are parsed as XML and their links followed
on the unpacked folder. The whole image is searched for the patient's data.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms  # type: ignore[import-untyped]

from appliance.config import KioskConfig
from appliance.jobs.burn_request import BurnRequest
from appliance.jobs.model import JobState
from appliance.jobs.secrets import JobSecret, SecretVault
from appliance.media.iso import build_iso
from appliance.media.pdi import (
    CHECKSUMS_NAME,
    README_NAME,
    WEB_BUNDLE_NAME,
    PdiError,
    PdiOptions,
    WebBundle,
    write_pdi_content,
)
from appliance.media.secure import (
    EnvelopeSettings,
    PasswordKek,
    PlainDataWriter,
    SecureFileReader,
    WrongPasswordError,
)
from appliance.media.web_bundle import pack_zip
from appliance.media.web_bundle_check import check_bundle_archive, verify_web_bundle
from tests.peers.discs import extract_iso, iso_paths
from tests.test_burn_secure import (  # the secure-burn fixture and helpers, reused as they are
    BIRTH,
    PASSWORD,
    PATIENT,
    PATIENT_ID,
    _run_job,
    received,  # noqa: F401 - a fixture, used by name
)

pytestmark = pytest.mark.timeout(180)

XHTML = "{http://www.w3.org/1999/xhtml}"
UNZIP = "/usr/bin/unzip"
WRONG_PASSWORD = "Wrong-Disc-0000"
OPEN_COMMAND = "openssl cms -decrypt -inform DER -in WEB.P7M -pwri_password PASSWORD -out web.zip"


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, timeout=120, check=False, cwd=cwd
    )


def _openssl_decrypt(bundle: Path, out: Path, *credential: str | Path) -> None:
    result = _run(
        "openssl", "cms", "-decrypt", "-inform", "DER", "-in", bundle, "-out", out, *credential
    )
    assert result.returncode == 0, result.stderr


def _unzip(archive: Path, target: Path) -> Path:
    if shutil.which(UNZIP) is None:
        pytest.fail("unzip is missing: run scripts/test (it installs the test tools)")
    tested = _run(UNZIP, "-t", archive)
    assert tested.returncode == 0 and b"No errors detected" in tested.stdout, tested.stdout
    unpacked = _run(UNZIP, "-q", archive, "-d", target)
    assert unpacked.returncode == 0, unpacked.stderr
    return target


def _page_text(page: Path) -> str:
    return "".join(ET.fromstring(page.read_bytes()).itertext())


def _assert_links_stay_inside(site: Path) -> int:
    """Every href/src of every page names a file of the unpacked archive; the page count."""
    pages = sorted(site.rglob("*.HTM"))
    root = site.resolve()
    for page in pages:
        tree = ET.fromstring(page.read_bytes())
        for node in tree.iter():
            assert node.tag != f"{XHTML}script"
            for attr in ("href", "src"):
                link = node.get(attr)
                if link is None:
                    continue
                assert not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", link), link
                assert not link.startswith(("/", "\\")), link
                target = (page.parent / link).resolve()
                assert target.is_relative_to(root) and target.is_file(), (page, link)
    return len(pages)


def _password_salts(der: bytes) -> list[bytes]:
    """The PBKDF2 salts of a CMS EnvelopedData's password recipients."""
    enveloped = cms.ContentInfo.load(der)["content"]
    return [
        ri.chosen["key_derivation_algorithm"]["parameters"]["salt"].native
        for ri in enveloped["recipient_infos"]
        if ri.name == "pwri"
    ]


def _phi_values() -> list[str]:
    return [*PATIENT, "^".join(PATIENT), PATIENT_ID, BIRTH, "1943-11-07"]


# -- burn jobs with the bundle ----------------------------------------------------------------


def test_secure_disc_carries_the_web_pages_only_encrypted(
    received: dict[str, Any],  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    config: KioskConfig = received["config"]
    vault = SecretVault()
    handle = vault.deposit(JobSecret((PASSWORD,)))
    request = BurnRequest(
        study_uids=[received["study"]],
        profile="seccd",
        web=True,
        recipients=["hospital_b"],
        secret_ref=handle,
    )
    job = _run_job(config, vault, request)
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.result is not None
    (disc,) = job.result["discs"]
    assert disc["decrypted_verification"] is True
    assert disc["web_bundle_verified"] is True
    assert job.result["options"]["web"] is True and job.result["options"]["secure"] is True

    (image,) = sorted((config.paths.var / "discs").glob("*.iso"))
    paths = iso_paths(image)
    assert f"/{WEB_BUNDLE_NAME}" in paths and "/DICOMDIR" in paths
    assert not any(p.startswith(("/INDEX", "/IHE_PDI")) for p in paths), paths
    root = extract_iso(image, tmp_path / "disc")

    # The envelope: password and certificate recipients, plain id-data content, and the
    # password recipient derived once for the disc (the DICOMDIR's salt).
    bundle = root / WEB_BUNDLE_NAME
    info = cms.ContentInfo.load(bundle.read_bytes())
    assert info["content_type"].native == "enveloped_data"
    enveloped = info["content"]
    assert enveloped["encrypted_content_info"]["content_type"].native == "data"
    assert sorted(ri.name for ri in enveloped["recipient_infos"]) == ["ktri", "pwri"]
    assert _password_salts(bundle.read_bytes()) == _password_salts((root / "DICOMDIR").read_bytes())

    # openssl opens it with the password as README.TXT says; unzip finds a sound archive.
    archive = tmp_path / "web.zip"
    _openssl_decrypt(bundle, archive, "-pwri_password", PASSWORD)
    site = _unzip(archive, tmp_path / "site")
    assert (site / "INDEX.HTM").is_file() and (site / "IHE_PDI").is_dir()
    assert len(list((site / "IHE_PDI" / "IMAGES").glob("IM*.JPG"))) == len(received["sent"])
    # index, one patient, one study, one series; every link stays inside the archive
    assert _assert_links_stay_inside(site) == 4
    assert check_bundle_archive(io.BytesIO(archive.read_bytes()), ["DICOMDIR"]) == []
    # They are the PDI pages: they show the patient.
    index = _page_text(site / "INDEX.HTM")
    assert f"{PATIENT[0]}, {PATIENT[1]}" in index and PATIENT_ID in index
    (patient_page,) = sorted((site / "IHE_PDI").glob("PA*.HTM"))
    assert "1943-11-07" in _page_text(patient_page)
    assert (site / README_NAME).read_bytes() == (root / README_NAME).read_bytes()

    # The recipient's private key opens the same archive.
    by_key = tmp_path / "by_key.zip"
    _openssl_decrypt(bundle, by_key, "-inkey", received["key_pem"], "-recip", received["cert_pem"])
    assert by_key.read_bytes() == archive.read_bytes()

    # A wrong password opens nothing, with openssl or with our reader.
    wrong = tmp_path / "wrong.zip"
    result = _run(
        "openssl", "cms", "-decrypt", "-inform", "DER", "-in", bundle, "-out", wrong,
        "-pwri_password", WRONG_PASSWORD,
    )  # fmt: skip
    assert result.returncode != 0
    assert not wrong.exists() or not zipfile.is_zipfile(wrong)
    with bundle.open("rb") as source, pytest.raises(WrongPasswordError):
        SecureFileReader(passwords=[WRONG_PASSWORD], require_dicom=False).decrypt(source, None)

    # README explains it (placeholder, never the password); SHA256.TXT covers it.
    readme = (root / README_NAME).read_text("latin-1")
    assert WEB_BUNDLE_NAME in readme and OPEN_COMMAND in readme and "INDEX.HTM" in readme
    assert "-inkey KEY.PEM -recip CERT.PEM" in readme
    assert PASSWORD not in readme and "encrypted" in readme
    checksums = (root / CHECKSUMS_NAME).read_text("ascii")
    assert re.search(rf"^[0-9a-f]{{64}}  {re.escape(WEB_BUNDLE_NAME)}$", checksums, re.M)
    assert _run("sha256sum", "-c", CHECKSUMS_NAME, cwd=root).returncode == 0

    # Nothing of the patient in clear anywhere on the image, in any usual encoding.
    blob = image.read_bytes()
    for value in _phi_values():
        for encoding in ("ascii", "utf-16-le", "utf-16-be"):
            for shown in (value, value.upper()):
                assert shown.encode(encoding) not in blob, (value, encoding)
    # No clear pages or archive left in the job's work folder; no password in any file.
    for path in config.paths.var.rglob("*"):
        assert path.suffix.upper() not in (".HTM", ".ZIP"), path
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
    label = Path(disc["label"]).read_text("utf-8")
    assert "DICOM PLUS WEB" not in label, "no web pages on the disc's surface"


def test_certificate_only_bundle_opens_with_the_private_key(
    received: dict[str, Any],  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    config: KioskConfig = received["config"]
    request = BurnRequest(
        study_uids=[received["study"]], encrypt=True, web=True, recipients=["hospital_b"]
    )
    job = _run_job(config, SecretVault(), request)
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.result is not None
    (disc,) = job.result["discs"]
    assert disc["web_bundle_verified"] is False, "no password: nothing here can open it"
    (image,) = sorted((config.paths.var / "discs").glob("*.iso"))
    root = extract_iso(image, tmp_path / "disc")
    bundle = root / WEB_BUNDLE_NAME
    assert _password_salts(bundle.read_bytes()) == []
    archive = tmp_path / "web.zip"
    _openssl_decrypt(bundle, archive, "-inkey", received["key_pem"], "-recip", received["cert_pem"])
    site = _unzip(archive, tmp_path / "site")
    assert PATIENT_ID in _page_text(site / "INDEX.HTM")
    assert _assert_links_stay_inside(site) == 4
    assert not (root / "INDEX.HTM").exists() and not (root / "IHE_PDI").exists()


# -- the parts ---------------------------------------------------------------------------------


def _site(folder: Path, index: str) -> Path:
    (folder / "IHE_PDI" / "IMAGES").mkdir(parents=True)
    (folder / "INDEX.HTM").write_text(index, "utf-8")
    (folder / "IHE_PDI" / "PA000001.HTM").write_text(
        '<html xmlns="http://www.w3.org/1999/xhtml"><body><a href="../INDEX.HTM">up</a>'
        '<img src="IMAGES/IM000001.JPG" alt="x"/></body></html>',
        "utf-8",
    )
    (folder / "IHE_PDI" / "IMAGES" / "IM000001.JPG").write_bytes(b"\xff\xd8" + bytes(4000))
    return folder


_GOOD_INDEX = (
    '<html xmlns="http://www.w3.org/1999/xhtml"><body>'
    '<a href="IHE_PDI/PA000001.HTM">p</a><a href="DICOMDIR">d</a></body></html>'
)


def test_zip_is_deterministic_and_sorted(tmp_path: Path) -> None:
    site = _site(tmp_path / "site", _GOOD_INDEX)
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    assert pack_zip(site, first, stamp=date(2025, 3, 4)) == 3
    (site / "INDEX.HTM").touch()  # a newer mtime changes nothing
    pack_zip(site, second, stamp=date(2025, 3, 4))
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        infos = archive.infolist()
        assert archive.testzip() is None
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(2025, 3, 4, 0, 0, 0)}
    kinds = {i.filename: i.compress_type for i in infos}
    assert kinds["IHE_PDI/IMAGES/IM000001.JPG"] == zipfile.ZIP_STORED
    assert kinds["INDEX.HTM"] == zipfile.ZIP_DEFLATED


def test_bundle_check_finds_bad_links_and_damage(tmp_path: Path) -> None:
    good = tmp_path / "good.zip"
    pack_zip(_site(tmp_path / "good", _GOOD_INDEX), good, stamp=date(2025, 1, 1))
    assert check_bundle_archive(io.BytesIO(good.read_bytes()), ["DICOMDIR"]) == []
    # The DICOMDIR link is fine only when the disc has one.
    (problem,) = check_bundle_archive(io.BytesIO(good.read_bytes()), [])
    assert "DICOMDIR" in problem

    bad = tmp_path / "bad.zip"
    hostile = (
        '<html xmlns="http://www.w3.org/1999/xhtml"><body><a href="http://example.org/">x</a>'
        '<a href="../SECRET.TXT">y</a><a href="IHE_PDI/MISSING.HTM">z</a></body></html>'
    )
    pack_zip(_site(tmp_path / "bad", hostile), bad, stamp=date(2025, 1, 1))
    problems = check_bundle_archive(io.BytesIO(bad.read_bytes()), ["DICOMDIR"])
    assert len(problems) == 3 and all(p.startswith("INDEX.HTM links") for p in problems)

    damaged = bytearray(good.read_bytes())
    at = damaged.find(b"\xff\xd8")  # inside the stored JPEG: its CRC-32 no longer matches
    damaged[at + 100] ^= 0xFF
    assert any("CRC-32" in p for p in check_bundle_archive(io.BytesIO(bytes(damaged))))
    assert check_bundle_archive(io.BytesIO(b"not a zip")) == [
        "is not a readable ZIP archive (BadZipFile)"
    ]


def test_verify_web_bundle_on_an_image(tmp_path: Path) -> None:
    archive = tmp_path / "web.zip"
    pack_zip(_site(tmp_path / "site", _GOOD_INDEX), archive, stamp=date(2025, 1, 1))
    root = tmp_path / "root"
    root.mkdir()
    kek = PasswordKek.derive(PASSWORD, iterations=2048)
    writer = PlainDataWriter(EnvelopeSettings(passwords=(kek,)))
    result = writer.encrypt_file(archive, root / WEB_BUNDLE_NAME)
    assert result.plaintext_size == archive.stat().st_size
    (root / "DICOMDIR").write_bytes(b"placeholder")
    image = build_iso(root, tmp_path / "disc.iso", volume_label="BUNDLE", joliet=False)
    reader = SecureFileReader(passwords=[PASSWORD], require_dicom=False)
    report = verify_web_bundle(image.path, reader, ["DICOMDIR"])
    assert report.ok, report.summary()
    wrong = verify_web_bundle(
        image.path, SecureFileReader(passwords=[WRONG_PASSWORD], require_dicom=False), []
    )
    (problem,) = wrong.problems
    assert problem.path == WEB_BUNDLE_NAME and "does not decrypt" in problem.reason
    # Our reader gives back the archive byte for byte, as plain id-data.
    out = io.BytesIO()
    with (root / WEB_BUNDLE_NAME).open("rb") as source:
        decrypted = reader.decrypt(source, out)
    assert decrypted.content_type == "data" and out.getvalue() == archive.read_bytes()


def test_bundle_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(PdiError, match="secure discs only"):
        PdiOptions(institution_name="Clinic", web_bundle=True)
    root = tmp_path / "root"
    root.mkdir()
    options = PdiOptions(institution_name="Clinic", secure=True, web_bundle=True)
    with pytest.raises(PdiError, match="staging folder"):
        write_pdi_content(root, options)
    kek = PasswordKek.derive(PASSWORD, iterations=2048)
    inside = WebBundle(root / "staging", EnvelopeSettings(passwords=(kek,)))
    with pytest.raises(PdiError, match="outside the disc tree"):
        write_pdi_content(root, options, web_bundle=inside)
