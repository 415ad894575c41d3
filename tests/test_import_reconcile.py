"""Disc import end to end: reconciliation against DCMTK wlmscpfs (Modality Worklist) and Orthanc
(Q/R), the clerk's decisions through `kioskctl reconcile`, forwarding to Orthanc with Storage
Commitment, new UIDs and re-import, and `kioskctl disc scan`.

One Orthanc, one wlmscpfs and one kioskd serve the whole module (Orthanc is slow to start and
stop); every test uses patients of its own, so the tests do not see each other's data. Discs
are ISO images made by DCMTK `dcmmkdir` and `xorriso` from synthetic instances; what arrives is
read back from Orthanc's REST API and checked with pydicom and DCMTK `dcmdump`.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.peers.data import make_instance
from tests.peers.import_discs import DCMDUMP, make_iso, run_dcmmkdir
from tests.peers.kioskd import KioskdProcess
from tests.peers.lifecycle import start_without_probe
from tests.peers.net import free_port
from tests.peers.orthanc import Orthanc
from tests.peers.wlmscpfs import Wlmscpfs, WorklistEntry

WAIT = ("--wait", "--timeout", "60")


@dataclass(frozen=True)
class Person:
    """A patient as another hospital's disc names them, with one study of `series` sizes."""

    name: str
    patient_id: str
    birth_date: str
    sex: str = "F"
    accession: str = ""
    series: tuple[int, ...] = (2,)

    def phi(self) -> list[str]:
        """What must never appear in kioskd's log."""
        family = self.name.split("^", 1)[0]
        return [self.name, self.name.replace("^", " "), family, self.patient_id, self.birth_date]


@dataclass
class Disc:
    """An ISO image and what is on it."""

    iso: Path
    study_of: dict[str, str] = field(default_factory=dict)
    """Disc Patient ID -> Study Instance UID."""
    series_of: dict[str, str] = field(default_factory=dict)
    """SOP Instance UID -> Series Instance UID."""
    sops_of: dict[str, set[str]] = field(default_factory=dict)
    """Disc Patient ID -> SOP Instance UIDs."""


def _disc(root: Path, people: list[Person]) -> Disc:
    """`root/tree/DICOM/IMnnnnnn` for every person's study, indexed by dcmmkdir, as an ISO."""
    made, files = root / "made", root / "tree" / "DICOM"
    made.mkdir(parents=True)
    files.mkdir(parents=True)
    disc = Disc(root / "disc.iso")
    count = 0
    for person in people:
        study = generate_uid()
        disc.study_of[person.patient_id] = study
        disc.sops_of[person.patient_id] = set()
        for size in person.series:
            series = generate_uid()
            for number in range(1, size + 1):
                path = make_instance(
                    made,
                    patient_name=person.name,
                    patient_id=person.patient_id,
                    birth_date=person.birth_date,
                    study_uid=study,
                    series_uid=series,
                    rows=16,
                    columns=16,
                    instance_number=number,
                )
                ds = pydicom.dcmread(path)
                ds.AccessionNumber = person.accession
                ds.PatientSex = person.sex
                ds.save_as(files / f"IM{count:06d}", enforce_file_format=True)
                count += 1
                disc.series_of[str(ds.SOPInstanceUID)] = series
                disc.sops_of[person.patient_id].add(str(ds.SOPInstanceUID))
    run_dcmmkdir(root / "tree")
    make_iso(root / "tree", disc.iso)
    return disc


