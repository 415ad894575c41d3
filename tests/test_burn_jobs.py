"""Burn jobs end to end: a real kioskd receives studies, `kioskctl burn` makes discs on image
drives, and the discs are checked with xorriso, dciodvfy, dcmdump and pydicom's FileSet."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.peers.data import TEST_FILES_DIR, make_instance
from tests.peers.dcmtk import storescu
from tests.peers.discs import (
    dciodvfy_errors,
    dcmdump_ok,
    extract_iso,
    fileset_sop_uids,
    iso_paths,
)
from tests.peers.kioskd import KioskdProcess
from tests.peers.store_view import wait_until

pytestmark = pytest.mark.timeout(240)

LEVEL1 = r"^[A-Z0-9_]{1,8}(\.[A-Z0-9_]{0,3})?$"


def _study(
    tmp: Path, *, patient: str, pid: str, count: int, size: int = 64, birth: str = "19700101"
) -> tuple[str, list[Path]]:
    study = generate_uid()
    series = [generate_uid(), generate_uid()]
    files = [
        make_instance(
            tmp,
            patient_name=patient,
            patient_id=pid,
            birth_date=birth,
            study_uid=study,
            series_uid=series[n % 2],
            rows=size,
            columns=size,
            instance_number=n + 1,
        )
        for n in range(count)
    ]
    return study, files


def _burn(daemon: KioskdProcess, *args: str) -> dict[str, Any]:
    result = daemon.kioskctl("--json", "burn", *args, "--wait", "--timeout", "180")
    assert result.stdout, result.stderr
    job: dict[str, Any] = json.loads(result.stdout)
    return job


def _images(daemon: KioskdProcess, directory: str = "discs") -> list[Path]:
    return sorted((daemon.var / directory).glob("*.iso"))


def _check_disc(image: Path, workdir: Path) -> tuple[Path, set[str]]:
    """Validate one disc image with outside tools; return its root and SOP Instance UIDs."""
    paths = iso_paths(image)
    assert "/DICOMDIR" in paths and "/README.TXT" in paths
    assert not any("AUTORUN" in p.upper() for p in paths)
    dicom_part = [p for p in paths if p.startswith("/DICOM/")]
    assert dicom_part
    for path in [*dicom_part, "/DICOMDIR"]:
        components = path.strip("/").split("/")
        assert len(components) <= 8
        assert all(re.match(LEVEL1, c) for c in components), path
    root = extract_iso(image, workdir)
    assert dciodvfy_errors(root / "DICOMDIR") == []
    uids = fileset_sop_uids(root)
    files = [p for p in (root / "DICOM").rglob("*") if p.is_file()]
    assert len(files) == len(uids)
    assert all(dcmdump_ok(f) for f in files)
    return root, uids


def test_burn_study_to_verified_disc(make_kioskd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon: KioskdProcess = make_kioskd()
    study, files = _study(tmp_path, patient="Disc^Patient", pid="P-100", count=6)
    sr = TEST_FILES_DIR / "test-SR.dcm"
    assert storescu(daemon.port, [*files, sr]).returncode == 0
    sr_study = str(pydicom.dcmread(sr, stop_before_pixels=True).StudyInstanceUID)
    job = _burn(daemon, study, sr_study, "--web")
    assert job["state"] == "succeeded", job
    assert job["result"]["disc_count"] == 1
    (image,) = _images(daemon)
    root, uids = _check_disc(image, tmp_path / "disc")
    sent = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    assert uids == sent | {str(pydicom.dcmread(sr, stop_before_pixels=True).SOPInstanceUID)}
    assert (root / "INDEX.HTM").is_file()
    label = Path(job["result"]["discs"][0]["label"]).read_text()
    assert "DICOM PLUS WEB" in label and "Disc 1 of 1" in label
    # The files carry the received data sets unchanged (copy path, Explicit VR LE source).
    for f in files:
        uid = pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID
        on_disc = next(
            p
            for p in (root / "DICOM").rglob("*")
            if p.is_file() and pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID == uid
        )
        assert pydicom.dcmread(on_disc).PixelData == pydicom.dcmread(f).PixelData


def test_spanning_small_capacity(make_kioskd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A study larger than the (configured, small) capacity spans discs: each a valid file
    set, the union equal to the study, nothing doubled."""
    daemon: KioskdProcess = make_kioskd(
        {"profiles": {"tiny": {"capacity_mb": 1}}, "publishing": {"default_profile": "tiny"}}
    )
    study, files = _study(tmp_path, patient="Span^Me", pid="P-200", count=16, size=256)
    assert storescu(daemon.port, files).returncode == 0
    job = _burn(daemon, study)
    assert job["state"] == "succeeded", job
    images = _images(daemon)
    assert len(images) == job["result"]["disc_count"] >= 2
    seen: list[str] = []
    for n, image in enumerate(images):
        _, uids = _check_disc(image, tmp_path / f"disc{n}")
        seen.extend(uids)
    sent = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    assert sorted(seen) == sorted(sent)


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ({"write_error_at_percent": 40}, "write"),
        ({"no_media": True}, "no disc"),
        ({"tray_open": True}, "tray"),
        ({"capacity_mb": 1}, "does not fit"),
        ({"read_back_mismatch": True}, "does not hold the image that was written: it differs"),
    ],
)
def test_drive_faults_fail_the_job_with_a_reason(  # type: ignore[no-untyped-def]
    make_kioskd, tmp_path: Path, faults: dict[str, Any], message: str
) -> None:
    daemon: KioskdProcess = make_kioskd(
        {
            "drives": {
                "faulty": {"kind": "fake", "directory": str(tmp_path / "fake"), "faults": faults}
            },
            "profiles": {"cd": {"drive": "faulty"}},
            "publishing": {"max_attempts": 1},
        }
    )
    study, files = _study(
        tmp_path,
        patient="Fault^Case",
        pid="P-300",
        count=4,
        size=512 if "capacity_mb" in faults else 64,
    )
    assert storescu(daemon.port, files).returncode == 0
    job = _burn(daemon, study)
    assert job["state"] == "failed", job
    assert message in (job["error"] or "").lower(), job["error"]
    assert not job["result"].get("discs"), "a failed copy must not be counted as a disc"


