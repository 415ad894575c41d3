"""The pieces of disc import that need no peer: the waiting state of the job store, import
requests, the disc intake from udev events, the replay event source, candidate choice."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from appliance.config.schema import KioskConfig
from appliance.drives.disc_events import DiscEventKind, disc_event
from appliance.drives.udev_replay import FileEventSource
from appliance.drives.udev_watch import DiscWatcher
from appliance.importer.reconcile import Candidate, DiscPatient, unique_choice
from appliance.jobs.disc_intake import DiscIntake, request_for
from appliance.jobs.import_request import (
    IMPORT,
    ImportRequest,
    ImportRequestError,
    PatientDecision,
)
from appliance.jobs.model import Job, JobState, JobStateError
from appliance.jobs.queue import JobStore
from appliance.jobs.runner import final_state

UDEV = Path(__file__).parent / "data" / "udev"


def _udev(name: str) -> dict[str, str]:
    doc: dict[str, Any] = json.loads((UDEV / f"{name}.json").read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in doc["properties"].items()}


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs.sqlite")


# -- the waiting state ----------------------------------------------------------------------------


def test_a_job_waiting_for_the_clerk_is_not_claimed_and_goes_on_with_the_answer(
    store: JobStore,
) -> None:
    request = ImportRequest(source="/dev/sr0", destination="pacs")
    job = store.submit(IMPORT, request.to_params())
    claimed = store.claim((IMPORT,))
    assert claimed is not None and claimed.attempts == 1
    store.await_input(job.id, "awaiting reconciliation: 1 patient(s) need a decision")
    waiting = store.get(job.id)
    assert waiting.state is JobState.AWAITING_RECONCILIATION
    assert not waiting.state.final
    assert waiting.attempts == 0  # waiting is not a failed attempt
    assert waiting.progress.phase.startswith("awaiting reconciliation")
    assert store.claim((IMPORT,)) is None
    # --wait returns when the job needs the clerk, not only when it ended.
    assert final_state(store, job.id, timeout=5).state is JobState.AWAITING_RECONCILIATION

    decided = request.with_decisions([PatientDecision("abc", "keep", source="disc")])
    resumed = store.provide_input(job.id, decided.to_params())
    assert resumed.state is JobState.QUEUED
    again = store.claim((IMPORT,))
    assert again is not None and again.id == job.id
    assert ImportRequest.from_params(again.params).decisions[0].action == "keep"
    with pytest.raises(JobStateError):
        store.provide_input(job.id, decided.to_params())


def test_a_waiting_job_can_be_cancelled_at_once(store: JobStore) -> None:
    job = store.submit(IMPORT, ImportRequest(source="/x").to_params())
    store.claim((IMPORT,))
    store.await_input(job.id, "awaiting reconciliation")
    assert store.cancel(job.id).state is JobState.CANCELLED


# -- requests and decisions -----------------------------------------------------------------------


def test_request_round_trip_and_merge_of_decisions() -> None:
    request = ImportRequest(
        source="/tmp/disc.iso",
        destination="pacs",
        reconcile="typed",
        typed={"patient_id": "L1"},
        decisions=[PatientDecision("p1", "skip", source="disc", decided_by="clerk")],
    )
    assert ImportRequest.from_params(request.to_params()) == request
    merged = request.with_decisions(
        [
            PatientDecision("p1", "apply", {"patient_name": "A^B"}, "typed", "clerk"),
            PatientDecision("p2", "keep", source="disc"),
        ]
    )
    by_patient = {d.patient: d for d in merged.decisions}
    assert by_patient["p1"].action == "apply" and by_patient["p2"].action == "keep"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ImportRequest(source=""), "needs a source"),
        (lambda: ImportRequest(source="/x", reconcile="typed"), "needs values"),
        (lambda: ImportRequest(source="/x", typed={"colour": "red"}), "unknown identity key"),
        (lambda: PatientDecision("p", "apply"), "at least one value"),
        (lambda: PatientDecision("p", "burn"), "unknown action"),  # type: ignore[arg-type]
    ],
)
def test_malformed_requests_are_refused(make: Any, message: str) -> None:
    with pytest.raises(ImportRequestError, match=message):
        make()


def test_unknown_params_are_refused() -> None:
    with pytest.raises(ImportRequestError, match="bad import job parameters"):
        ImportRequest.from_params({"source": "/x", "colour": "red"})


# -- the disc intake ------------------------------------------------------------------------------


def _config(**importer: Any) -> KioskConfig:
    return KioskConfig.model_validate(
        {
            "nodes": {"pacs": {"ae_title": "PACS", "host": "127.0.0.1", "port": 104}},
            "drives": {"front": {"kind": "xorriso", "device": "/dev/sr0"}},
            "importer": importer,
        }
    )


def test_a_detected_disc_becomes_one_import_job(store: JobStore) -> None:
    inserted = disc_event("change", _udev("dvd_data_iso9660"))
    assert inserted is not None and inserted.kind is DiscEventKind.INSERTED
    submitted: list[Job] = []
    intake = DiscIntake(_config(), store, submitted.append)
    intake(inserted)
    intake(inserted)  # udev says it again (coldplug at a restart): no second job
    (job,) = store.list_jobs(kind=IMPORT)
    assert submitted == [job]
    request = ImportRequest.from_params(job.params)
    assert request.source == inserted.device
    assert request.reconcile is None and request.decided_by == "udev"
    assert request.detected["device"] == inserted.device


def test_an_auto_import_rule_names_destination_and_method() -> None:
    event = disc_event("change", _udev("dvd_data_iso9660"))
    assert event is not None
    config = _config(auto_import=[{"destination": "pacs", "reconcile": "keep"}])
    request = request_for(config, event)
    assert request.destination == "pacs" and request.reconcile == "keep"
    assert request.decided_by == "rule importer.auto_import.0"
    # The fixture's drive is /dev/sr0, configured as "front": a rule for another drive does
    # not apply, a rule for "front" does.
    assert request.drive == "front"
    other = _config(auto_import=[{"destination": "pacs", "drive": "front"}])
    assert request_for(other, event).reconcile == "mwl"
    elsewhere = KioskConfig.model_validate(
        {
            "nodes": {"pacs": {"ae_title": "PACS", "host": "127.0.0.1", "port": 104}},
            "drives": {
                "front": {"kind": "xorriso", "device": "/dev/sr0"},
                "back": {"kind": "xorriso", "device": "/dev/sr9"},
            },
            "importer": {"auto_import": [{"destination": "pacs", "drive": "back"}]},
        }
    )
    assert request_for(elsewhere, event).reconcile is None


def test_removal_creates_nothing(store: JobStore) -> None:
    removed = disc_event("change", _udev("event_change_eject"))
    assert removed is not None and removed.kind is DiscEventKind.REMOVED
    DiscIntake(_config(), store, lambda job: None)(removed)
    assert store.list_jobs(kind=IMPORT) == []


# -- the replay source ----------------------------------------------------------------------------


def test_replayed_events_reach_the_watcher_and_bad_lines_are_skipped(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    seen: list[str] = []
    arrived = threading.Event()

    def on_disc(event: Any) -> None:
        seen.append(f"{event.kind}:{event.device}")
        arrived.set()

    watcher = DiscWatcher(on_disc, FileEventSource(events), poll_seconds=0.2)
    watcher.start()
    try:
        properties = {**_udev("dvd_data_iso9660"), "DEVNAME": str(tmp_path / "disc.iso")}
        with events.open("a") as fh:
            fh.write("not json\n")
            fh.write(json.dumps({"action": "change", "properties": properties}) + "\n")
        assert arrived.wait(10)
    finally:
        watcher.stop()
    assert seen == [f"inserted:{tmp_path / 'disc.iso'}"]


# -- choosing a candidate -------------------------------------------------------------------------


def _candidate(patient_id: str, accession: str = "") -> Candidate:
    values = {"patient_id": patient_id, "patient_name": "DOE^JANE"}
    if accession:
        values["accession_number"] = accession
    return Candidate("mwl", values)


def test_unique_choice() -> None:
    assert unique_choice([]) is None
    one = unique_choice([_candidate("L1", "A1")])
    assert one == {"patient_id": "L1", "patient_name": "DOE^JANE", "accession_number": "A1"}
    # Two orders of one patient: the patient is certain, the order is not.
    same = unique_choice([_candidate("L1", "A1"), _candidate("L1", "A2")])
    assert same == {"patient_id": "L1", "patient_name": "DOE^JANE"}
    assert unique_choice([_candidate("L1"), _candidate("L2")]) is None


def test_disc_patient_family_name() -> None:
    assert DiscPatient("k", patient_name="Doe^Jane").family_name == "DOE"
    assert DiscPatient("k").family_name == ""
