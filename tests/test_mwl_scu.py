"""Modality Worklist SCU against DCMTK wlmscpfs, checked against DCMTK findscu -W."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, fields
from datetime import date
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from appliance.config import KioskConfig, NodeConfig
from appliance.dicom.mwl_scu import (
    KEYS,
    MODALITY_WORKLIST_FIND,
    WorklistItem,
    WorklistQuery,
    build_identifier,
    date_matching_value,
    find_worklist,
)
from appliance.dicom.qr_scu import QueryError, QueryFailedError
from appliance.dicom.scu_session import AssociationFailedError
from tests.peers.net import free_port
from tests.peers.storescp import Storescp
from tests.peers.wlmscpfs import Wlmscpfs, WorklistEntry, findscu_worklist

ENTRIES = {
    "john": WorklistEntry(),
    "jane": WorklistEntry(
        patient_name="DOE^JANE",
        patient_id="PID0002",
        birth_date="19851224",
        sex="F",
        accession_number="ACC0002",
        study_uid="1.2.826.0.1.3680043.8.498.2",
        requested_procedure_id="RP0002",
        requested_procedure_description="MR KNEE",
        modality="MR",
        station_ae="MRSCANNER",
        start_date="20240220",
        start_time="101500",
        step_id="SPS0002",
        step_description="MR knee left",
    ),
    "richard": WorklistEntry(
        patient_name="ROE^RICHARD",
        patient_id="PID0003",
        birth_date="19700101",
        accession_number="ACC0003",
        study_uid="1.2.826.0.1.3680043.8.498.3",
        requested_procedure_id="RP0003",
        start_date="20240305",
        start_time="140000",
        step_id="SPS0003",
    ),
    "juergen": WorklistEntry(
        patient_name="Müller^Jürgen",
        patient_id="PID0004",
        issuer_of_patient_id="KLINIKUM",
        birth_date="19601231",
        accession_number="ACC0004",
        referring_physician="Weiß^Käthe",
        study_uid="1.2.826.0.1.3680043.8.498.4",
        requested_procedure_description="CT Thorax",
        start_date="20240119",
        start_time="090000",
        step_id="SPS0004",
        step_description="Thorax ohne Kontrastmittel, Übersicht",
        charset="ISO_IR 192",
    ),
    "maria": WorklistEntry(
        patient_name="Gómez^María",
        patient_id="PID0005",
        birth_date="19900215",
        sex="F",
        accession_number="ACC0005",
        study_uid="1.2.826.0.1.3680043.8.498.5",
        modality="MR",
        station_ae="MRSCANNER",
        start_date="20240701",
        step_id="SPS0005",
        step_description="Resonancia rodilla",
        charset="ISO_IR 100",
    ),
}


@pytest.fixture
def worklist(tmp_path: Path) -> Iterator[Wlmscpfs]:
    # -rfp: the server keeps every request it gets, so tests can see what we sent.
    (tmp_path / "requests").mkdir()
    peer = Wlmscpfs(tmp_path / "wl", extra=("-rfp", str(tmp_path / "requests")))
    for entry in ENTRIES.values():
        peer.add(entry)
    with peer:
        yield peer


def _node(peer: Wlmscpfs) -> NodeConfig:
    return NodeConfig(ae_title=peer.ae_title, host="127.0.0.1", port=peer.port)


def _find(peer: Wlmscpfs, query: WorklistQuery, limit: int | None = None) -> list[WorklistItem]:
    result = find_worklist(KioskConfig(), _node(peer), query, limit=limit)
    assert not result.truncated
    return result.items


def _ids(items: list[WorklistItem]) -> list[str]:
    return sorted(item.patient_id for item in items)


def test_match_by_name_wildcard_returns_every_field(worklist: Wlmscpfs) -> None:
    items = _find(worklist, WorklistQuery(patient_name="DOE*"))
    assert _ids(items) == ["PID0001", "PID0002"]
    jane = next(item for item in items if item.patient_id == "PID0002")
    assert jane == WorklistItem(
        patient_name="DOE^JANE",
        patient_id="PID0002",
        issuer_of_patient_id="HOSP",
        patient_birth_date="19851224",
        patient_sex="F",
        accession_number="ACC0002",
        referring_physician_name="REF^DOC",
        requested_procedure_id="RP0002",
        requested_procedure_description="MR KNEE",
        study_instance_uid="1.2.826.0.1.3680043.8.498.2",
        modality="MR",
        scheduled_station_ae="MRSCANNER",
        scheduled_start_date="20240220",
        scheduled_start_time="101500",
        scheduled_procedure_step_id="SPS0002",
        scheduled_procedure_step_description="MR knee left",
    )


def test_match_by_birth_date(worklist: Wlmscpfs) -> None:
    assert _ids(_find(worklist, WorklistQuery(birth_date="19700101"))) == ["PID0001", "PID0003"]
    assert _ids(_find(worklist, WorklistQuery(birth_date=date(1985, 12, 24)))) == ["PID0002"]


def test_match_by_accession_number(worklist: Wlmscpfs) -> None:
    items = _find(worklist, WorklistQuery(accession_number="ACC0003"))
    assert [(i.patient_name, i.accession_number) for i in items] == [("ROE^RICHARD", "ACC0003")]


def test_match_by_scheduled_date_range(worklist: Wlmscpfs) -> None:
    february_march = WorklistQuery(scheduled_date=(date(2024, 2, 1), date(2024, 3, 31)))
    assert _ids(_find(worklist, february_march)) == ["PID0002", "PID0003"]
    assert _ids(_find(worklist, WorklistQuery(scheduled_date="20240119"))) == [
        "PID0001",
        "PID0004",
    ]
    from_march = WorklistQuery(scheduled_date=(date(2024, 3, 1), None))
    assert _ids(_find(worklist, from_march)) == ["PID0003", "PID0005"]
    with_modality = WorklistQuery(scheduled_date="20240101-20241231", modality="MR")
    assert _ids(_find(worklist, with_modality)) == ["PID0002", "PID0005"]
    at_station = WorklistQuery(station_ae="MRSCANNER", patient_name="G*")
    assert _ids(_find(worklist, at_station)) == ["PID0005"]


def test_no_match(worklist: Wlmscpfs) -> None:
    result = find_worklist(KioskConfig(), _node(worklist), WorklistQuery(patient_name="NOBODY*"))
    assert result.items == [] and not result.truncated


def test_several_matches_and_the_limit(worklist: Wlmscpfs) -> None:
    everything = _find(worklist, WorklistQuery())
    assert _ids(everything) == ["PID0001", "PID0002", "PID0003", "PID0004", "PID0005"]
    # Exactly as many as the limit: complete.
    assert len(_find(worklist, WorklistQuery(patient_name="DOE*"), limit=2)) == 2
    # One more than the limit: the rest is cancelled and the answer marked incomplete.
    result = find_worklist(KioskConfig(), _node(worklist), WorklistQuery(), limit=2)
    assert result.truncated
    assert len(result.items) == 2
    assert {i.patient_id for i in result.items} <= {i.patient_id for i in everything}


def test_non_ascii_name_is_sent_as_utf8_and_answers_are_decoded(
    worklist: Wlmscpfs, tmp_path: Path
) -> None:
    items = _find(worklist, WorklistQuery(patient_name="Müller*"))
    assert len(items) == 1
    juergen = items[0]
    assert juergen.patient_name == "Müller^Jürgen"
    assert juergen.referring_physician_name == "Weiß^Käthe"
    assert juergen.issuer_of_patient_id == "KLINIKUM"
    # Text inside the sequence item is decoded with the character set of the match too.
    assert juergen.scheduled_procedure_step_description == "Thorax ohne Kontrastmittel, Übersicht"

    # What reached the server: wlmscpfs dumps every request it gets (-rfp) as dcmdump text,
    # values in the bytes that came over the wire.
    (dump,) = [p.read_bytes() for p in (tmp_path / "requests").iterdir()]
    assert b"(0008,0005) CS [ISO_IR 192]" in dump
    assert b"(0010,0010) PN [" + "Müller*".encode() + b"]" in dump


def test_latin1_answer_is_decoded(worklist: Wlmscpfs) -> None:
    items = _find(worklist, WorklistQuery(patient_id="PID0005"))
    assert [(i.patient_name, i.scheduled_procedure_step_description) for i in items] == [
        ("Gómez^María", "Resonancia rodilla")
    ]


def test_ascii_query_sends_no_character_set() -> None:
    assert "SpecificCharacterSet" not in build_identifier(WorklistQuery(patient_name="DOE*"))
    utf8 = build_identifier(WorklistQuery(patient_name="Müller*"))
    assert utf8.SpecificCharacterSet == "ISO_IR 192"


def _findscu_keys(query_values: dict[str, str]) -> list[str]:
    """The keys of `KEYS` in findscu's -k syntax, with the query's values."""
    keys = []
    for key in KEYS:
        path = f"ScheduledProcedureStepSequence[0].{key.keyword}" if key.in_step else key.keyword
        value = query_values.get(key.keyword, "")
        keys.append(f"{path}={value}" if value else path)
    return keys


def _findscu_item(response: Dataset) -> dict[str, str]:
    steps = response.get("ScheduledProcedureStepSequence")
    step = steps[0] if steps else Dataset()
    return {
        key.field: str((step if key.in_step else response).get(key.keyword, "") or "")
        for key in KEYS
    }


@pytest.mark.parametrize(
    ("query", "dicom_values"),
    [
        (WorklistQuery(patient_name="DOE*"), {"PatientName": "DOE*"}),
        (WorklistQuery(birth_date="19700101"), {"PatientBirthDate": "19700101"}),
        (WorklistQuery(accession_number="ACC0002"), {"AccessionNumber": "ACC0002"}),
        (
            WorklistQuery(scheduled_date=(date(2024, 1, 1), date(2024, 2, 29)), modality="CT"),
            {"ScheduledProcedureStepStartDate": "20240101-20240229", "Modality": "CT"},
        ),
        (WorklistQuery(), {}),
    ],
)
def test_same_answer_as_findscu(
    worklist: Wlmscpfs, tmp_path: Path, query: WorklistQuery, dicom_values: dict[str, str]
) -> None:
    ours = sorted((asdict(item) for item in _find(worklist, query)), key=lambda d: d["patient_id"])
    responses = findscu_worklist(worklist, _findscu_keys(dicom_values), tmp_path / "findscu")
    theirs = sorted((_findscu_item(r) for r in responses), key=lambda d: d["patient_id"])
    assert ours, "the query should match something"
    assert ours == theirs


def test_failure_status_is_reported(worklist: Wlmscpfs) -> None:
    # Well-formed for us (YYYYMMDD), but no calendar date: wlmscpfs answers 0xA900.
    with pytest.raises(QueryFailedError) as failure:
        find_worklist(KioskConfig(), _node(worklist), WorklistQuery(birth_date="19701399"))
    assert failure.value.status == 0xA900
    assert "0xA900" in str(failure.value)


def test_unreachable_peer() -> None:
    node = NodeConfig(ae_title="WLMSCP", host="127.0.0.1", port=free_port())
    with pytest.raises(AssociationFailedError):
        find_worklist(KioskConfig(), node, WorklistQuery())


def test_unknown_called_ae_is_rejected(worklist: Wlmscpfs) -> None:
    node = NodeConfig(ae_title="NOSUCHAE", host="127.0.0.1", port=worklist.port)
    with pytest.raises(AssociationFailedError):
        find_worklist(KioskConfig(), node, WorklistQuery())


def test_peer_without_worklist_support(tmp_path: Path) -> None:
    with Storescp(tmp_path / "scp") as scp:
        node = NodeConfig(ae_title=scp.ae_title, host="127.0.0.1", port=scp.port)
        with pytest.raises(QueryError, match="does not accept Modality Worklist"):
            find_worklist(KioskConfig(), node, WorklistQuery())


@pytest.mark.parametrize(
    "query",
    [
        WorklistQuery(birth_date="1970-01-01"),
        WorklistQuery(scheduled_date="2024"),
        WorklistQuery(scheduled_date="20240101-2024"),
        WorklistQuery(modality="ÇT"),
    ],
)
def test_bad_query_values_are_refused_before_connecting(query: WorklistQuery) -> None:
    node = NodeConfig(ae_title="WLMSCP", host="127.0.0.1", port=free_port())
    with pytest.raises(QueryError):
        find_worklist(KioskConfig(), node, query)


def test_date_matching_values() -> None:
    assert date_matching_value((None, date(2024, 1, 31)), "d") == "-20240131"
    assert date_matching_value((None, None), "d") == ""
    assert date_matching_value(" 20240101- ", "d") == "20240101-"


def test_identifier_layout() -> None:
    identifier = build_identifier(WorklistQuery(modality="CT", patient_id="X"))
    assert identifier.PatientID == "X"
    assert identifier.PatientName == ""
    (step,) = identifier.ScheduledProcedureStepSequence
    assert step.Modality == "CT"
    assert "ScheduledStationAETitle" in step and step.ScheduledStationAETitle == ""
    item_fields = {f.name for f in fields(WorklistItem)}
    query_fields = {f.name for f in fields(WorklistQuery)}
    assert {k.field for k in KEYS} == item_fields
    assert {k.query_field for k in KEYS if k.query_field} == query_fields
    assert MODALITY_WORKLIST_FIND == "1.2.840.10008.5.1.4.31"


def test_no_patient_data_in_the_log(worklist: Wlmscpfs, caplog: pytest.LogCaptureFixture) -> None:
    # Our own log only: pynetdicom dumps identifiers at INFO, which is why the service holds
    # its logger at WARNING (appliance/service/logsetup.py).
    caplog.set_level(logging.DEBUG, logger="appliance")
    items = _find(worklist, WorklistQuery(patient_name="Müller*"))
    assert len(items) == 1
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("appliance"))
    assert "1 item" in ours
    for secret in ("Müller", "PID0004", "19601231", "ACC0004", "Jürgen"):
        assert secret not in ours
