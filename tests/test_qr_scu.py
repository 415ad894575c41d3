"""Q/R SCU against real peers (Orthanc and DCMTK dcmqrscp): find, retrieve jobs and retries."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid
from pynetdicom.association import Association

from appliance.config import KioskConfig, NodeConfig
from appliance.dicom import qr_scu
from tests.peers.data import make_instance
from tests.peers.flaky_proxy import FlakyProxy
from tests.peers.kioskd import KioskdProcess
from tests.peers.net import free_port
from tests.peers.pacs import PEERS, start_pacs
from tests.peers.process import PeerProcess
from tests.peers.store_view import index_rows
from tests.peers.storescp import Storescp

MakeKioskd = Callable[..., KioskdProcess]


@dataclass
class Studies:
    """Two studies: DOE^JOHN with a 3-image and a 1-image series, ROE^JANE with one image."""

    doe: str
    doe_series: tuple[str, str]
    roe: str
    files: list[Path]
    sop_uids: dict[str, set[str]]
    """Series UID -> its SOP Instance UIDs."""


@pytest.fixture
def studies(tmp_path: Path) -> Studies:
    data = tmp_path / "data"
    data.mkdir()
    doe, roe = generate_uid(), generate_uid()
    series = (generate_uid(), generate_uid(), generate_uid())
    layout = [
        (doe, series[0], "DOE^JOHN", 1),
        (doe, series[0], "DOE^JOHN", 2),
        (doe, series[0], "DOE^JOHN", 3),
        (doe, series[1], "DOE^JOHN", 1),
        (roe, series[2], "ROE^JANE", 1),
    ]
    files, sop_uids = [], {}
    for study_uid, series_uid, name, number in layout:
        sop = generate_uid()
        files.append(
            make_instance(
                data,
                study_uid=study_uid,
                series_uid=series_uid,
                sop_uid=sop,
                patient_name=name,
                patient_id=name[:3],
                instance_number=number,
                rows=32,
                columns=32,
            )
        )
        sop_uids.setdefault(series_uid, set()).add(sop)
    return Studies(doe, (series[0], series[1]), roe, files, sop_uids)


def _kioskd(
    make_kioskd: MakeKioskd,
    peer: PeerProcess,
    port: int,
    *,
    pacs_port: int | None = None,
    **sections: dict[str, Any],
) -> KioskdProcess:
    """kioskd on `port` with the peer as node "pacs" (at `pacs_port` when given: a proxy)."""
    node = {"ae_title": peer.ae_title, "host": "127.0.0.1", "port": pacs_port or peer.port}
    settings: dict[str, Any] = {
        "nodes": {"pacs": node},
        "retrieve": {"retry_delay_seconds": 0.2},
        **sections,
    }
    daemon = make_kioskd(settings, start=False)
    daemon.port = port
    daemon.start()
    return daemon


@pytest.fixture(params=PEERS)
def pacs(
    request: pytest.FixtureRequest, tmp_path: Path, studies: Studies
) -> Iterator[tuple[PeerProcess, int]]:
    """(the loaded peer, the port kioskd must listen on to receive its C-MOVEs)."""
    kiosk_port = free_port()
    peer = start_pacs(request.param, tmp_path, studies.files, {"KIOSK": kiosk_port})
    try:
        yield peer, kiosk_port
    finally:
        peer.stop(timeout=0.5)  # Orthanc's orderly exit takes seconds; its data is scratch


def _json(daemon: KioskdProcess, *args: str) -> Any:
    result = daemon.kioskctl("--json", *args)
    assert result.returncode in (0, 1) and result.stdout, result.stderr
    return json.loads(result.stdout)


def _local_sops(daemon: KioskdProcess) -> set[str]:
    return {r["sop_instance_uid"] for r in index_rows(daemon, "SELECT * FROM instances")}


# -- C-FIND ---------------------------------------------------------------------------------------


def test_find_studies_and_series(
    make_kioskd: MakeKioskd, pacs: tuple[PeerProcess, int], studies: Studies
) -> None:
    peer, kiosk_port = pacs
    daemon = _kioskd(make_kioskd, peer, kiosk_port)
    answer = _json(daemon, "find", "pacs", "PatientName=DOE*")
    assert answer["truncated"] is False
    assert [m["StudyInstanceUID"] for m in answer["matches"]] == [studies.doe]
    assert answer["matches"][0]["PatientName"] == "DOE^JOHN"

    # Options after the node and among the keys, as the issue writes the command.
    answer = _json(daemon, "find", "pacs", "--level", "series", f"StudyInstanceUID={studies.doe}")
    assert sorted(m["SeriesInstanceUID"] for m in answer["matches"]) == sorted(studies.doe_series)

    both = _json(daemon, "find", "pacs", f"StudyInstanceUID={studies.doe}\\{studies.roe}")
    assert {m["StudyInstanceUID"] for m in both["matches"]} == {studies.doe, studies.roe}

    human = daemon.kioskctl("find", "pacs", "PatientName=ROE*")
    assert human.returncode == 0, human.stderr
    assert studies.roe in human.stdout and "1 match(es)" in human.stdout


def test_find_limit_cancels_and_marks_the_answer_incomplete(
    pacs: tuple[PeerProcess, int], studies: Studies, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer, _ = pacs
    cancels: list[int] = []
    original = Association.send_c_cancel

    def recording(self: Association, msg_id: int, *args: Any, **kwargs: Any) -> None:
        cancels.append(msg_id)
        original(self, msg_id, *args, **kwargs)

    monkeypatch.setattr(Association, "send_c_cancel", recording)
    config = KioskConfig()
    node = NodeConfig(ae_title=peer.ae_title, host="127.0.0.1", port=peer.port)
    result = qr_scu.find(config, node, "STUDY", {"PatientName": "*"}, limit=1)
    assert result.truncated and len(result.matches) == 1
    assert cancels == [1]
    assert result.status in (0x0000, 0xFE00)
    # The peer is fine afterwards and the same query without a limit finds both.
    result = qr_scu.find(config, node, "STUDY", {"PatientName": "*"})
    assert not result.truncated and len(result.matches) == 2
    assert cancels == [1]


def test_find_refuses_unknown_keys() -> None:
    with pytest.raises(qr_scu.QueryError, match="unknown attribute"):
        qr_scu.build_identifier("STUDY", {"NoSuchKeyword": "x"})
    identifier = qr_scu.build_identifier("STUDY", {"patientname": "MÜLLER*"})
    assert identifier.PatientName == "MÜLLER*"
    assert identifier.SpecificCharacterSet == "ISO_IR 192"


# -- C-MOVE: retrieve jobs ----------------------------------------------------------------------


def test_retrieve_series_then_study(
    make_kioskd: MakeKioskd, pacs: tuple[PeerProcess, int], studies: Studies
) -> None:
    peer, kiosk_port = pacs
    daemon = _kioskd(make_kioskd, peer, kiosk_port)
    one, other = studies.doe_series
    job = _json(daemon, "retrieve", "pacs", studies.doe, other, "--wait", "--timeout", "60")
    assert job["state"] == "succeeded", job
    assert job["result"]["verified"] is True and job["result"]["completed"] == 1
    assert _local_sops(daemon) == studies.sop_uids[other]

    job = _json(daemon, "retrieve", "pacs", studies.doe, "--wait", "--timeout", "60")
    assert job["state"] == "succeeded", job
    assert job["result"]["completed"] == 4 and job["result"]["listed"] == 4
    assert job["attempts"] == 1
    assert job["progress"]["total_files"] == 4
    assert _local_sops(daemon) == studies.sop_uids[one] | studies.sop_uids[other]


def test_retrieve_broken_midway_is_retried_and_completes(
    make_kioskd: MakeKioskd, pacs: tuple[PeerProcess, int], studies: Studies
) -> None:
    peer, kiosk_port = pacs
    with FlakyProxy(peer.port, cut_moves=1) as proxy:
        daemon = _kioskd(make_kioskd, peer, kiosk_port, pacs_port=proxy.port)
        job = _json(daemon, "retrieve", "pacs", studies.doe, "--wait", "--timeout", "60")
    assert proxy.cuts == 1 and proxy.moves == 2
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2
    assert job["result"]["verified"] is True
    assert re.search(r"job \d+ failed \(queued\): association with \w+ lost", daemon.log())
    wanted = studies.sop_uids[studies.doe_series[0]] | studies.sop_uids[studies.doe_series[1]]
    assert _local_sops(daemon) == wanted


def test_refused_destination_is_not_retried(
    make_kioskd: MakeKioskd, pacs: tuple[PeerProcess, int], studies: Studies
) -> None:
    peer, kiosk_port = pacs
    daemon = _kioskd(
        make_kioskd,
        peer,
        kiosk_port,
        dicom={"additional_ae_titles": ["STRANGER"]},
        retrieve={"retry_delay_seconds": 0.2, "destination_ae": "STRANGER"},
    )
    job = _json(daemon, "retrieve", "pacs", studies.roe, "--wait", "--timeout", "60")
    assert job["state"] == "failed", job
    assert job["attempts"] == 1 and job["max_attempts"] == 6
    # dcmqrscp: Refused: Move Destination unknown; Orthanc: Failed: Unable to process.
    assert re.search(r"0xA801|0xC\w{3}", job["error"]), job["error"]
    assert _local_sops(daemon) == set()


def test_reported_complete_but_not_received_fails(
    make_kioskd: MakeKioskd, tmp_path: Path, studies: Studies
) -> None:
    """The peer maps our destination AE to another host: it reports success, we have nothing."""
    kiosk_port = free_port()
    with Storescp(tmp_path / "elsewhere") as elsewhere:
        peer = start_pacs(
            "dcmqrscp", tmp_path, studies.files, {"KIOSK": kiosk_port, "KIOSK2": elsewhere.port}
        )
        try:
            daemon = _kioskd(
                make_kioskd,
                peer,
                kiosk_port,
                retrieve={"retry_delay_seconds": 0.2, "destination_ae": "KIOSK2"},
            )
            job = _json(daemon, "retrieve", "pacs", studies.roe, "--wait", "--timeout", "60")
        finally:
            peer.stop(timeout=0.5)
        assert set(elsewhere.received()) == studies.sop_uids[next(iter(_roe_series(studies)))]
    assert job["state"] == "failed", job
    assert job["attempts"] == 1
    assert "not in our store" in job["error"]
    assert job["result"]["completed"] == 1 and job["result"]["verified"] is False


def _roe_series(studies: Studies) -> set[str]:
    return set(studies.sop_uids) - set(studies.doe_series)
