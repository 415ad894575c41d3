"""Association acceptance and rejection of our SCP, checked on the A-ASSOCIATE-RJ itself.

Called/Calling AE Title rules, additional local AE titles, and the association limit (100 by
default): real pynetdicom and DCMTK peers against a real kioskd.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.association import Association

from appliance.dicom.scu_reactor import keep_responses
from tests.peers.data import make_instance
from tests.peers.dcmtk import echoscu, storescu
from tests.peers.kioskd import KioskdProcess
from tests.peers.lowlevel import RejectionRecorder, associate, lowlevel_ae
from tests.peers.store_view import index_rows, indexed_instances, wait_until

pytestmark = pytest.mark.timeout(120)

CT = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
EXPLICIT_LE = "1.2.840.10008.1.2.1"

MakeKioskd = Callable[..., KioskdProcess]


def _rejection(port: int, *, called: str = "KIOSK", calling: str = "LOWSCU") -> tuple[int, ...]:
    """Try a Verification association; return (result, source, reason) of its A-ASSOCIATE-RJ."""
    recorder = RejectionRecorder()
    assoc = associate(
        port,
        [(VERIFICATION, EXPLICIT_LE)],
        called=called,
        calling=calling,
        evt_handlers=recorder.handlers,
    )
    try:
        return recorder.result(assoc)
    finally:
        if assoc.is_established:
            assoc.release()


def _echo_assoc(port: int, *, called: str = "KIOSK", calling: str = "LOWSCU") -> Association:
    return associate(port, [(VERIFICATION, EXPLICIT_LE)], called=called, calling=calling)


def _echo_works(port: int, *, called: str = "KIOSK", calling: str = "LOWSCU") -> bool:
    assoc = _echo_assoc(port, called=called, calling=calling)
    if not assoc.is_established:
        return False
    try:
        return bool(assoc.send_c_echo().Status == 0x0000)
    finally:
        assoc.release()


def test_unknown_called_ae_is_rejected(kioskd: KioskdProcess) -> None:
    """Called AE Title not ours: rejected-permanent, service-user, called-AE-not-recognised."""
    assert _rejection(kioskd.port, called="WRONG") == (1, 1, 7)

    result = echoscu(kioskd.port, called="WRONG")
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stderr, result.stderr

    # The right title still gets through (so the rejection is about the title).
    assert _echo_works(kioskd.port)
    assert echoscu(kioskd.port).returncode == 0


def test_calling_ae_not_allowed_is_rejected(make_kioskd: MakeKioskd, tmp_path: Path) -> None:
    """With a non-empty allow list, any other Calling AE Title is rejected (reason 3),
    the listed one is accepted and may store (also from DCMTK, which pads titles)."""
    daemon = make_kioskd({"dicom": {"allowed_calling_ae_titles": ["GOODSCU"]}})

    assert _rejection(daemon.port, calling="BADSCU") == (1, 1, 3)
    assert echoscu(daemon.port, calling="BADSCU").returncode != 0
    assert storescu(daemon.port, [make_instance(tmp_path)], calling="BADSCU").returncode != 0
    assert indexed_instances(daemon) == []

    assert _echo_works(daemon.port, calling="GOODSCU")
    assert echoscu(daemon.port, calling="GOODSCU").returncode == 0
    source = make_instance(tmp_path)
    result = storescu(daemon.port, [source], calling="GOODSCU")
    assert result.returncode == 0, result.stderr
    rows = indexed_instances(daemon)
    assert [(r["sop_instance_uid"], r["calling_ae"]) for r in rows] == [
        (pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID, "GOODSCU")
    ]


def test_additional_ae_title_is_accepted_and_recorded(
    make_kioskd: MakeKioskd, tmp_path: Path
) -> None:
    """KIOSK2 is one of our titles: accepted as Called AE, and the index remembers that the
    instance came in through KIOSK2 (the main title KIOSK stays valid, a third one does not)."""
    daemon = make_kioskd({"dicom": {"additional_ae_titles": ["KIOSK2"]}})
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    via_second = make_instance(tmp_path / "a")
    via_main = make_instance(tmp_path / "b")

    result = storescu(daemon.port, [via_second], called="KIOSK2")
    assert result.returncode == 0, result.stderr
    result = storescu(daemon.port, [via_main], called="KIOSK")
    assert result.returncode == 0, result.stderr
    assert _echo_works(daemon.port, called="KIOSK2")
    assert _rejection(daemon.port, called="KIOSK3") == (1, 1, 7)

    def uid(path: Path) -> str:
        return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)

    called = {r["sop_instance_uid"]: r["called_ae"] for r in indexed_instances(daemon)}
    assert called == {uid(via_second): "KIOSK2", uid(via_main): "KIOSK"}
    study_uid = str(pydicom.dcmread(via_second, stop_before_pixels=True).StudyInstanceUID)
    rows = index_rows(
        daemon, "SELECT last_called_ae FROM studies WHERE study_uid = ?", (study_uid,)
    )
    assert rows == [{"last_called_ae": "KIOSK2"}]


def _start_unprobed(daemon: KioskdProcess) -> None:
    """Start without the TCP readiness probe of `KioskdProcess.start` (a connection that never
    associates holds an association slot for a while: see the test of that below); wait for the
    daemon's own "ready" log line instead."""
    daemon.start(wait=False)
    ready = wait_until(lambda: " ready (pid " in daemon.log(), timeout=30)
    assert ready, daemon.log()