@dataclass
class Peers:
    """The module's Orthanc, worklist SCP and kioskd."""

    orthanc: Orthanc
    worklist: Wlmscpfs
    daemon: KioskdProcess


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    root = tmp_path_factory.mktemp("import")
    kiosk_port = free_port()
    orthanc = Orthanc(root / "orthanc", modalities={"kiosk": ("KIOSK", "127.0.0.1", kiosk_port)})
    worklist = Wlmscpfs(root / "wl")
    worklist.prepare()
    with contextlib.ExitStack() as stack:
        orthanc.start()
        # Orthanc's orderly exit takes seconds and its data is scratch.
        stack.callback(orthanc.stop, timeout=0.5)
        stack.enter_context(worklist)
        daemon = KioskdProcess(
            root / "kioskd",
            {
                "nodes": {
                    "orthanc": {
                        "ae_title": orthanc.ae_title,
                        "host": "127.0.0.1",
                        "port": orthanc.port,
                    },
                    "worklist": {
                        "ae_title": worklist.ae_title,
                        "host": "127.0.0.1",
                        "port": worklist.port,
                    },
                },
                "importer": {
                    "udev": False,
                    "eject": False,
                    "mwl_node": "worklist",
                    "qr_node": "orthanc",
                },
                "retrieve": {"retry_delay_seconds": 0.2},
            },
            port=kiosk_port,
        )
        stack.callback(daemon.kill9)
        start_without_probe(daemon)
        yield Peers(orthanc, worklist, daemon)


# -- helpers -------------------------------------------------------------------------------------


def _json(daemon: KioskdProcess, *args: str) -> Any:
    result = daemon.kioskctl("--json", *args)
    assert result.returncode in (0, 1) and result.stdout, result.stderr
    return json.loads(result.stdout)


def _import(daemon: KioskdProcess, disc: Disc, *how: str) -> dict[str, Any]:
    job: dict[str, Any] = _json(daemon, "import", str(disc.iso), "--dest", "orthanc", *how, *WAIT)
    return job


def _reconcile(daemon: KioskdProcess, job: dict[str, Any], key: str, *how: str) -> dict[str, Any]:
    answer: dict[str, Any] = _json(
        daemon, "reconcile", str(job["id"]), "--patient", key, *how, *WAIT
    )
    return answer


def _download(orthanc: Orthanc, path: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{orthanc.http_port}{path}", timeout=30) as response:
        data: bytes = response.read()
    return data


def _stored(orthanc: Orthanc, study_uid: str) -> dict[str, tuple[Dataset, bytes]]:
    """SOP Instance UID -> (data set, file bytes) of every instance Orthanc holds of a study."""
    ids = orthanc.post(
        "/tools/find", {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}}
    )
    found: dict[str, tuple[Dataset, bytes]] = {}
    for instance_id in ids:
        raw = _download(orthanc, f"/instances/{instance_id}/file")
        ds = pydicom.dcmread(BytesIO(raw))
        found[str(ds.SOPInstanceUID)] = (ds, raw)
    return found


