"""Send jobs and Storage Commitment against Orthanc and a scripted commitment SCP."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid

from appliance.dicom import commitment
from appliance.jobs.deferral import DeferringJobStore
from appliance.store.commitments import CommitmentStore, Report
from tests.peers.commit_scp import CommitScp, report_dataset, send_report
from tests.peers.data import make_instance
from tests.peers.dcmtk import storescu
from tests.peers.kioskd import KioskdProcess
from tests.peers.lifecycle import start_without_probe
from tests.peers.net import free_port
from tests.peers.orthanc import Orthanc
from tests.peers.store_view import index_rows, wait_until

MakeKioskd = Callable[..., KioskdProcess]
CT = "1.2.840.10008.5.1.4.1.1.2"
DOC = Path(__file__).resolve().parents[1] / "docs" / "conformance.md"


@dataclass
class Study:
    uid: str
    series: list[str]
    sops: dict[str, str]
    """SOP Instance UID -> Series Instance UID."""
    files: list[Path]


def _study(directory: Path, series_sizes: tuple[int, ...] = (2, 1), name: str = "SEND^ME") -> Study:
    directory.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    series, sops, files = [], {}, []
    for size in series_sizes:
        series_uid = generate_uid()
        series.append(series_uid)
        for number in range(1, size + 1):
            sop = generate_uid()
            files.append(
                make_instance(
                    directory,
                    study_uid=uid,
                    series_uid=series_uid,
                    sop_uid=sop,
                    instance_number=number,
                    patient_name=name,
                    rows=32,
                    columns=32,
                )
            )
            sops[sop] = series_uid
    return Study(uid, series, sops, files)


def _kioskd(make_kioskd: MakeKioskd, nodes: dict[str, tuple[str, int]], **sections: Any) -> Any:
    settings: dict[str, Any] = {
        "nodes": {
            name: {"ae_title": ae, "host": "127.0.0.1", "port": port}
            for name, (ae, port) in nodes.items()
        },
        "retrieve": {"retry_delay_seconds": 0.2},
        **sections,
    }
    daemon = make_kioskd(settings, start=False)
    daemon.port = daemon.port or free_port()
    return daemon


@contextlib.contextmanager
def _stopping(peer: Orthanc) -> Iterator[Orthanc]:
    """Stop Orthanc quickly afterwards: its orderly exit takes seconds and its data is scratch."""
    try:
        yield peer
    finally:
        peer.stop(timeout=0.5)


def _receive(daemon: KioskdProcess, study: Study) -> None:
    result = storescu(daemon.port, study.files)
    assert result.returncode == 0, result.stderr


def _json(daemon: KioskdProcess, *args: str) -> Any:
    result = daemon.kioskctl("--json", *args)
    assert result.returncode in (0, 1) and result.stdout, result.stderr
    return json.loads(result.stdout)


def _commitments(daemon: KioskdProcess) -> list[dict[str, Any]]:
    return index_rows(daemon, "SELECT * FROM commitments ORDER BY created_at")


def _items(daemon: KioskdProcess, transaction_uid: str) -> dict[str, tuple[str, int | None]]:
    rows = index_rows(
        daemon,
        "SELECT sop_instance_uid, state, failure_reason FROM commitment_items "
        "WHERE transaction_uid = ?",
        (transaction_uid,),
    )
    return {r["sop_instance_uid"]: (r["state"], r["failure_reason"]) for r in rows}


# -- Orthanc ------------------------------------------------------------------------------------


def test_send_then_commit_with_orthanc(make_kioskd: MakeKioskd, tmp_path: Path) -> None:
    study = _study(tmp_path / "data")
    kiosk_port = free_port()
    orthanc = Orthanc(
        tmp_path / "orthanc", modalities={"kiosk": ("KIOSK", "127.0.0.1", kiosk_port)}
    )
    with _stopping(orthanc.start()):
        daemon = _kioskd(make_kioskd, {"orthanc": (orthanc.ae_title, orthanc.port)})
        daemon.port = kiosk_port
        daemon.start()
        _receive(daemon, study)

        # One series, no commitment: exactly its instances go, with a result per instance.
        first = study.series[0]
        job = _json(daemon, "send", "orthanc", "--series", first, "--wait", "--timeout", "60")
        assert job["state"] == "succeeded", job
        in_first = {sop for sop, series in study.sops.items() if series == first}
        assert orthanc.instance_uids() == in_first
        assert set(job["result"]["instances"]) == in_first
        assert {r["outcome"] for r in job["result"]["instances"].values()} == {"success"}
        assert "commitment" not in job["result"]
        assert _commitments(daemon) == []

        # The study with commitment: Orthanc reports on an association of its own.
        job = _json(daemon, "send", "orthanc", study.uid, "--commit", "--wait", "--timeout", "60")
        assert job["state"] == "succeeded", job
        assert orthanc.instance_uids() == set(study.sops)
        assert job["result"]["sent"] == job["result"]["total"] == len(study.sops)
        summary = job["result"]["commitment"]
        assert summary["state"] == "committed" and summary["committed"] == len(study.sops)
        (row,) = _commitments(daemon)
        assert row["transaction_uid"] == summary["transaction_uid"]
        assert row["state"] == "committed" and row["report_ae"] == orthanc.ae_title
        assert row["requested_at"] <= row["reported_at"]
        assert set(_items(daemon, row["transaction_uid"]).values()) == {("committed", None)}
    log = daemon.log()
    assert "association accepted: ORTHANC -> KIOSK" in log
    assert re.search(r"commitment report from ORTHANC for transaction [\d.]+: 3 committed", log)


def test_commitment_request_aborted_by_orthanc_is_retried_then_fails(
    make_kioskd: MakeKioskd, tmp_path: Path
) -> None:
    """Orthanc aborts an N-ACTION from an AE it does not list: a lost association, retried
    (with the same Transaction UID) until the attempts are used up."""
    study = _study(tmp_path / "data", (1,))
    orthanc = Orthanc(tmp_path / "orthanc")
    with _stopping(orthanc.start()):
        daemon = _kioskd(make_kioskd, {"orthanc": (orthanc.ae_title, orthanc.port)})
        daemon.start()
        _receive(daemon, study)
        job = _json(daemon, "send", "orthanc", study.uid, "--commit", "--wait", "--timeout", "60")
    assert job["state"] == "failed", job
    assert job["attempts"] == job["max_attempts"] == 3
    assert "ended before the N-ACTION response" in job["error"], job["error"]
    assert job["result"]["sent"] == 1
    (row,) = _commitments(daemon)
    assert row["transaction_uid"] == job["result"]["commitment"]["transaction_uid"]
    assert row["requested_at"] is None


# -- a scripted commitment SCP ---------------------------------------------------------------------


def test_report_on_the_same_association(make_kioskd: MakeKioskd, tmp_path: Path) -> None:
    study = _study(tmp_path / "data", (2,))
    with CommitScp(tmp_path / "scp", auto="same") as scp:
        daemon = _kioskd(make_kioskd, {"archive": (scp.ae_title, scp.port)})
        daemon.start()
        _receive(daemon, study)
        job = _json(daemon, "send", "archive", study.uid, "--commit", "--wait", "--timeout", "60")
    assert job["state"] == "succeeded", job
    assert scp.report_statuses == [0x0000]
    assert set(scp.stored) == set(study.sops)
    assert "association accepted: COMMITSCP" not in daemon.log()
    (row,) = _commitments(daemon)
    assert row["state"] == "committed" and row["report_ae"] == "COMMITSCP"


def test_failures_in_the_report_fail_the_job(make_kioskd: MakeKioskd, tmp_path: Path) -> None:
    study = _study(tmp_path / "data", (3,))
    with CommitScp(tmp_path / "scp") as scp:
        daemon = _kioskd(
            make_kioskd,
            {"archive": (scp.ae_title, scp.port)},
            commitment={"same_association_wait_seconds": 0},
        )
        daemon.start()
        _receive(daemon, study)
        job = _json(daemon, "send", "archive", study.uid, "--commit")
        request = scp.wait_request()
        lost = sorted(study.sops)[0]
        assert scp.report(daemon.port, request, failed={lost: 0x0112}) == 0x0000
        job = _json(daemon, "job", str(job["id"]), "--wait", "--timeout", "60")
    assert job["state"] == "failed", job
    assert "did not commit 1 of 3" in job["error"] and "0x0112" in job["error"]
    assert job["result"]["commitment"]["failures"] == [{"sop_instance_uid": lost, "reason": 0x0112}]
    items = _items(daemon, request[0])
    assert items[lost] == ("failed", 0x0112)
    assert sorted(v for k, v in items.items() if k != lost) == [("committed", None)] * 2


def _job_row(daemon: KioskdProcess, job_id: int) -> dict[str, Any]:
    (row,) = index_rows(daemon, "SELECT * FROM jobs WHERE id = ?", (job_id,))
    return row


@pytest.mark.parametrize("killed_while", ["parked", "waiting on the association"])
def test_kill9_between_action_and_report(
    make_kioskd: MakeKioskd, tmp_path: Path, killed_while: str
) -> None:
    """The transaction is persisted before the N-ACTION; a restarted kioskd still matches the
    report and finishes the job, whether it died while the job was parked or while the job
    still held the N-ACTION's association open."""
    study = _study(tmp_path / "data", (2,))
    parked = killed_while == "parked"
    with CommitScp(tmp_path / "scp") as scp:
        daemon = _kioskd(
            make_kioskd,
            {"archive": (scp.ae_title, scp.port)},
            commitment={"same_association_wait_seconds": 0 if parked else 30},
        )
        daemon.start()
        _receive(daemon, study)
        job_id = _json(daemon, "send", "archive", study.uid, "--commit")["id"]
        request = scp.wait_request()
        if parked:
            assert wait_until(lambda: _job_row(daemon, job_id)["state"] == "queued", 10)
            assert json.loads(_job_row(daemon, job_id)["progress"])["phase"] == (
                "awaiting storage commitment"
            )
        else:
            assert wait_until(lambda: _commitments(daemon)[0]["requested_at"], 10)
            assert _job_row(daemon, job_id)["state"] == "running"
        daemon.kill9()

        start_without_probe(daemon)
        status = scp.report(daemon.port, request)
        job = _json(daemon, "job", str(job_id), "--wait", "--timeout", "60")
    assert status == 0x0000
    assert job["state"] == "succeeded", job
    assert job["result"]["commitment"]["transaction_uid"] == request[0]
    # Waiting for the report is no attempt; the run a crash interrupted is one.
    assert job["attempts"] == (1 if parked else 2)
    assert len(scp.requests) == 1  # the N-ACTION was not repeated
    assert set(_items(daemon, request[0]).values()) == {("committed", None)}


