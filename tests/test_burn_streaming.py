"""Burn jobs on plain discs stream the study from the store into the image (no staged copy).

A real kioskd receives a study (DCMTK storescu) and is stopped; the burn job then runs in this
process on the pseudo-drive, so the test can act between the file set and the image: it looks
at what the job staged, or removes a store file right before the image is written (a retention
run or an operator deleting the study). The discs are checked with xorriso, dciodvfy, dcmdump
and pydicom.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid

from appliance.config import KioskConfig, load_config
from appliance.jobs import burn as burn_module
from appliance.jobs.burn import BurnHandler
from appliance.jobs.burn_request import BURN, BurnRequest
from appliance.jobs.drives_wiring import build_drives
from appliance.jobs.model import Job
from appliance.jobs.queue import JobStore
from appliance.jobs.runner import JobRunner
from appliance.jobs.secrets import SecretVault
from appliance.media.iso import IsoResult
from tests.peers.data import dataset_bytes, make_instance
from tests.peers.dcmtk import storescu
from tests.peers.discs import dciodvfy_errors, dcmdump_ok, extract_iso, fileset_sop_uids
from tests.peers.kioskd import KioskdProcess

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def received(
    make_kioskd: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[KioskdProcess, KioskConfig, str]:
    """A stopped kioskd whose store holds one study of 5 images; its config as it loads it."""
    daemon: KioskdProcess = make_kioskd({"publishing": {"max_attempts": 1}})
    study, series = generate_uid(), generate_uid()
    (tmp_path / "src").mkdir()
    files = [
        make_instance(
            tmp_path / "src",
            patient_name="Stream^Patient",
            patient_id="P-STREAM",
            study_uid=study,
            series_uid=series,
            instance_number=n + 1,
            rows=48,
            columns=48,
        )
        for n in range(5)
    ]
    assert storescu(daemon.port, files).returncode == 0
    assert daemon.stop() == 0
    for name in [k for k in os.environ if k.startswith("KIOSK")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KIOSK_ETC_DIR", str(daemon.root / "etc"))
    return daemon, load_config(daemon.config_file), study


def _run_job(config: KioskConfig, request: BurnRequest) -> Job:
    store = JobStore(config.paths.index_file)
    try:
        submitted = store.submit(BURN, request.to_params(), resource="pseudo", max_attempts=1)
        drive = build_drives(config)["pseudo"]
        handler = BurnHandler(config, "pseudo", drive, SecretVault())
        job = JobRunner(store, "test", {BURN: handler}, resource="pseudo").run_once()
        assert job is not None and job.id == submitted.id
        return job
    finally:
        store.close()


def _intercept_build_iso(
    monkeypatch: pytest.MonkeyPatch, before: Callable[[Path, dict[str, Any]], None]
) -> None:
    """Run `before(root, kwargs)` right before the job's real build_iso."""
    real = burn_module.build_iso

    def build_iso(root: Path, out_path: Path, **kwargs: Any) -> IsoResult:
        before(root, kwargs)
        return real(root, out_path, **kwargs)

    monkeypatch.setattr(burn_module, "build_iso", build_iso)


def test_plain_disc_is_streamed_from_the_store(
    received: tuple[KioskdProcess, KioskConfig, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    daemon, config, study = received
    seen: dict[str, Any] = {}

    def look(root: Path, kwargs: dict[str, Any]) -> None:
        seen["staged"] = [p for p in (root / "DICOM").rglob("*") if p.is_file()]
        seen["streamed"] = len(kwargs["extra_files"])

    _intercept_build_iso(monkeypatch, look)
    job = _run_job(config, BurnRequest(study_uids=[study], web=True))
    assert job.state == "succeeded", job.error
    assert seen == {"staged": [], "streamed": 5}

    (image,) = sorted((daemon.var / "discs").glob("*.iso"))
    disc = extract_iso(image, tmp_path / "disc")
    assert dciodvfy_errors(disc / "DICOMDIR") == []
    store = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
        for p in daemon.stored_files()
    }
    assert fileset_sop_uids(disc) == set(store)
    files = [p for p in (disc / "DICOM").rglob("*") if p.is_file()]
    assert len(files) == 5 and len(list((disc / "IHE_PDI").rglob("*.JPG"))) == 5
    for path in files:
        assert dcmdump_ok(path)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert dataset_bytes(path) == dataset_bytes(store[str(ds.SOPInstanceUID)])


def test_store_file_vanishing_before_the_image_fails_the_job(
    received: tuple[KioskdProcess, KioskConfig, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, config, study = received
    victim = daemon.stored_files()[3]
    _intercept_build_iso(monkeypatch, lambda root, kwargs: victim.unlink())
    job = _run_job(config, BurnRequest(study_uids=[study]))
    assert job.state == "failed"
    assert job.error is not None and "missing" in job.error and victim.name in job.error
    assert sorted((daemon.var / "discs").glob("*.iso*")) == []


def test_store_file_vanishing_while_the_disc_is_written_fails_verification(
    received: tuple[KioskdProcess, KioskConfig, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image is complete, but the file it was read from can no longer prove what the disc
    holds: the job fails with the file's name instead of claiming a verified disc."""
    daemon, config, study = received
    victim = daemon.stored_files()[1]
    real = burn_module.build_iso

    def build_then_remove(root: Path, out_path: Path, **kwargs: Any) -> IsoResult:
        image = real(root, out_path, **kwargs)
        victim.unlink()
        return image

    monkeypatch.setattr(burn_module, "build_iso", build_then_remove)
    job = _run_job(config, BurnRequest(study_uids=[study]))
    assert job.state == "failed"
    assert job.error is not None
    assert "verification" in job.error and "missing" in job.error and victim.name in job.error
