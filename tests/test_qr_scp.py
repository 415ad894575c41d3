"""Query/Retrieve SCP of kioskd against DCMTK findscu/movescu, compared with dcmqrscp and Orthanc.

One archive (tests/peers/qr_corpus.py) is loaded into a kioskd, a DCMTK dcmqrscp (dcmqridx)
and an Orthanc. Every query runs against kioskd and a reference peer holding the same files,
and the answers must agree (sets of returned UIDs and key values). dcmqrscp is the reference
for the matching types it implements; Orthanc for what dcmqrscp lacks (Modalities in Study,
the Number of ... Related ... return keys, case-insensitive person names). Where the standard
leaves a choice and we take another one than the peers (combined date-time ranges), the
expected answer is derived from the corpus instead.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pynetdicom import AE

from appliance.dicom import conformance
from appliance.dicom.dimse_encode import encode_dataset
from appliance.dicom.qr_keys import KEYS
from appliance.dicom.qr_scp import qr_contexts
from tests.peers.data import make_instance
from tests.peers.dcmqrscp import Dcmqrscp
from tests.peers.dcmtk import storescu
from tests.peers.kioskd import KioskdProcess
from tests.peers.net import free_port
from tests.peers.orthanc import Orthanc
from tests.peers.qr_corpus import Corpus, build_corpus
from tests.peers.qr_tools import FindAnswer, findscu, movescu
from tests.peers.storescp import Storescp

SUCCESS, CANCEL, PENDING = 0x0000, 0xFE00, 0xFF00


@dataclass
class Archive:
    """The same corpus in kioskd, dcmqrscp and Orthanc, plus a C-MOVE destination."""

    corpus: Corpus
    kioskd: KioskdProcess
    dcmqrscp: Dcmqrscp
    orthanc: Orthanc
    destination: Storescp
    workdir: Path

    def find(
        self, keys: list[str], *, model: str = "study", query_file: Path | None = None
    ) -> FindAnswer:
        """findscu against kioskd."""
        return findscu(
            self.kioskd.port,
            "KIOSK",
            keys,
            model=model,
            query_file=query_file,
            workdir=self.workdir,
        )

    def find_dcmqrscp(self, keys: list[str], *, model: str = "study") -> FindAnswer:
        """The same query against dcmqrscp."""
        return findscu(self.dcmqrscp.port, "DCMQRSCP", keys, model=model, workdir=self.workdir)

    def find_orthanc(self, keys: list[str]) -> FindAnswer:
        """The same query against Orthanc (Study Root)."""
        return findscu(self.orthanc.port, "ORTHANC", keys, workdir=self.workdir)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    root = tmp_path_factory.mktemp("qr")
    corpus = build_corpus(root / "corpus")
    destination = Storescp(root / "dest").start()
    nodes = {
        "dest": {"ae_title": "STORESCP", "host": "127.0.0.1", "port": destination.port},
        "gone": {"ae_title": "GONE", "host": "127.0.0.1", "port": free_port()},  # not listening
    }
    kioskd = KioskdProcess(root / "kioskd", {"nodes": nodes})
    dcmqrscp = Dcmqrscp(
        root / "dcmqrscp", move_destinations={"dest": ("STORESCP", "127.0.0.1", destination.port)}
    )
    orthanc = Orthanc(root / "orthanc")
    try:
        kioskd.start()
        dcmqrscp.load(corpus.files)
        dcmqrscp.start()
        orthanc.start()
        for port, called in ((kioskd.port, "KIOSK"), (orthanc.port, "ORTHANC")):
            sent = storescu(port, corpus.files, called=called)
            assert sent.returncode == 0, sent.stderr
        yield Archive(corpus, kioskd, dcmqrscp, orthanc, destination, root)
    finally:
        kioskd.kill9()
        for peer in (dcmqrscp, orthanc, destination):
            peer.stop()


def _text(match: Dataset, keyword: str) -> str:
    value = match.get(keyword)
    if value is None or value == "":
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(sorted(str(v) for v in value))
    return str(value)


def _rows(answer: FindAnswer, keywords: list[str]) -> set[tuple[str, ...]]:
    assert answer.status == SUCCESS, (hex(answer.status or -1), answer.output[-2000:])
    return {tuple(_text(m, k) for k in keywords) for m in answer.matches}


def _keyword(key: str) -> str:
    return key.split("=", 1)[0]


A, B, C, D, E, F, G = "ABCDEFG"


def _uid(archive: Archive, key: str) -> str:
    return archive.corpus.studies[key].study_uid


# -- agreement with dcmqrscp -------------------------------------------------------------------

STUDY_QUERIES: dict[str, list[str]] = {
    "universal": ["PatientID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID"],
    "single value": ["PatientName=Doe^John", "PatientID"],
    "single value (ID)": ["PatientID=PID003", "AccessionNumber"],
    "wildcard *": ["AccessionNumber=ACC*", "PatientID"],
    "wildcard ?": ["PatientID=PID00?", "PatientName=Sm?th*"],
    "wildcard in the middle": ["StudyDescription=CT*CHEST", "AccessionNumber"],
    "date range A-B": ["StudyDate=20240101-20240131"],
    "date range -B": ["StudyDate=-20231231"],
    "date range A-": ["StudyDate=20240301-"],
    "single date": ["StudyDate=20240115", "StudyTime"],
    "date and time range": ["StudyDate=20240115", "StudyTime=080000-090000"],
    "time range alone": ["StudyTime=083000-083000.5"],
    "birth date range": ["PatientBirthDate=19600101-19800101", "PatientSex"],
    "value and range": ["PatientSex=F", "StudyDate=20230101-20241231", "StudyID"],
}


@pytest.mark.parametrize("keys", list(STUDY_QUERIES.values()), ids=list(STUDY_QUERIES))
def test_study_level_agrees_with_dcmqrscp(archive: Archive, keys: list[str]) -> None:
    query = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", *keys]
    keywords = ["StudyInstanceUID", *map(_keyword, keys)]
    ours = _rows(archive.find(query), keywords)
    theirs = _rows(archive.find_dcmqrscp(query), keywords)
    assert ours == theirs
    if keys != STUDY_QUERIES["universal"]:
        assert 0 < len(ours) < len(archive.corpus.studies), "the query should discriminate"


def test_uid_list_agrees_with_dcmqrscp(archive: Archive) -> None:
    uids = "\\".join(_uid(archive, key) for key in (A, C, F))
    query = ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={uids}", "AccessionNumber"]
    ours = _rows(archive.find(query), ["StudyInstanceUID", "AccessionNumber"])
    assert ours == _rows(archive.find_dcmqrscp(query), ["StudyInstanceUID", "AccessionNumber"])
    assert {row[0] for row in ours} == {_uid(archive, key) for key in (A, C, F)}


def test_series_and_image_levels_agree_with_dcmqrscp(archive: Archive) -> None:
    # dcmqrscp's index keeps no Series Description (compared with Orthanc below).
    series_keys = ["SeriesInstanceUID", "Modality", "SeriesNumber"]
    for study, extra in ((A, []), (G, ["Modality=CT"]), (B, ["SeriesNumber=2"])):
        query = [
            "QueryRetrieveLevel=SERIES",
            f"StudyInstanceUID={_uid(archive, study)}",
            *[k for k in series_keys if k not in {_keyword(e) for e in extra}],
            *extra,
        ]
        keywords = ["SeriesInstanceUID", *{_keyword(k) for k in query[2:]} - {"SeriesInstanceUID"}]
        ours = _rows(archive.find(query), keywords)
        assert ours == _rows(archive.find_dcmqrscp(query), keywords)
        assert ours
    a1 = archive.corpus.series["A1"]
    image = [
        "QueryRetrieveLevel=IMAGE",
        f"StudyInstanceUID={a1.study.study_uid}",
        f"SeriesInstanceUID={a1.series_uid}",
    ]
    keywords = ["SOPInstanceUID", "InstanceNumber"]
    for keys, count in (
        (["SOPInstanceUID", "InstanceNumber"], 3),
        (["SOPInstanceUID", "InstanceNumber=2"], 1),
        ([f"SOPInstanceUID={a1.instances[0]}\\{a1.instances[2]}", "InstanceNumber"], 2),
    ):
        ours = _rows(archive.find([*image, *keys]), keywords)
        assert ours == _rows(archive.find_dcmqrscp([*image, *keys]), keywords)
        assert len(ours) == count


def test_image_level_sop_class_matching(archive: Archive) -> None:
    """dcmqrscp does not return SOP Class UID; Orthanc does."""
    g2 = archive.corpus.series["G2"]
    query = [
        "QueryRetrieveLevel=IMAGE",
        f"StudyInstanceUID={g2.study.study_uid}",
        f"SeriesInstanceUID={g2.series_uid}",
        "SOPInstanceUID",
        "SOPClassUID=1.2.840.10008.5.1.4.1.1.4",
    ]
    ours = _rows(archive.find(query), ["SOPInstanceUID", "SOPClassUID"])
    assert ours == _rows(archive.find_orthanc(query), ["SOPInstanceUID", "SOPClassUID"])
    assert ours == {(g2.instances[0], "1.2.840.10008.5.1.4.1.1.4")}


def test_patient_root_agrees_with_dcmqrscp(archive: Archive) -> None:
    patients = ["QueryRetrieveLevel=PATIENT", "PatientID=PID00?", "PatientBirthDate"]
    keywords = ["PatientID", "PatientBirthDate"]
    ours = _rows(archive.find(patients, model="patient"), keywords)
    assert ours == _rows(archive.find_dcmqrscp(patients, model="patient"), keywords)
    assert len(ours) == 6
    studies = ["QueryRetrieveLevel=STUDY", "PatientID=PID001", "StudyInstanceUID", "StudyDate"]
    keywords = ["StudyInstanceUID", "StudyDate"]
    ours = _rows(archive.find(studies, model="patient"), keywords)
    assert ours == _rows(archive.find_dcmqrscp(studies, model="patient"), keywords)
    assert {row[0] for row in ours} == {_uid(archive, A), _uid(archive, B)}


# -- agreement with Orthanc (what dcmqrscp does not implement) ----------------------------------


@pytest.mark.parametrize(
    "keys",
    [
        ["ModalitiesInStudy=MR"],
        ["ModalitiesInStudy=CT\\US"],
        ["ModalitiesInStudy=C*"],
        ["ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"],
        ["PatientName=doe*"],
        ["PatientName=SMITH^ANNA"],
    ],
    ids=["modality", "modality list", "modality wildcard", "return keys", "lower case", "upper"],
)
def test_study_level_agrees_with_orthanc(archive: Archive, keys: list[str]) -> None:
    query = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", *keys]
    keywords = ["StudyInstanceUID", *map(_keyword, keys)]
    ours = _rows(archive.find(query), keywords)
    assert ours == _rows(archive.find_orthanc(query), keywords)
    assert ours


def test_series_level_agrees_with_orthanc(archive: Archive) -> None:
    for study in (A, B, G):
        query = [
            "QueryRetrieveLevel=SERIES",
            f"StudyInstanceUID={_uid(archive, study)}",
            "SeriesInstanceUID",
            "SeriesDescription",
            "NumberOfSeriesRelatedInstances",
        ]
        keywords = ["SeriesInstanceUID", "SeriesDescription", "NumberOfSeriesRelatedInstances"]
        ours = _rows(archive.find(query), keywords)
        assert ours == _rows(archive.find_orthanc(query), keywords)


def test_case_insensitive_person_names(archive: Archive) -> None:
    """PS3.4 C.2.2.2.1.1 lets an SCP match PN case-insensitively; we do (Orthanc too)."""
    answer = archive.find(["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName=dOe*"])
    assert answer.uids("StudyInstanceUID") == {_uid(archive, k) for k in (A, B, C)}
    answer = archive.find(
        ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "ReferringPhysicianName=REF^ALPHA"]
    )
    assert answer.uids("StudyInstanceUID") == {_uid(archive, k) for k in (A, C)}


# -- date and time combined ----------------------------------------------------------------------


def test_date_and_time_ranges_combine_into_one_range(archive: Archive) -> None:
    """StudyDate 20240101-20240301 with StudyTime 090000-100000 is the range from 1 January
    09:00 to 1 March 10:00 (PS3.4 C.2.2.2.5.2): every study of 15 January matches whatever its
    time, the one of 1 March at 14:00 does not. (dcmqrscp and Orthanc match the two keys
    independently and find nothing.)"""
    query = [
        "QueryRetrieveLevel=STUDY",
        "StudyInstanceUID",
        "StudyDate=20240101-20240301",
        "StudyTime=090000-100000",
    ]
    answer = archive.find(query)
    expected = archive.corpus.study_uids(
        lambda s: (
            (s.date, s.time) >= ("20240101", "090000")
            and (s.date, s.time) <= ("20240301", "100000")
        )
    )
    assert answer.status == SUCCESS
    assert answer.uids("StudyInstanceUID") == expected == {_uid(archive, k) for k in (A, D, G)}
    open_end = archive.find(
        ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "StudyDate=20240115-", "StudyTime=1000-"]
    )
    assert open_end.uids("StudyInstanceUID") == {_uid(archive, k) for k in (B, D, F)}


# -- character sets -----------------------------------------------------------------------------


def _query_file(path: Path, charset: str | None, **values: str) -> Path:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    ds.StudyDescription = ""
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(path, implicit_vr=False, little_endian=True)
    return path


def test_latin1_query_and_answer(archive: Archive, tmp_path: Path) -> None:
    """A query in ISO_IR 100 finds names stored in ISO_IR 100 and in UTF-8, case-insensitively,
    and gets its answer in ISO_IR 100."""
    query = _query_file(tmp_path / "q.dcm", "ISO_IR 100", PatientName="müller*")
    assert b"m\xfcller*" in query.read_bytes()
    answer = archive.find([], query_file=query)
    assert answer.status == SUCCESS
    assert answer.uids("StudyInstanceUID") == {_uid(archive, E), _uid(archive, G)}
    names = {str(m.PatientName) for m in answer.matches}
    assert names == {"Müller^Jürgen", "MÜLLER^HANS"}
    assert {m.SpecificCharacterSet for m in answer.matches} == {"ISO_IR 100"}
    assert "RÖNTGEN THORAX" in {m.StudyDescription for m in answer.matches}


def test_utf8_query_matches_ideographic_names(archive: Archive, tmp_path: Path) -> None:
    query = _query_file(tmp_path / "q.dcm", "ISO_IR 192", PatientName="山田*")
    answer = archive.find([], query_file=query)
    assert answer.status == SUCCESS
    assert answer.uids("StudyInstanceUID") == {_uid(archive, F)}
    match = answer.matches[0]
    assert match.SpecificCharacterSet == "ISO_IR 192"
    assert str(match.PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう"
    assert match.StudyDescription == "頭部 CT"


def test_ascii_query_gets_utf8_answer_for_non_ascii_values(archive: Archive) -> None:
    answer = archive.find(
        [f"StudyInstanceUID={_uid(archive, E)}", "QueryRetrieveLevel=STUDY", "PatientName"]
    )
    assert answer.status == SUCCESS
    assert answer.matches[0].SpecificCharacterSet == "ISO_IR 192"
    assert str(answer.matches[0].PatientName) == "Müller^Jürgen"


# -- unsupported keys, bad identifiers ------------------------------------------------------------


def test_unsupported_keys_are_returned_empty(archive: Archive) -> None:
    answer = archive.find(
        [
            "QueryRetrieveLevel=STUDY",
            f"StudyInstanceUID={_uid(archive, A)}",
            "PatientComments=whatever",  # not supported: ignored for matching, returned empty
            "OtherPatientIDsSequence",
            "SOPInstanceUID",  # a key of a lower level
            "AccessionNumber",
        ]
    )
    assert answer.status == SUCCESS
    assert len(answer.matches) == 1
    match = answer.matches[0]
    assert match.AccessionNumber == "ACC100"
    assert "PatientComments" in match and match.PatientComments in ("", None)
    assert "OtherPatientIDsSequence" in match and len(match.OtherPatientIDsSequence) == 0
    assert "SOPInstanceUID" in match and match.SOPInstanceUID in ("", None)


@pytest.mark.parametrize(
    ("keys", "status", "comment"),
    [
        (["PatientName"], 0xA900, "Query/Retrieve Level"),
        (["QueryRetrieveLevel=SERIES", "SeriesInstanceUID"], 0xA900, "StudyInstanceUID"),
        (["QueryRetrieveLevel=STUDY", "StudyDate=2024-01"], 0xA900, "StudyDate"),
        (["QueryRetrieveLevel=STUDY", "StudyInstanceUID=1.2.*"], 0xA900, "StudyInstanceUID"),
        (["QueryRetrieveLevel=STUDY", "StudyTime=25h"], 0xA900, "StudyTime"),
        (["QueryRetrieveLevel=IMAGE", "StudyInstanceUID=1.2.3"], 0xA900, "SeriesInstanceUID"),
    ],
    ids=["no level", "series without study", "bad date", "uid wildcard", "bad time", "image"],
)
def test_bad_identifiers_are_refused_with_a_comment(
    archive: Archive, keys: list[str], status: int, comment: str
) -> None:
    answer = archive.find(keys)
    assert answer.status == status
    assert answer.error_comment is not None and comment in answer.error_comment
    assert not answer.matches


def test_patient_level_is_refused_in_study_root(archive: Archive) -> None:
    answer = archive.find(["QueryRetrieveLevel=PATIENT", "PatientID"])
    assert answer.status == 0xA900


# -- cancellation --------------------------------------------------------------------------------


def _add_synthetic_studies(daemon: KioskdProcess, count: int) -> None:
    """Index rows only (C-FIND reads nothing else): `count` studies of one patient."""
    conn = sqlite3.connect(daemon.index_file, timeout=30)
    try:
        now = time.time()
        with conn:
            conn.executemany(
                "INSERT INTO studies (study_uid, patient_id, patient_name, study_date, state, "
                "first_received_at, last_received_at) VALUES (?, 'PIDX', 'Many^Studies', "
                "'20200101', 'complete', ?, ?)",
                [(f"1.2.826.0.1.3680043.10.2222.{n}", now, now) for n in range(count)],
            )
    finally:
        conn.close()


def test_cancel_stops_the_response_stream(make_kioskd: Callable[..., KioskdProcess]) -> None:
    """findscu sends a C-CANCEL after the first response; the stream of 1000 matches stops
    with a final 0xFE00 long before its end."""
    daemon = make_kioskd()
    _add_synthetic_studies(daemon, 1000)
    query = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName=many*"]
    cancelled = findscu(daemon.port, "KIOSK", query, cancel_after=1, workdir=daemon.root)
    assert cancelled.status == CANCEL, cancelled.output[-2000:]
    assert 1 <= len(cancelled.matches) < 200
    assert "C-FIND cancelled after" in daemon.log()
    full = findscu(daemon.port, "KIOSK", [*query[:2], "PatientID=PIDX"], workdir=daemon.root)
    assert full.status == SUCCESS and len(full.matches) == 1000


# -- C-MOVE --------------------------------------------------------------------------------------


def _clear(destination: Storescp) -> None:
    for path in destination.files():
        path.unlink()


@pytest.mark.parametrize("level", ["STUDY", "SERIES", "IMAGE"])
def test_move_agrees_with_dcmqrscp(archive: Archive, level: str) -> None:
    corpus = archive.corpus
    a1 = corpus.series["A1"]
    keys = {
        "STUDY": [f"StudyInstanceUID={corpus.studies[A].study_uid}\\{corpus.studies[C].study_uid}"],
        "SERIES": [f"StudyInstanceUID={a1.study.study_uid}", f"SeriesInstanceUID={a1.series_uid}"],
        "IMAGE": [
            f"StudyInstanceUID={a1.study.study_uid}",
            f"SeriesInstanceUID={a1.series_uid}",
            f"SOPInstanceUID={a1.instances[0]}\\{a1.instances[2]}",
        ],
    }[level]
    expected = {
        "STUDY": {
            uid
            for key in (A, C)
            for series in corpus.studies[key].series
            for uid in series.instances
        },
        "SERIES": set(a1.instances),
        "IMAGE": {a1.instances[0], a1.instances[2]},
    }[level]
    received: list[set[str]] = []
    for port, called in ((archive.kioskd.port, "KIOSK"), (archive.dcmqrscp.port, "DCMQRSCP")):
        _clear(archive.destination)
        answer = movescu(port, called, "STORESCP", [f"QueryRetrieveLevel={level}", *keys])
        assert answer.status == SUCCESS, answer.output[-3000:]
        assert answer.final_counts["completed"] == len(expected)
        assert answer.final_counts["failed"] == 0
        received.append(set(archive.destination.received()))
    assert received[0] == received[1] == expected


def test_move_pending_responses_count_down(archive: Archive) -> None:
    study = archive.corpus.studies[A]
    _clear(archive.destination)
    answer = movescu(
        archive.kioskd.port,
        "KIOSK",
        "STORESCP",
        ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study.study_uid}"],
    )
    total = study.instance_count
    assert answer.status == SUCCESS
    assert [r.counts for r in answer.pending] == [
        {"remaining": total - n, "completed": n, "failed": 0, "warning": 0} for n in range(1, total)
    ]
    assert answer.final_counts == {"completed": total, "failed": 0, "warning": 0}
    received = pydicom.dcmread(next(iter(archive.destination.files())))
    assert received.StudyInstanceUID == study.study_uid


def test_move_to_unknown_destination_is_refused(archive: Archive) -> None:
    answer = movescu(
        archive.kioskd.port,
        "KIOSK",
        "NOWHERE",
        ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={_uid(archive, A)}"],
    )
    assert answer.status == 0xA801
    assert not answer.pending


def test_move_to_a_destination_that_does_not_answer(archive: Archive) -> None:
    study = archive.corpus.studies[B]
    answer = movescu(
        archive.kioskd.port,
        "KIOSK",
        "GONE",
        ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study.study_uid}"],
    )
    assert answer.status == 0xA702, answer.output[-3000:]
    assert answer.final_counts == {"completed": 0, "failed": study.instance_count, "warning": 0}
    final = answer.output.rsplit("Received Final Move Response", 1)[1]
    assert all(f"{uid}" in final for s in study.series for uid in s.instances)


def test_move_with_a_file_missing_on_disk(
    make_kioskd: Callable[..., KioskdProcess], tmp_path: Path
) -> None:
    corpus = build_corpus(tmp_path / "corpus")
    with Storescp(tmp_path / "dest") as destination:
        nodes = {"dest": {"ae_title": "STORESCP", "host": "127.0.0.1", "port": destination.port}}
        daemon = make_kioskd({"nodes": nodes})
        assert storescu(daemon.port, corpus.files).returncode == 0
        study = corpus.studies[A]
        victim = study.series[0].instances[1]
        (path,) = [p for p in daemon.stored_files() if p.stem == victim]
        path.unlink()
        answer = movescu(
            daemon.port,
            "KIOSK",
            "STORESCP",
            ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study.study_uid}"],
        )
        assert answer.status == 0xB000, answer.output[-3000:]
        total = study.instance_count
        assert answer.final_counts == {"completed": total - 1, "failed": 1, "warning": 0}
        assert f"[{victim}]" in answer.output.rsplit("Received Final Move Response", 1)[1]
        assert set(destination.received()) == {uid for s in study.series for uid in s.instances} - {
            victim
        }
        # The listener is still there.
        again = findscu(
            daemon.port, "KIOSK", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"], workdir=tmp_path
        )
        assert again.status == SUCCESS
    assert "C-STORE of %s failed" not in daemon.log()
    assert f"C-STORE of {victim} failed: its file is missing" in daemon.log()


def test_move_must_name_what_to_retrieve(archive: Archive) -> None:
    """A SERIES-level C-MOVE without Series Instance UID would move the whole study: refused."""
    answer = movescu(
        archive.kioskd.port,
        "KIOSK",
        "STORESCP",
        ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={_uid(archive, A)}"],
    )
    assert answer.status == 0xA900
    assert "SeriesInstanceUID is required" in answer.output


# -- the conformance statement describes this listener ------------------------------------------


def test_documented_qr_contexts_are_the_accepted_ones(archive: Archive) -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "conformance.md").read_text()
    block = conformance.document_blocks(doc)["qr-scp-contexts"]
    rows = [line.strip("|").split(" | ") for line in block.splitlines()[2:] if line.startswith("|")]
    documented = {(row[1].strip(), row[3].strip()) for row in rows}
    assert {
        (str(cx.abstract_syntax), str(ts)) for cx in qr_contexts() for ts in cx.transfer_syntax
    } == documented
    ae = AE(ae_title="CHECKER")
    for abstract_syntax, transfer_syntax in sorted(documented):
        ae.add_requested_context(abstract_syntax, [transfer_syntax])
    assoc = ae.associate("127.0.0.1", archive.kioskd.port, ae_title="KIOSK")
    assert assoc.is_established
    try:
        accepted = {
            (str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts
        }
    finally:
        assoc.release()
    assert accepted == documented
    keys = conformance.document_blocks(doc)["qr-scp-keys"]
    for item in KEYS:
        assert f"({item.tag >> 16:04X},{item.tag & 0xFFFF:04X})" in keys, item.keyword


def test_no_patient_data_in_the_log(archive: Archive) -> None:
    """Runs last in this module: after every query above, kioskd's log names no patient."""
    log = archive.kioskd.log()
    assert "C-FIND STUDY level from FINDSCU" in log
    assert "C-MOVE STUDY level from MOVESCU to STORESCP" in log
    for study in archive.corpus.studies.values():
        patient = study.patient
        for value in (patient.patient_id, patient.birth_date, *patient.name.split("^")):
            for part in value.split("="):
                assert part not in log, f"patient data in the log: {part!r}"


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_response_encoding_equals_pydicom(implicit: bool) -> None:
    """Responses are encoded by hand (appliance.dicom.dimse_encode); pydicom reads back the
    same values, in the character set the response declares."""
    elements = [
        (0x00100010, "PN", "Müller^Jürgen"),
        (0x00080005, "CS", "ISO_IR 100"),
        (0x00080061, "CS", ["CT", "MR"]),
        (0x0020000D, "UI", "1.2.3"),
        (0x00201208, "IS", "17"),
        (0x00101002, "SQ", None),
        (0x00081030, "LO", None),
    ]
    raw = encode_dataset(elements, implicit=implicit, codec="latin_1")
    ds = read_dataset(DicomBytesIO(raw), implicit, True)
    assert str(ds.PatientName) == "Müller^Jürgen"
    assert list(ds.ModalitiesInStudy) == ["CT", "MR"]
    assert ds.StudyInstanceUID == "1.2.3"
    assert int(ds.NumberOfStudyRelatedInstances) == 17
    assert len(ds.OtherPatientIDsSequence) == 0
    assert ds.StudyDescription in ("", None)
    assert b"M\xfcller^J\xfcrgen" in raw


def test_move_cancel_stops_the_sub_operations(
    make_kioskd: Callable[..., KioskdProcess], tmp_path: Path
) -> None:
    """movescu sends a C-CANCEL after the first pending response: the retrieve of 60
    instances ends with 0xFE00, and the counts say what was sent before."""
    study_uid, series_uid = "1.2.826.0.1.3680043.10.4444.1", "1.2.826.0.1.3680043.10.4444.1.1"
    files = [
        make_instance(tmp_path, study_uid=study_uid, series_uid=series_uid, instance_number=n)
        for n in range(1, 61)
    ]
    with Storescp(tmp_path / "dest") as destination:
        nodes = {"dest": {"ae_title": "STORESCP", "host": "127.0.0.1", "port": destination.port}}
        daemon = make_kioskd({"nodes": nodes})
        assert storescu(daemon.port, files).returncode == 0
        answer = movescu(
            daemon.port,
            "KIOSK",
            "STORESCP",
            ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study_uid}"],
            cancel_after=1,
        )
        assert answer.status == CANCEL, answer.output[-3000:]
        counts = answer.final_counts
        assert 1 <= counts["completed"] < 60
        assert counts["remaining"] == 60 - counts["completed"]
        assert len(destination.files()) == counts["completed"]