def test_no_report_in_time_fails_the_job_and_a_late_report_gets_0213(
    make_kioskd: MakeKioskd, tmp_path: Path
) -> None:
    study = _study(tmp_path / "data", (1,))
    with CommitScp(tmp_path / "scp") as scp:
        daemon = _kioskd(
            make_kioskd,
            {"archive": (scp.ae_title, scp.port)},
            commitment={"timeout_hours": 1.5 / 3600, "same_association_wait_seconds": 0},
        )
        daemon.start()
        _receive(daemon, study)
        started = time.monotonic()
        job = _json(daemon, "send", "archive", study.uid, "--commit", "--wait", "--timeout", "60")
        assert time.monotonic() - started < 15
        request = scp.wait_request()
        late = scp.report(daemon.port, request)
    assert job["state"] == "failed", job
    assert "no storage commitment report" in job["error"]
    assert late == commitment.REPORT_RESOURCE_LIMITATION
    assert _commitments(daemon)[0]["state"] == "expired"


def test_report_statuses(make_kioskd: MakeKioskd, tmp_path: Path) -> None:
    """0x0211 unknown transaction, 0x0113 bad event type, 0x0115 instance never requested
    (nothing recorded), 0x0213 expired, 0x0000 for a matching report."""
    daemon = _kioskd(make_kioskd, {})
    daemon.start()
    store = CommitmentStore(daemon.index_file)
    try:
        known, stale = generate_uid(), generate_uid()
        sops = [(CT, generate_uid()), (CT, generate_uid())]
        store.create(known, node="x", remote_ae="X", instances=sops, expires_at=time.time() + 60)
        store.create(stale, node="x", remote_ae="X", instances=sops, expires_at=time.time() - 1)

        assert send_report(daemon.port, report_dataset(generate_uid(), sops)) == 0x0211
        assert send_report(daemon.port, report_dataset(known, sops), event_type=3) == 0x0113
        stranger = [*sops, (CT, generate_uid())]
        assert send_report(daemon.port, report_dataset(known, stranger)) == 0x0115
        assert {i["state"] for i in store.items(known)} == {"pending"}
        assert send_report(daemon.port, report_dataset(stale, sops)) == 0x0213
        assert send_report(daemon.port, report_dataset(known, sops)) == 0x0000
        txn = store.get(known)
        assert txn is not None and txn.state == "committed" and txn.committed_count == 2
        # A repeated report (the peer missed our answer) is answered the same way.
        assert send_report(daemon.port, report_dataset(known, sops)) == 0x0000
    finally:
        store.close()
    assert "for unknown transaction" in daemon.log()