def test_deidentified_disc_holds_no_original_phi(make_kioskd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon: KioskdProcess = make_kioskd()
    study, files = _study(
        tmp_path, patient="Quixotic^Zebulon", pid="PID-77-QZ", count=3, birth="19431107"
    )
    assert storescu(daemon.port, files).returncode == 0
    job = _burn(daemon, study, "--deidentify", "--web")
    assert job["state"] == "succeeded", job
    (image,) = _images(daemon)
    blob = image.read_bytes()
    for phi in ("Quixotic", "Zebulon", "PID-77-QZ", "19431107", study):
        assert phi.encode() not in blob, phi
    _check_disc(image, tmp_path / "disc")
    label = Path(job["result"]["discs"][0]["label"]).read_text()
    assert "Quixotic" not in label


def test_reidentified_disc_keeps_originals(make_kioskd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon: KioskdProcess = make_kioskd()
    study, files = _study(tmp_path, patient="Old^Name", pid="OLD-1", count=2)
    assert storescu(daemon.port, files).returncode == 0
    job = _burn(
        daemon, study, "--reidentify", "patient_name=New^Name", "--reidentify", "patient_id=NEW-9"
    )
    assert job["state"] == "succeeded", job
    (image,) = _images(daemon)
    root, _ = _check_disc(image, tmp_path / "disc")
    for path in (root / "DICOM").rglob("*"):
        if path.is_file():
            ds = pydicom.dcmread(path)
            assert ds.PatientName == "New^Name" and ds.PatientID == "NEW-9"
            old = ds.OriginalAttributesSequence[-1].ModifiedAttributesSequence[0]
            assert old.PatientName == "Old^Name" and old.PatientID == "OLD-1"


def test_vanished_file_fails_with_a_clear_reason(make_kioskd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon: KioskdProcess = make_kioskd({"publishing": {"max_attempts": 1}})
    study, files = _study(tmp_path, patient="Gone^File", pid="P-400", count=2)
    assert storescu(daemon.port, files).returncode == 0
    victim = daemon.stored_files()[0]
    victim.unlink()
    job = _burn(daemon, study)
    assert job["state"] == "failed"
    assert "missing" in job["error"]
    assert _images(daemon) == []


def test_auto_burn_on_study_complete(make_kioskd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon: KioskdProcess = make_kioskd(
        {
            "dicom": {"additional_ae_titles": ["BURN_CD"]},
            "store": {"study_quiet_seconds": 1},
            "auto_burn": [{"profile": "cd", "called_ae": "BURN_CD"}],
        }
    )
    burned, files = (
        _study(tmp_path / "a", patient="Auto^Burn", pid="P-500", count=2)
        if (tmp_path / "a").mkdir() is None
        else ("", [])
    )
    kept, others = (
        _study(tmp_path / "b", patient="No^Burn", pid="P-501", count=2)
        if (tmp_path / "b").mkdir() is None
        else ("", [])
    )
    assert storescu(daemon.port, files, called="BURN_CD").returncode == 0
    assert storescu(daemon.port, others).returncode == 0
    assert wait_until(lambda: len(_images(daemon)) == 1, timeout=60)
    jobs = json.loads(daemon.kioskctl("--json", "jobs").stdout)
    assert [j["params"]["study_uids"] for j in jobs] == [[burned]]
    assert kept not in json.dumps(jobs)


def test_kill9_mid_burn_recovers_without_duplicate_discs(  # type: ignore[no-untyped-def]
    make_kioskd, tmp_path: Path
) -> None:
    """kioskd dies by SIGKILL while a copy is being written to the image drive: at restart the
    job is run again (image drives cannot hold a half-written disc), succeeds, and claims
    exactly the discs it made."""
    daemon: KioskdProcess = make_kioskd()
    study, files = _study(tmp_path, patient="Kill^Nine", pid="P-600", count=8, size=256)
    assert storescu(daemon.port, files).returncode == 0
    submitted = json.loads(daemon.kioskctl("--json", "burn", study, "--copies", "2").stdout)

    def writing() -> bool:
        # Read the job row directly: a kioskctl round trip is too slow to catch the phase.
        with sqlite3.connect(f"file:{daemon.index_file}?mode=ro", uri=True) as conn:
            row = conn.execute(
                "SELECT state, progress FROM jobs WHERE id = ?", (submitted["id"],)
            ).fetchone()
        # Copy 1 of 2 being written: a whole copy is still to come when the kill lands.
        return row[0] == "running" and "copy 1/2: writing" in json.loads(row[1])["phase"]

    assert wait_until(writing, timeout=60, interval=0.02)
    daemon.kill9()
    daemon.start()
    final = json.loads(
        daemon.kioskctl("--json", "job", str(submitted["id"]), "--wait", "--timeout", "120").stdout
    )
    assert final["state"] == "succeeded", final
    (disc,) = final["result"]["discs"]
    assert disc["copies_done"] == 2
    assert "interrupted by a restart" not in (final["error"] or "")
    assert "requeued" in daemon.log()
    # Every claimed copy is a complete, verified image; extra files are unclaimed partials.
    complete = [p for p in _images(daemon) if p.stat().st_size >= disc["image_size"]]
    assert len(complete) >= 2


def test_encrypted_disc_from_the_command_line(make_kioskd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`kioskctl burn --encrypt --password-stdin`: the password travels over the daemon's
    socket (never the job store); every DICOM file on the disc opens with `openssl cms` and
    that password; the password appears in no file under var and in no log."""
    password = "Correct-Horse-42"
    daemon: KioskdProcess = make_kioskd()
    study, files = _study(tmp_path, patient="Secret^Sam", pid="P-700", count=2)
    assert storescu(daemon.port, files).returncode == 0
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance.apps.kioskctl",
            "--config",
            str(daemon.config_file),
            "--json",
            "burn",
            study,
            "--encrypt",
            "--password-stdin",
            "--wait",
            "--timeout",
            "180",
        ],
        input=password + "\n",
        capture_output=True,
        text=True,
        env=daemon.env(),
        timeout=240,
        check=False,
    )
    job = json.loads(result.stdout)
    assert job["state"] == "succeeded", (job, result.stderr)
    (image,) = _images(daemon)
    root = extract_iso(image, tmp_path / "disc")
    dicom_files = [root / "DICOMDIR", *(p for p in (root / "DICOM").rglob("*") if p.is_file())]
    for secure in dicom_files:
        opened = subprocess.run(
            [
                "openssl",
                "cms",
                "-decrypt",
                "-binary",
                "-inform",
                "DER",
                "-in",
                str(secure),
                "-pwri_password",
                password,
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert opened.returncode == 0, opened.stderr
        assert b"DICM" in opened.stdout[:4096]
    wrong = subprocess.run(
        [
            "openssl",
            "cms",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-in",
            str(dicom_files[0]),
            "-pwri_password",
            "wrong-password-1",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert wrong.returncode != 0
    assert password not in daemon.log()
    for path in daemon.var.rglob("*"):
        if path.is_file() and not path.name.endswith(".sock"):
            assert password.encode() not in path.read_bytes(), path