def _open_and_store(ae: AE, port: int, files: list[Path]) -> tuple[Association, list[int]]:
    assoc = ae.associate("127.0.0.1", port, ae_title="KIOSK")
    if not assoc.is_established:
        return assoc, []
    # Stock pynetdicom can lose a response to its own reactor on a loaded machine (a client
    # bug, see appliance.dicom.scu_reactor); the server under test answered on time.
    keep_responses(assoc)
    return assoc, [int(assoc.send_c_store(f).Status) for f in files]


def test_hundred_associations_then_local_limit(make_kioskd: MakeKioskd, tmp_path: Path) -> None:
    """Default limit 100: 100 simultaneous associations each store 3 instances; while they are
    all open, the 101st is rejected transient, by the service provider (presentation),
    local-limit-exceeded. After release every instance is indexed."""
    kioskd = make_kioskd(start=False)
    _start_unprobed(kioskd)
    per_assoc = 3
    batches: list[list[Path]] = []
    for n in range(100):
        directory = tmp_path / f"a{n:03d}"
        directory.mkdir()
        study = pydicom.uid.generate_uid()
        batches.append(
            [
                make_instance(
                    directory, study_uid=study, instance_number=i + 1, rows=16, columns=16
                )
                for i in range(per_assoc)
            ]
        )
    ae = lowlevel_ae("MANYSCU", timeout=20)
    ae.add_requested_context(CT, [EXPLICIT_LE])
    ae.add_requested_context(VERIFICATION, [EXPLICIT_LE])
    with ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(lambda files: _open_and_store(ae, kioskd.port, files), batches))
    assocs = [assoc for assoc, _ in results]
    try:
        assert sum(a.is_established for a in assocs) == 100
        assert all(statuses == [0x0000] * per_assoc for _, statuses in results)
        assert all(a.is_established for a in assocs), "an association ended early"

        recorder = RejectionRecorder()
        extra = ae.associate(
            "127.0.0.1", kioskd.port, ae_title="KIOSK", evt_handlers=recorder.handlers
        )
        assert recorder.result(extra) == (2, 3, 2)
    finally:
        for assoc in assocs:
            if assoc.is_established:
                assoc.release()

    assert len(indexed_instances(kioskd)) == 100 * per_assoc
    assert len(kioskd.stored_files()) == 100 * per_assoc
    # Once they are gone, associations are accepted again.
    assert wait_until(lambda: _echo_works(kioskd.port), timeout=10)


def test_configured_max_associations(make_kioskd: MakeKioskd) -> None:
    """`max_associations = 2`: the third simultaneous association is rejected with
    (transient, service-provider, local-limit-exceeded), DCMTK is refused too, and a slot
    that is released can be used again."""
    daemon = make_kioskd({"dicom": {"max_associations": 2}}, start=False)
    _start_unprobed(daemon)
    first = _echo_assoc(daemon.port)
    second = _echo_assoc(daemon.port)
    try:
        assert first.is_established and second.is_established
        assert _rejection(daemon.port) == (2, 3, 2)
        result = echoscu(daemon.port)
        assert result.returncode != 0
        assert "Local Limit Exceeded" in result.stderr, result.stderr
        assert first.send_c_echo().Status == 0x0000

        first.release()
        assert wait_until(lambda: _echo_works(daemon.port), timeout=10)
    finally:
        for assoc in (first, second):
            if assoc.is_established:
                assoc.release()


def test_closed_connection_does_not_hold_an_association_slot(make_kioskd: MakeKioskd) -> None:
    """A TCP connection closed before any A-ASSOCIATE-RQ (a port probe, a health check, a peer
    that gave up) is over at once (PS3.8 state machine: Sta2 + transport closed -> Sta1). It must
    not count against `max_associations` until the ACSE timeout (60 s) expires."""
    daemon = make_kioskd({"dicom": {"max_associations": 2}}, start=False)
    _start_unprobed(daemon)
    for _ in range(2):
        socket.create_connection(("127.0.0.1", daemon.port), timeout=5).close()

    def two_at_once() -> bool:
        first = _echo_assoc(daemon.port)
        second = _echo_assoc(daemon.port)
        try:
            return first.is_established and second.is_established
        finally:
            for assoc in (first, second):
                if assoc.is_established:
                    assoc.release()

    assert wait_until(two_at_once, timeout=5, interval=0.5), (
        "closed connections still hold association slots 5 s later"
    )