def test_conformance_statement_lists_every_report_status() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("Storage Commitment Push Model SCU") :]
    for code in commitment.REPORT_STATUS_WHEN:
        assert f"0x{code:04X}" in section, f"0x{code:04X} missing from docs/conformance.md"


@pytest.mark.parametrize("bad", [[], ["--commit"]])
def test_send_needs_something_to_send(make_kioskd: MakeKioskd, bad: list[str]) -> None:
    daemon = _kioskd(make_kioskd, {"archive": ("ARCHIVE", 104)})
    daemon.root.mkdir(parents=True, exist_ok=True)
    daemon.write_config()
    result = daemon.kioskctl("send", "archive", *bad)
    assert result.returncode == 1
    assert "needs a study, series or instance" in result.stderr


# -- parking a job (no peers) -------------------------------------------------------------------


def test_parking_keeps_attempts_and_honours_a_settled_transaction(tmp_path: Path) -> None:
    db = tmp_path / "kiosk.sqlite"
    jobs = DeferringJobStore(db, backoff_seconds=0)
    commitments = CommitmentStore(db)
    try:
        pending, settled = generate_uid(), generate_uid()
        sops = [(CT, generate_uid())]
        for uid in (pending, settled):
            commitments.create(uid, node="n", remote_ae="N", instances=sops, expires_at=1e12)
        commitments.apply_report(Report(settled, 1, sops))
        until = time.time() + 3600

        job = jobs.submit("send", {}, max_attempts=1)
        assert jobs.claim(("send",)) is not None
        jobs.request_parking(job.id, until, "awaiting storage commitment", pending)
        assert jobs.fail(job.id, "parked", retryable=True) == "queued"
        parked = jobs.get(job.id)
        assert parked.attempts == 0 and parked.next_attempt_at == until
        assert parked.progress.phase == "awaiting storage commitment" and parked.error is None
        assert jobs.claim(("send",)) is None  # not before its time ...
        assert jobs.wake(job.id)  # ... unless woken
        assert jobs.claim(("send",)) is not None

        # The report came while the handler still ran: the job is ready at once.
        jobs.request_parking(job.id, until, "awaiting storage commitment", settled)
        jobs.fail(job.id, "parked", retryable=True)
        assert jobs.get(job.id).next_attempt_at == 0

        # Cancelled while it ran: it ends instead of waiting.
        assert jobs.claim(("send",)) is not None
        jobs.cancel(job.id)
        jobs.request_parking(job.id, until, "awaiting storage commitment", pending)
        assert jobs.fail(job.id, "parked", retryable=True) == "cancelled"
        assert jobs.get(job.id).state == "cancelled"
    finally:
        jobs.close()
        commitments.close()
