"""kioskd as a service: sd_notify, orderly SIGTERM drain, no patient data in logs, study-complete.

Every test runs the real daemon as a subprocess.
"""

from __future__ import annotations

import itertools
import re
import signal
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE

from tests.peers.data import dataset_bytes, make_instance
from tests.peers.dcmtk import storescu
from tests.peers.kioskd import KioskdProcess
from tests.peers.lifecycle import runstate, start_without_probe, wait_runstate
from tests.peers.sender import LoopSender, open_ct_association, send_files, sop_uid_of

MakeKioskd = Callable[..., KioskdProcess]


def _wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _query(daemon: KioskdProcess, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{daemon.index_file}?mode=ro", uri=True, timeout=30)
    try:
        return [tuple(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def _echo(port: int) -> int | None:
    ae = AE(ae_title="ECHOSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="KIOSK")
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    return int(status.Status) if "Status" in status else None


# -- sd_notify ----------------------------------------------------------------------------------


@pytest.fixture(params=["path", "abstract"])
def notify_socket(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket standing in for systemd: (NOTIFY_SOCKET value, bound socket)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path = tmp_path / "notify.sock"
        sock.bind(str(path))
        address = str(path)
    else:
        name = f"kiosk-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        address = "@" + name
    try:
        yield address, sock
    finally:
        sock.close()


def _recv(sock: socket.socket, timeout: float) -> tuple[str, float] | None:
    sock.settimeout(timeout)
    try:
        data = sock.recv(4096)
    except TimeoutError:
        return None
    return data.decode(), time.monotonic()


def test_sd_notify_ready_watchdog_stopping(
    make_kioskd: MakeKioskd,
    notify_socket: tuple[str, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address, sock = notify_socket
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    daemon = make_kioskd(start=False)
    daemon.start(extra_env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"}, wait=False)

    first = _recv(sock, 30)
    assert first is not None, f"no READY=1 within 30 s\n{daemon.log()}"
    fields = first[0].split("\n")
    assert fields[0] == "READY=1"
    assert f"STATUS=listening on port {daemon.port}" in fields
    # READY means ready: an association works right away, without any waiting.
    assert _echo(daemon.port) == 0x0000

    pings = []
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:
        got = _recv(sock, 0.5)
        if got is None:
            break
        assert got[0] == "WATCHDOG=1", got[0]
        pings.append(got[1])
    assert len(pings) >= 5, f"{len(pings)} WATCHDOG=1 in 1.2 s with WatchdogSec=0.2"
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) < 0.3, f"watchdog gaps {gaps} (WATCHDOG_USEC is 0.2 s)"

    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    seen = []
    while True:
        got = _recv(sock, 10)
        assert got is not None, f"no STOPPING=1 after SIGTERM; got {seen}\n{daemon.log()}"
        seen.append(got[0])
        if got[0] == "STOPPING=1":
            break
        assert got[0] == "WATCHDOG=1"
    assert daemon.proc.wait(timeout=15) == 0


# -- SIGTERM drains -----------------------------------------------------------------------------


def _connection_refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_drains_in_flight_reception(make_kioskd: MakeKioskd, tmp_path: Path) -> None:
    files = [make_instance(tmp_path, instance_number=i) for i in range(120)]
    uids = {f: sop_uid_of(f) for f in files}
    daemon = make_kioskd(start=False)
    start_without_probe(daemon)
    sender = LoopSender(daemon.port, files, uids, pause=0.015, calling="SLOWSCU")
    sender.start()
    _wait_for(lambda: len(sender.acked) >= 10, 20, "the first acknowledged instances")

    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    terminated_at = time.monotonic()
    # The run state says 'stopping' once the listener is closed.
    wait_runstate(daemon, lambda s: s["state"] == "stopping", timeout=10)
    assert _connection_refused(daemon.port), "a new connection was accepted after SIGTERM"
    refused_at = time.monotonic()
    assert daemon.proc.poll() is None, "kioskd did not wait for the open association"
    assert sender.is_alive(), "the in-flight association was cut"

    assert daemon.proc.wait(timeout=40) == 0
    sender.join(timeout=20)
    assert not sender.is_alive()
    assert sender.failures == [], sender.failures
    assert sender.released, "the sender's association did not end with a release"
    assert len(sender.acked) == len(files)
    assert any(at > refused_at for at in sender.acked_at.values())
    assert any(at > terminated_at for at in sender.acked_at.values())

    indexed = dict(_query(daemon, "SELECT sop_instance_uid, path FROM instances"))
    assert set(sender.acked) <= set(indexed)
    for uid, source in sender.acked.items():
        assert dataset_bytes(daemon.store_dir / indexed[uid]) == dataset_bytes(source)
    log = daemon.log()
    assert "draining 1 open association(s)" in log
    assert "aborted" not in log
    assert log.rstrip().endswith("stopped")
    assert not (daemon.var / "run" / "kioskd.json").exists()


def test_sigterm_aborts_what_outlives_the_drain_period(
    make_kioskd: MakeKioskd, tmp_path: Path
) -> None:
    daemon = make_kioskd({"dicom": {"drain_seconds": 1}}, start=False)
    start_without_probe(daemon)
    source = make_instance(tmp_path)
    assoc = open_ct_association(daemon.port, calling="IDLESCU")
    assert assoc.is_established
    try:
        assert assoc.send_c_store(source).Status == 0x0000
        assert daemon.proc is not None
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=15) == 0
        elapsed = time.monotonic() - started
    finally:
        if assoc.is_established:
            assoc.abort()
    assert 0.9 <= elapsed < 6, elapsed
    assert "aborted 1 association(s) still open after 1 s" in daemon.log()
    assert _query(daemon, "SELECT sop_instance_uid FROM instances") == [(sop_uid_of(source),)]


def test_tcp_probe_does_not_hold_an_association_slot(make_kioskd: MakeKioskd) -> None:
    """A bare TCP connect/close (a health check, a port scan, `nc -z`) is not an association:
    it must not be counted as open, and must not delay an orderly stop by `drain_seconds`."""
    daemon = make_kioskd({"dicom": {"drain_seconds": 5}}, start=False)
    start_without_probe(daemon)
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5):
        pass
    time.sleep(1.5)  # the run state is refreshed every second
    state = runstate(daemon)
    assert state is not None
    assert daemon.proc is not None
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=20) == 0
    elapsed = time.monotonic() - started
    problems = []
    if state["active_associations"] != 0:
        problems.append(f"{state['active_associations']} open association(s) after a TCP probe")
    if elapsed >= 3:
        problems.append(f"SIGTERM took {elapsed:.1f} s")
    if "aborted" in daemon.log():
        problems.append("the probe was 'aborted' at shutdown")
    assert not problems, "; ".join(problems)


def test_closed_tcp_probes_do_not_use_up_association_slots(make_kioskd: MakeKioskd) -> None:
    """With max_associations = 2, two TCP connections already closed by their peer must not
    make the next real association fail with 'local limit exceeded'."""
    daemon = make_kioskd({"dicom": {"max_associations": 2}}, start=False)
    start_without_probe(daemon)
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=5):
            pass
    time.sleep(0.5)
    assert _echo(daemon.port) == 0x0000, "a real peer was turned away after two closed probes"


# -- no patient data in logs --------------------------------------------------------------------

_PATIENTS = [
    {"patient_name": "Zyxwvut^Qwerty", "patient_id": "PID-98765-XY", "birth_date": "19391231"},
    {"patient_name": "Plumbago^Xanthippe", "patient_id": "QQ-31337-ZZ", "birth_date": "19020229"},
]
_SECRETS = [
    "Zyxwvut^Qwerty",
    "Zyxwvut",
    "Qwerty",
    "PID-98765-XY",
    "98765-XY",
    "19391231",
    "1939-12-31",
    "Plumbago^Xanthippe",
    "Plumbago",
    "Xanthippe",
    "QQ-31337-ZZ",
    "19020229",
]


def _mismatched_instance(directory: Path, patient: dict[str, str]) -> Path:
    """A file whose File Meta names another SOP Instance UID than its data set (refused 0xA900)."""
    path = make_instance(directory, **patient)
    ds = pydicom.dcmread(path)
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    out = directory / "mismatch.dcm"
    ds.save_as(out)
    return out


@pytest.mark.parametrize("network_debug", [False, True], ids=["debug", "network-debug"])
def test_no_patient_data_in_the_log(
    make_kioskd: MakeKioskd, tmp_path: Path, network_debug: bool
) -> None:
    daemon = make_kioskd(
        {
            "logging": {"level": "DEBUG", "network_debug": network_debug},
            "store": {"study_quiet_seconds": 1},
        },
        start=False,
    )
    start_without_probe(daemon)
    src = tmp_path / "src"
    src.mkdir()
    study_a, study_b = generate_uid(), generate_uid()
    files_a = [
        make_instance(src, study_uid=study_a, instance_number=i, **_PATIENTS[0]) for i in range(3)
    ]
    files_b = [
        make_instance(src, study_uid=study_b, instance_number=i, **_PATIENTS[1]) for i in range(2)
    ]
    statuses = send_files(daemon.port, files_a, calling="PRIVSCU")
    assert set(statuses.values()) == {0x0000}
    result = storescu(daemon.port, files_b, calling="PRIVDCMTK")
    assert result.returncode == 0, result.stderr
    refused = send_files(daemon.port, [_mismatched_instance(tmp_path, _PATIENTS[0])])
    assert set(refused.values()) == {0xA900}
    assert _echo(daemon.port) == 0x0000

    _wait_for(
        lambda: _query(daemon, "SELECT COUNT(*) FROM studies WHERE state = 'complete'")[0][0] == 2,
        10,
        "both studies to complete",
    )
    status = daemon.kioskctl("status")
    assert status.returncode == 0, status.stderr
    studies = daemon.kioskctl("studies")
    assert "Zyxwvut^Qwerty" in studies.stdout  # the data is there; only the log must not show it
    assert daemon.stop(timeout=20) == 0

    log = daemon.log()
    assert "study complete" in log
    assert "refused with 0xA900" in log
    assert " DEBUG " in log
    if network_debug:
        assert re.search(r"DEBUG pynetdicom", log), "network_debug produced no pynetdicom lines"
    lowered = log.lower()
    leaked = [s for s in _SECRETS if s.lower() in lowered]
    assert not leaked, f"patient data in the daemon log: {leaked}"


# -- study-complete detection -------------------------------------------------------------------


def _study_state(daemon: KioskdProcess, study_uid: str) -> str | None:
    rows = _query(daemon, "SELECT state FROM studies WHERE study_uid = ?", (study_uid,))
    return rows[0][0] if rows else None


def _events(daemon: KioskdProcess, study_uid: str) -> list[str]:
    return [
        r[0]
        for r in _query(
            daemon, "SELECT kind FROM store_events WHERE study_uid = ? ORDER BY id", (study_uid,)
        )
    ]


def test_study_complete_detection_and_reopen(make_kioskd: MakeKioskd, tmp_path: Path) -> None:
    daemon = make_kioskd({"store": {"study_quiet_seconds": 1}}, start=False)
    start_without_probe(daemon)
    study = generate_uid()
    series = generate_uid()
    files = [
        make_instance(tmp_path, study_uid=study, series_uid=series, instance_number=i)
        for i in range(4)
    ]
    sent_at = time.time()
    assert set(send_files(daemon.port, files[:3]).values()) == {0x0000}
    assert _study_state(daemon, study) == "receiving"
    _wait_for(lambda: _study_state(daemon, study) == "complete", 6, "the study to complete")
    completed_at, last_received = _query(
        daemon, "SELECT completed_at, last_received_at FROM studies WHERE study_uid = ?", (study,)
    )[0]
    assert completed_at - last_received >= 1.0
    assert completed_at - sent_at < 5
    assert _events(daemon, study) == ["study_created", "study_complete"]

    # A late instance re-opens the study...
    assert set(send_files(daemon.port, files[3:]).values()) == {0x0000}
    assert _study_state(daemon, study) == "receiving"
    assert _events(daemon, study)[-1] == "study_reopened"
    assert _query(daemon, "SELECT completed_at FROM studies WHERE study_uid = ?", (study,)) == [
        (None,)
    ]
    # ...which completes again after another quiet period.
    _wait_for(lambda: _study_state(daemon, study) == "complete", 6, "the study to complete again")
    assert _events(daemon, study) == [
        "study_created",
        "study_complete",
        "study_reopened",
        "study_complete",
    ]
    count = _query(daemon, "SELECT COUNT(*) FROM instances WHERE study_uid = ?", (study,))
    assert count == [(4,)]
    assert daemon.stop(timeout=20) == 0


def test_quiet_period_per_called_ae_title(make_kioskd: MakeKioskd, tmp_path: Path) -> None:
    daemon = make_kioskd(
        {
            "dicom": {"additional_ae_titles": ["SLOWMOD"]},
            "store": {"study_quiet_seconds": 1, "quiet_seconds_by_called_ae": {"SLOWMOD": 600}},
        },
        start=False,
    )
    start_without_probe(daemon)
    fast_study, slow_study = generate_uid(), generate_uid()
    fast = [make_instance(tmp_path, study_uid=fast_study, instance_number=i) for i in range(2)]
    slow = [make_instance(tmp_path, study_uid=slow_study, instance_number=i) for i in range(2)]
    assert set(send_files(daemon.port, slow, called="SLOWMOD").values()) == {0x0000}
    assert set(send_files(daemon.port, fast, called="KIOSK").values()) == {0x0000}
    _wait_for(lambda: _study_state(daemon, fast_study) == "complete", 6, "the KIOSK study")
    time.sleep(1.5)  # the slow study is older than the fast one: well past 1 s by now
    assert _study_state(daemon, slow_study) == "receiving"
    assert _query(
        daemon, "SELECT last_called_ae FROM studies WHERE study_uid = ?", (slow_study,)
    ) == [("SLOWMOD",)]
    assert "study_complete" not in _events(daemon, slow_study)
    # Only our own titles are answered.
    assoc = open_ct_association(daemon.port, called="NOTOURS", timeout=5)
    assert assoc.is_rejected
    assert daemon.stop(timeout=20) == 0