def _only_patient(job: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ((key, entry),) = job["result"]["reconciliation"]["patients"].items()
    return key, entry


def _key_of(job: dict[str, Any], patient_id: str) -> str:
    (key,) = [p["key"] for p in job["result"]["summary"]["patients"] if p["id"] == patient_id]
    return str(key)


def _assert_committed(job: dict[str, Any], count: int) -> None:
    assert job["state"] == "succeeded", json.dumps(job)[:3000]
    result = job["result"]
    assert result["counts"]["sent"] == result["counts"]["total"] == count
    assert result["counts"]["failed"] == 0
    assert result["commitment"]["state"] == "committed"
    assert result["counts"]["committed"] == result["commitment"]["committed"] == count


def _assert_no_phi(daemon: KioskdProcess, *people: Person, extra: tuple[str, ...] = ()) -> None:
    log = daemon.log()
    assert "import finished" in log  # the log is the daemon's, with imports in it
    for value in [v for p in people for v in p.phi()] + list(extra):
        assert value not in log, f"patient data in kioskd's log: {value!r}"


def _original(ds: Dataset) -> tuple[Dataset, Dataset]:
    """The last Original Attributes item and its Modified Attributes."""
    record = ds.OriginalAttributesSequence[-1]
    return record, record.ModifiedAttributesSequence[0]


# -- 1. MWL: one unique match ------------------------------------------------------------------


def test_mwl_match_gives_the_local_identity_and_records_the_disc_values(
    peers: Peers, tmp_path: Path
) -> None:
    anna = Person("SMITH^ANNA", "EXT-123", "19700101", accession="EXT-ACC-5", series=(2, 1))
    disc = _disc(tmp_path, [anna])
    # The local RIS spells the name in mixed case: wlmscpfs matches PN case-sensitively, so a
    # query for "SMITH*" alone would miss it.
    peers.worklist.add(
        WorklistEntry(
            patient_name="Smith^Anna",
            patient_id="LOC-9",
            issuer_of_patient_id="HOSP",
            birth_date="19700101",
            sex="F",
            accession_number="ACC-LOCAL-1",
            study_uid=generate_uid(),
            requested_procedure_id="RP-77",
            requested_procedure_description="CT ABDOMEN",
            step_id="SPS-77",
        )
    )
    # Born the same day, another family name: never a candidate.
    peers.worklist.add(
        WorklistEntry(
            patient_name="JONES^ANNA",
            patient_id="LOC-10",
            birth_date="19700101",
            accession_number="ACC-LOCAL-2",
            study_uid=generate_uid(),
        )
    )
    job = _import(peers.daemon, disc, "--mwl")
    _assert_committed(job, 3)

    key, entry = _only_patient(job)
    assert entry["disc"]["patient_id"] == "EXT-123"
    assert [c["values"]["patient_id"] for c in entry["candidates"]] == ["LOC-9"]
    local = {
        "patient_name": "Smith^Anna",
        "patient_id": "LOC-9",
        "issuer_of_patient_id": "HOSP",
        "patient_birth_date": "19700101",
        "patient_sex": "F",
        "accession_number": "ACC-LOCAL-1",
        "requested_procedure_id": "RP-77",
        "requested_procedure_description": "CT ABDOMEN",
    }
    assert entry["decision"] == {
        "action": "apply",
        "source": "mwl",
        "decided_by": "kioskctl",
        "values": local,
    }
    assert "question" not in entry

    stored = _stored(peers.orthanc, disc.study_of["EXT-123"])
    assert set(stored) == disc.sops_of["EXT-123"]  # UIDs kept
    for ds, _ in stored.values():
        assert (ds.PatientName, ds.PatientID, ds.IssuerOfPatientID) == (
            "Smith^Anna",
            "LOC-9",
            "HOSP",
        )
        assert (ds.PatientBirthDate, ds.PatientSex) == ("19700101", "F")
        assert ds.AccessionNumber == "ACC-LOCAL-1"
        (request,) = ds.RequestAttributesSequence
        assert request.AccessionNumber == "ACC-LOCAL-1"
        assert request.RequestedProcedureID == "RP-77"
        assert request.RequestedProcedureDescription == "CT ABDOMEN"
        record, old = _original(ds)
        assert record.ModifyingSystem == "KIOSK"
        assert record.ReasonForTheAttributeModification == "COERCE"
        assert record.AttributeModificationDateTime
        assert ds.InstanceCoercionDateTime == record.AttributeModificationDateTime
        assert old.PatientID == "EXT-123"
        assert old.PatientName == "SMITH^ANNA"
        assert old.AccessionNumber == "EXT-ACC-5"
        assert old.IssuerOfPatientID in ("", None)  # the namespace of the old ID: none given
        assert "RequestAttributesSequence" in old
        assert len(ds.OriginalAttributesSequence) == 1

    # DCMTK reads the file Orthanc keeps, and sees the same thing.
    sample = tmp_path / "from-orthanc.dcm"
    sample.write_bytes(next(iter(stored.values()))[1])
    dump = subprocess.run(
        [DCMDUMP, "+L", str(sample)], capture_output=True, text=True, timeout=60, check=False
    )
    assert dump.returncode == 0, dump.stderr
    assert "(0400,0561) SQ" in dump.stdout
    for text in ("[LOC-9]", "[EXT-123]", "[SMITH^ANNA]", "[COERCE]", "[KIOSK]", "[RP-77]"):
        assert text in dump.stdout, text
    assert "W: " not in dump.stderr and "E: " not in dump.stderr, dump.stderr
    assert key in json.dumps(job["result"]["summary"])
    _assert_no_phi(peers.daemon, anna, extra=("Smith^Anna", "JONES", "LOC-9", "LOC-10"))


# -- 2. MWL: two patients match ----------------------------------------------------------------


def test_two_worklist_patients_wait_for_the_clerk_who_picks_one(
    peers: Peers, tmp_path: Path
) -> None:
    carl = Person("BROWN^CARL", "EXT-200", "19650505", sex="M", accession="EXT-ACC-200")
    disc = _disc(tmp_path, [carl])
    for pid, name, accession in (
        ("LOC-21", "BROWN^CARL", "ACC-21"),
        ("LOC-22", "BROWN^CARL^J", "ACC-22"),
    ):
        peers.worklist.add(
            WorklistEntry(
                patient_name=name,
                patient_id=pid,
                birth_date="19650505",
                accession_number=accession,
                study_uid=generate_uid(),
                requested_procedure_id=f"RP-{pid}",
                requested_procedure_description="MR HEAD",
            )
        )
    # What the clerk sees: the disc's patient, the numbered candidates, the question.
    shown = peers.daemon.kioskctl(
        "import", str(disc.iso), "--dest", "orthanc", "--mwl", "--wait", "--timeout", "60"
    )
    assert shown.returncode == 0, shown.stderr
    first, *lines = shown.stdout.splitlines()
    job_id = first.split()[1]
    assert first == f"job {job_id} import: awaiting_reconciliation", shown.stdout
    job = _json(peers.daemon, "job", job_id)
    key, entry = _only_patient(job)
    assert "decision" not in entry
    assert entry["question"].startswith("2 candidate(s) from MWL")
    candidates = entry["candidates"]
    assert sorted(c["values"]["patient_id"] for c in candidates) == ["LOC-21", "LOC-22"]
    assert f"  patient {key}: BROWN^CARL  ID EXT-200  born 19650505  sex M" in lines
    for number, candidate in enumerate(candidates):
        values = candidate["values"]
        assert any(
            x.startswith(f"    candidate {number} (mwl): {values['patient_name']}  ID ")
            and values["patient_id"] in x
            for x in lines
        ), shown.stdout
    assert f"    {entry['question']}" in lines
    assert {c["source"] for c in candidates} == {"mwl"}
    assert _stored(peers.orthanc, disc.study_of["EXT-200"]) == {}  # nothing sent yet

    chosen = candidates[1]["values"]
    done = _reconcile(peers.daemon, job, key, "--candidate", "1")
    _assert_committed(done, 1 * 2)
    assert done["id"] == job["id"]
    decision = done["result"]["reconciliation"]["patients"][key]["decision"]
    assert decision == {"action": "apply", "source": "mwl", "decided_by": "clerk", "values": chosen}
    stored = _stored(peers.orthanc, disc.study_of["EXT-200"])
    assert set(stored) == disc.sops_of["EXT-200"]
    for ds, _ in stored.values():
        assert ds.PatientID == chosen["patient_id"]
        assert str(ds.PatientName) == chosen["patient_name"]
        assert ds.AccessionNumber == chosen["accession_number"]
        assert ds.RequestAttributesSequence[0].RequestedProcedureID == f"RP-{chosen['patient_id']}"
        assert _original(ds)[1].PatientID == "EXT-200"

    # A candidate that does not exist is refused, and the job stays as it is.
    refused = peers.daemon.kioskctl(
        "reconcile", str(job["id"]), "--patient", key, "--candidate", "7"
    )
    assert refused.returncode != 0
    _assert_no_phi(peers.daemon, carl, extra=("LOC-21", "LOC-22"))


# -- 3. MWL: no match ----------------------------------------------------------------------------


def test_no_worklist_match_asks_and_typed_values_finish_it(peers: Peers, tmp_path: Path) -> None:
    eve = Person("GREEN^EVE", "EXT-300", "19900909", accession="EXT-ACC-300")
    disc = _disc(tmp_path, [eve])
    job = _import(peers.daemon, disc, "--mwl")
    assert job["state"] == "awaiting_reconciliation", job
    key, entry = _only_patient(job)
    assert entry["candidates"] == []
    assert entry["question"].startswith("no match in MWL")

    # A typing mistake is refused before a job holds it: at submission ...
    refused = peers.daemon.kioskctl(
        "import", str(disc.iso), "--dest", "orthanc", "--set", "PatientSex=female"
    )
    assert refused.returncode == 1 and "PatientSex" in refused.stderr, refused.stderr
    # ... and as the clerk's answer: the job still waits for the clerk.
    typo = peers.daemon.kioskctl(
        "reconcile", str(job["id"]), "--patient", key, "--set", "PatientBirthDate=1990-09-09"
    )
    assert typo.returncode == 1
    assert "PatientBirthDate" in typo.stderr and "1990-09-09" not in typo.stderr
    assert _json(peers.daemon, "job", str(job["id"]))["state"] == "awaiting_reconciliation"
    done = _reconcile(
        peers.daemon,
        job,
        key,
        "--set",
        "PatientID=LOC-31",
        "--set",
        "IssuerOfPatientID=HOSP",
        "--set",
        "patient_name=Green^Eve",
        "--by",
        "clerk-7",
    )
    _assert_committed(done, 2)
    decision = done["result"]["reconciliation"]["patients"][key]["decision"]
    assert decision["source"] == "typed" and decision["decided_by"] == "clerk-7"
    stored = _stored(peers.orthanc, disc.study_of["EXT-300"])
    assert set(stored) == disc.sops_of["EXT-300"]
    for ds, _ in stored.values():
        assert (str(ds.PatientName), ds.PatientID, ds.IssuerOfPatientID) == (
            "Green^Eve",
            "LOC-31",
            "HOSP",
        )
        assert ds.PatientBirthDate == "19900909"  # not typed: the disc's value stays
        assert ds.AccessionNumber == "EXT-ACC-300"
        assert "RequestAttributesSequence" not in ds
        old = _original(ds)[1]
        assert (str(old.PatientName), old.PatientID) == ("GREEN^EVE", "EXT-300")
        assert "PatientBirthDate" not in old
    _assert_no_phi(peers.daemon, eve, extra=("LOC-31",))


# -- 4. Q/R against Orthanc ------------------------------------------------------------------------


def test_qr_match_on_the_pacs_gives_its_patient_id(peers: Peers, tmp_path: Path) -> None:
    known = tmp_path / "known"
    known.mkdir()
    peers.orthanc.upload(
        make_instance(
            known, patient_name="DOE^JANE", patient_id="PACS-77", birth_date="19800202", rows=8
        )
    )
    jane = Person("DOE^JANE", "EXT-1", "19800202")
    disc = _disc(tmp_path, [jane])
    job = _import(peers.daemon, disc, "--qr", "orthanc")
    _assert_committed(job, 2)
    _, entry = _only_patient(job)
    assert [c["values"]["patient_id"] for c in entry["candidates"]] == ["PACS-77"]
    assert entry["decision"]["source"] == "qr"
    assert entry["decision"]["values"]["patient_id"] == "PACS-77"
    stored = _stored(peers.orthanc, disc.study_of["EXT-1"])
    assert set(stored) == disc.sops_of["EXT-1"]
    for ds, _ in stored.values():
        assert ds.PatientID == "PACS-77"
        assert _original(ds)[1].PatientID == "EXT-1"
        assert "RequestAttributesSequence" not in ds  # Q/R names a patient, not an order
    # Orthanc files the imported study under the patient it already knew.
    patients = peers.orthanc.post(
        "/tools/find", {"Level": "Patient", "Query": {"PatientID": "PACS-77"}}
    )
    assert len(patients) == 1
    assert len(peers.orthanc.get(f"/patients/{patients[0]}")["Studies"]) == 2
    _assert_no_phi(peers.daemon, jane, extra=("PACS-77",))


# -- 5. several patients, decided one by one -----------------------------------------------------


def test_multi_patient_disc_keep_skip_and_set(peers: Peers, tmp_path: Path) -> None:
    white = Person("WHITE^AL", "EXT-51", "19510101", sex="M", series=(2,))
    black = Person("BLACK^BO", "EXT-52", "19520202", sex="M", series=(1, 2))
    grey = Person("GREY^CY", "EXT-53", "19530303", series=(1,))
    disc = _disc(tmp_path, [white, black, grey])
    job = _import(peers.daemon, disc)
    assert job["state"] == "awaiting_reconciliation", job
    summary = job["result"]["summary"]
    assert summary["totals"]["patients"] == 3
    assert summary["totals"]["studies"] == 3
    assert summary["totals"]["series"] == 4
    assert summary["totals"]["instances"] == 6
    assert {p["id"]: len(p["studies"]) for p in summary["patients"]} == {
        "EXT-51": 1,
        "EXT-52": 1,
        "EXT-53": 1,
    }
    waiting = job["result"]["reconciliation"]["patients"]
    assert len(waiting) == 3
    assert all(e["question"].startswith("no rule") for e in waiting.values())

    keys = {p.patient_id: _key_of(job, p.patient_id) for p in (white, black, grey)}
    step = _reconcile(peers.daemon, job, keys["EXT-51"], "--keep")
    assert step["state"] == "awaiting_reconciliation", step
    step = _reconcile(peers.daemon, job, keys["EXT-52"], "--skip")
    assert step["state"] == "awaiting_reconciliation", step
    assert "decision" in step["result"]["reconciliation"]["patients"][keys["EXT-52"]]
    done = _reconcile(
        peers.daemon, job, keys["EXT-53"], "--set", "PatientID=LOC-53", "--set", "PatientSex=M"
    )
    _assert_committed(done, 2 + 1)
    result = done["result"]
    assert result["rewrite"]["skipped_patients"] == [keys["EXT-52"]]
    assert result["reconciliation"]["skipped_patients"] == 1
    assert result["reconciliation"]["skipped_instances"] == 3
    assert set(result["instances"]) == disc.sops_of["EXT-51"] | disc.sops_of["EXT-53"]

    assert _stored(peers.orthanc, disc.study_of["EXT-52"]) == {}
    kept = _stored(peers.orthanc, disc.study_of["EXT-51"])
    assert set(kept) == disc.sops_of["EXT-51"]
    for ds, _ in kept.values():
        assert (str(ds.PatientName), ds.PatientID) == ("WHITE^AL", "EXT-51")
        assert "OriginalAttributesSequence" not in ds  # nothing was changed
    typed = _stored(peers.orthanc, disc.study_of["EXT-53"])
    assert set(typed) == disc.sops_of["EXT-53"]
    for ds, _ in typed.values():
        assert (str(ds.PatientName), ds.PatientID, ds.PatientSex) == ("GREY^CY", "LOC-53", "M")
        old = _original(ds)[1]
        assert (old.PatientID, old.PatientSex) == ("EXT-53", "F")
    _assert_no_phi(peers.daemon, white, black, grey, extra=("LOC-53",))


# -- 6. new UIDs, and importing the same disc again ---------------------------------------------


def test_new_uids_are_consistent_and_a_reimport_gives_the_same(
    peers: Peers, tmp_path: Path
) -> None:
    person = Person("NEWUID^MAX", "EXT-61", "19610606", sex="M", series=(2, 1))
    disc = _disc(tmp_path, [person])
    old_study = disc.study_of["EXT-61"]
    before = peers.orthanc.instance_count()
    job = _import(peers.daemon, disc, "--keep", "--new-uids")
    _assert_committed(job, 3)
    new_sops = set(job["result"]["instances"])
    assert not new_sops & disc.sops_of["EXT-61"]
    assert _stored(peers.orthanc, old_study) == {}
    (found,) = peers.orthanc.post(
        "/tools/find", {"Level": "Study", "Query": {"PatientID": "EXT-61"}, "Expand": True}
    )
    new_study = found["MainDicomTags"]["StudyInstanceUID"]
    assert new_study != old_study
    stored = _stored(peers.orthanc, new_study)
    assert set(stored) == new_sops
    series_map: dict[str, set[str]] = {}
    for sop, (ds, _) in stored.items():
        record, old = _original(ds)
        assert record.ReasonForTheAttributeModification == "COERCE"
        assert old.StudyInstanceUID == old_study
        assert old.SOPInstanceUID in disc.sops_of["EXT-61"]
        assert old.SeriesInstanceUID == disc.series_of[old.SOPInstanceUID]
        assert ds.file_meta.MediaStorageSOPInstanceUID == sop
        assert ds.PatientID == "EXT-61"  # kept: only the UIDs changed
        series_map.setdefault(old.SeriesInstanceUID, set()).add(str(ds.SeriesInstanceUID))
    # One new series per old series, none shared: the grouping is the disc's.
    assert all(len(news) == 1 for news in series_map.values())
    assert len({next(iter(n)) for n in series_map.values()}) == len(set(disc.series_of.values()))
    assert peers.orthanc.instance_count() == before + 3

    again = _import(peers.daemon, disc, "--keep", "--new-uids")
    assert again["id"] != job["id"]
    _assert_committed(again, 3)
    assert set(again["result"]["instances"]) == new_sops
    assert peers.orthanc.instance_count() == before + 3
    _assert_no_phi(peers.daemon, person)


# -- 7. disc scan --------------------------------------------------------------------------------


def test_disc_scan_human_and_json(peers: Peers, tmp_path: Path) -> None:
    ida = Person("SCAN^IDA", "EXT-71", "19710707", accession="EXT-ACC-71", series=(2, 1))
    ole = Person("SCAN^OLE", "EXT-72", "19720707", sex="M", series=(1,))
    disc = _disc(tmp_path, [ida, ole])
    scan = _json(peers.daemon, "disc", "scan", str(disc.iso))
    totals = scan["totals"]
    assert (totals["patients"], totals["studies"], totals["series"], totals["instances"]) == (
        2,
        2,
        3,
        4,
    )
    assert totals["skipped"] == 0 and totals["needs_password"] == 0
    assert totals["bytes"] == sum(p.stat().st_size for p in (tmp_path / "tree" / "DICOM").iterdir())
    assert scan["source"]["kind"] == "image"
    by_id = {p["id"]: p for p in scan["patients"]}
    assert set(by_id) == {"EXT-71", "EXT-72"}
    assert by_id["EXT-71"]["birth_date"] == "19710707"
    (study,) = [s for s in scan["studies"] if s["uid"] == disc.study_of["EXT-71"]]
    assert (study["series"], study["instances"], study["accession"]) == (2, 3, "EXT-ACC-71")

    human = peers.daemon.kioskctl("disc", "scan", str(disc.iso))
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert lines[0] == (
        f"{disc.iso}: 4 instance(s) of 2 patient(s), 2 study(ies), {totals['bytes']} bytes; "
        "0 skipped, 0 non-DICOM, 0 encrypted without password"
    )
    for patient in scan["patients"]:
        line = next(x for x in lines if x.startswith(f"  patient {patient['key']}: "))
        assert patient["name"] in line and patient["id"] in line
    assert sum(1 for x in lines if x.startswith("    study ")) == 2
    # Nothing imported, nothing left in the scratch folder.
    assert not any((peers.daemon.var / "import").glob("scan-*"))
