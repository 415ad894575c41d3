"""Storage SCP failure statuses and clean-up, each provoked by a real peer against a real kioskd.

0xA700 (free-space reserve, full filesystem), 0xA900 (data set does not match the request),
0xC000 (undecodable data set), peers that abort or die in the middle of a data set, and a
duplicate SOP Instance UID. Every test looks at the outcome: statuses, files, index rows.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.peers.data import dataset_bytes, make_instance
from tests.peers.dcmtk import echoscu, storescu
from tests.peers.kioskd import KioskdProcess
from tests.peers.lowlevel import (
    associate,
    context_id_for,
    file_store_request,
    send_partial_store,
    send_raw_store,
    store_request,
)
from tests.peers.store_view import (
    incoming_files,
    index_rows,
    indexed_instances,
    store_files,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
MIB = 1024 * 1024

MakeKioskd = Callable[..., KioskdProcess]


def _store_with_pynetdicom(daemon: KioskdProcess, path: Path) -> pydicom.Dataset:
    """C-STORE one file with pynetdicom and return the response status data set."""
    assoc = associate(daemon.port, [(CT, EXPLICIT_LE)], calling="PYSCU", timeout=30)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(path)
    finally:
        assoc.release()
    assert "Status" in status, "no C-STORE response"
    return status


def _assert_nothing_stored(daemon: KioskdProcess) -> None:
    assert indexed_instances(daemon) == []
    assert wait_until(lambda: not store_files(daemon), timeout=5), store_files(daemon)


def _assert_echo(daemon: KioskdProcess) -> None:
    result = echoscu(daemon.port)
    assert result.returncode == 0, result.stderr


# -- 0xA700 ---------------------------------------------------------------------------------


def test_reserve_crossed_refuses_with_a700(make_kioskd: MakeKioskd, tmp_path: Path) -> None:
    """A reserve larger than the free space: every C-STORE is refused, nothing is kept."""
    free_mb = shutil.disk_usage(tmp_path).free // MIB
    daemon = make_kioskd({"store": {"free_space_reserve_mb": free_mb + 1024}})
    source = make_instance(tmp_path)

    status = _store_with_pynetdicom(daemon, source)
    assert status.Status == 0xA700
    assert status.get("ErrorComment"), "0xA700 without an Error Comment"

    # DCMTK sees the same refusal (and exits non-zero).
    result = storescu(daemon.port, [source], extra=("-v",))
    assert "Received Store Response (Refused: OutOfResources)" in result.stderr, result.stderr
    assert result.returncode != 0

    _assert_nothing_stored(daemon)
    assert incoming_files(daemon) == []
    _assert_echo(daemon)


@pytest.fixture
def tmpfs_var() -> Iterator[Callable[[KioskdProcess, str], Path]]:
    """`mount(daemon, size)`: put a (not yet started) daemon's var dir on a tmpfs of `size`.

    Skips the test when this process cannot mount. Teardown kills the daemon, then unmounts.
    """
    mounted: list[tuple[KioskdProcess, Path]] = []

    def mount(daemon: KioskdProcess, size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        target = daemon.var
        target.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(target)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {result.stderr.strip()}")
        mounted.append((daemon, target))
        return target

    yield mount
    for daemon, target in reversed(mounted):
        daemon.kill9()
        result = subprocess.run(
            ["umount", str(target)], capture_output=True, timeout=30, check=False
        )
        if result.returncode != 0:
            subprocess.run(
                ["umount", "-l", str(target)], capture_output=True, timeout=30, check=False
            )


def test_full_filesystem_refuses_with_a700_and_keeps_serving(
    make_kioskd: MakeKioskd, tmpfs_var: Callable[[KioskdProcess, str], Path], tmp_path: Path
) -> None:
    """Reserve 0 on a 2 MiB filesystem: an instance bigger than the disk gets 0xA700 (ENOSPC
    while streaming), its partial file is gone, and the daemon goes on serving and storing."""
    daemon = make_kioskd(start=False)
    tmpfs_var(daemon, "2m")
    daemon.start()
    big = make_instance(tmp_path, rows=1200, columns=1200)  # ~2.9 MB
    assert big.stat().st_size > shutil.disk_usage(daemon.var).total

    status = _store_with_pynetdicom(daemon, big)
    assert status.Status == 0xA700
    assert status.get("ErrorComment")
    _assert_nothing_stored(daemon)
    assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log()
    _assert_echo(daemon)

    # The space of the partial file came back: a small instance fits and is indexed.
    small = make_instance(tmp_path)
    assert _store_with_pynetdicom(daemon, small).Status == 0x0000
    sop_uid = pydicom.dcmread(small, stop_before_pixels=True).SOPInstanceUID
    assert [r["sop_instance_uid"] for r in indexed_instances(daemon)] == [sop_uid]
    assert incoming_files(daemon) == []


def test_reserve_crossed_while_streaming_refuses_with_a700(
    make_kioskd: MakeKioskd, tmpfs_var: Callable[[KioskdProcess, str], Path], tmp_path: Path
) -> None:
    """64 MiB filesystem, 32 MiB reserve: a 48 MB instance starts fine but would cross the
    reserve half way through. It is refused with 0xA700; a small one is still accepted."""
    daemon = make_kioskd({"store": {"free_space_reserve_mb": 32}}, start=False)
    tmpfs_var(daemon, "64m")
    daemon.start()
    big = make_instance(tmp_path, rows=4900, columns=4900)  # ~48 MB
    free = shutil.disk_usage(daemon.var).free
    assert free - 32 * MIB < big.stat().st_size < free

    status = _store_with_pynetdicom(daemon, big)
    assert status.Status == 0xA700
    assert status.get("ErrorComment")
    _assert_nothing_stored(daemon)

    small = make_instance(tmp_path)
    assert _store_with_pynetdicom(daemon, small).Status == 0x0000
    assert len(indexed_instances(daemon)) == 1


# -- 0xA900 ---------------------------------------------------------------------------------


def test_sop_class_mismatch_gets_a900(kioskd: KioskdProcess, tmp_path: Path) -> None:
    """A CT data set sent as MR Image Storage on the accepted MR context: 0xA900."""
    source = make_instance(tmp_path)  # CT Image Storage
    sop_uid = str(pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID)
    assoc = associate(kioskd.port, [(MR, EXPLICIT_LE), (CT, EXPLICIT_LE)])
    assert assoc.is_established
    try:
        req = store_request(MR, sop_uid, dataset_bytes(source))
        rsp = send_raw_store(assoc, context_id_for(assoc, MR), req)
        assert rsp.Status == 0xA900
        assert rsp.ErrorComment
        # The association is still usable: the same instance on its own context is stored.
        req = store_request(CT, sop_uid, dataset_bytes(source), message_id=2)
        assert send_raw_store(assoc, context_id_for(assoc, CT), req).Status == 0x0000
    finally:
        assoc.release()
    rows = indexed_instances(kioskd)
    assert [(r["sop_instance_uid"], r["sop_class_uid"]) for r in rows] == [(sop_uid, CT)]
    assert len(kioskd.stored_files()) == 1
    assert incoming_files(kioskd) == []


def test_sop_instance_mismatch_gets_a900(kioskd: KioskdProcess, tmp_path: Path) -> None:
    """The request announces one SOP Instance UID, the data set carries another: 0xA900."""
    source = make_instance(tmp_path)
    assoc = associate(kioskd.port, [(CT, EXPLICIT_LE)])
    assert assoc.is_established
    try:
        req = store_request(CT, generate_uid(), dataset_bytes(source))
        rsp = send_raw_store(assoc, context_id_for(assoc, CT), req)
    finally:
        assoc.release()
    assert rsp.Status == 0xA900
    assert rsp.ErrorComment
    _assert_nothing_stored(kioskd)


# -- 0xC000 ---------------------------------------------------------------------------------

_PIXEL_DATA_HEADER = b"\xe0\x7f\x10\x00OW"


def _undecodable(kind: str, source: Path) -> bytes:
    good = dataset_bytes(source)
    pixel = good.rfind(_PIXEL_DATA_HEADER)
    assert pixel > 0
    if kind == "garbage":
        return b"\xff" * 1000
    if kind == "truncated_element_header":
        # Every element up to Pixel Data, then only its tag and VR (no length, no value).
        return good[: pixel + len(_PIXEL_DATA_HEADER)]
    if kind == "truncated_value":
        # Pixel Data announces 8192 bytes; 100 are missing.
        return good[:-100]
    if kind == "broken_sequence":
        # An undefined-length sequence whose content is not an item.
        return good[:pixel] + b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff" + bytes(range(1, 33))
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["garbage", "truncated_element_header", "truncated_value", "broken_sequence"]
)
def test_undecodable_dataset_gets_c000(kioskd: KioskdProcess, tmp_path: Path, kind: str) -> None:
    """Bytes that are not a complete data set: a failure in 0xC000-0xCFFF with an Error
    Comment, nothing kept, and the daemon still answers."""
    source = make_instance(tmp_path)
    sop_uid = str(pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID)
    assoc = associate(kioskd.port, [(CT, EXPLICIT_LE)])
    assert assoc.is_established
    try:
        req = store_request(CT, sop_uid, _undecodable(kind, source))
        rsp = send_raw_store(assoc, context_id_for(assoc, CT), req)
    finally:
        assoc.release()
    assert 0xC000 <= rsp.Status <= 0xCFFF, f"status 0x{rsp.Status:04X}: {rsp.ErrorComment}"
    assert rsp.ErrorComment
    _assert_nothing_stored(kioskd)
    _assert_echo(kioskd)


# -- peers that go away in the middle of a data set -----------------------------------------


def _partial_file_grows(daemon: KioskdProcess, minimum: int) -> bool:
    return any(p.stat().st_size >= minimum for p in incoming_files(daemon) if p.exists())


def _assert_clean_and_still_storing(daemon: KioskdProcess, tmp_path: Path) -> None:
    assert wait_until(lambda: incoming_files(daemon) == [], timeout=10), incoming_files(daemon)
    assert daemon.stored_files() == []
    assert indexed_instances(daemon) == []
    after = make_instance(tmp_path, patient_id="AFTER")
    result = storescu(daemon.port, [after])
    assert result.returncode == 0, result.stderr
    rows = indexed_instances(daemon)
    assert len(rows) == 1
    assert len(daemon.stored_files()) == 1
    assert (daemon.store_dir / rows[0]["path"]).is_file()


def test_abort_mid_dataset_leaves_nothing(kioskd: KioskdProcess, tmp_path: Path) -> None:
    """Command and 4 of ~33 data fragments, then A-ABORT: the partial file (which did exist
    while streaming) is removed, nothing is indexed, and the next store works."""
    source = make_instance(tmp_path, rows=1024, columns=1024)  # ~2 MB, 64 KiB PDUs
    assoc = associate(kioskd.port, [(CT, EXPLICIT_LE)])
    assert assoc.is_established
    try:
        total = send_partial_store(assoc, context_id_for(assoc, CT), file_store_request(source), 4)
        assert total > 8
        assert wait_until(lambda: _partial_file_grows(kioskd, 3 * 60_000), timeout=10), (
            "the daemon never streamed the data set into store/.incoming"
        )
    finally:
        assoc.abort()
    _assert_clean_and_still_storing(kioskd, tmp_path)


def test_killed_peer_mid_dataset_leaves_nothing(kioskd: KioskdProcess, tmp_path: Path) -> None:
    """The sending process dies (SIGKILL) half way through a data set: no A-ABORT, the kernel
    just closes the TCP connection. Same outcome as an abort."""
    source = make_instance(tmp_path, rows=1024, columns=1024)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.peers.lowlevel", str(kioskd.port), str(source), "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "SENT"
        assert wait_until(lambda: _partial_file_grows(kioskd, 3 * 60_000), timeout=10), (
            "the daemon never streamed the data set into store/.incoming"
        )
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    _assert_clean_and_still_storing(kioskd, tmp_path)


# -- duplicates -----------------------------------------------------------------------------


@pytest.mark.parametrize("change", ["same_series", "new_series", "new_study"])
def test_duplicate_sop_instance_uid_replaces(
    kioskd: KioskdProcess, tmp_path: Path, change: str
) -> None:
    """A second instance with the same SOP Instance UID replaces the first: one file with the
    new content, one index row pointing at it, no series or study left without instances."""
    sop_uid = generate_uid()
    study, series = generate_uid(), generate_uid()
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = make_instance(tmp_path / "first", sop_uid=sop_uid, study_uid=study, series_uid=series)
    new_study = generate_uid() if change == "new_study" else study
    new_series = series if change == "same_series" else generate_uid()
    second = make_instance(
        tmp_path / "second",
        sop_uid=sop_uid,
        study_uid=new_study,
        series_uid=new_series,
        instance_number=7,
    )
    ds = pydicom.dcmread(second)
    ds.StudyDescription = "SECOND COPY"
    ds.save_as(second, enforce_file_format=True)

    result = storescu(kioskd.port, [first])
    assert result.returncode == 0, result.stderr
    (old_file,) = kioskd.stored_files()
    result = storescu(kioskd.port, [second])
    assert result.returncode == 0, result.stderr

    files = kioskd.stored_files()
    assert len(files) == 1
    stored = pydicom.dcmread(files[0])
    assert stored.StudyDescription == "SECOND COPY"
    assert stored.InstanceNumber == 7
    assert stored.PixelData == ds.PixelData
    assert dataset_bytes(files[0]) == dataset_bytes(second)
    if change != "same_series":
        assert not old_file.exists()

    rows = indexed_instances(kioskd)
    assert len(rows) == 1
    row = rows[0]
    assert row["sop_instance_uid"] == sop_uid
    assert (row["study_uid"], row["series_uid"]) == (new_study, new_series)
    assert row["instance_number"] == 7
    assert row["size"] == files[0].stat().st_size
    assert kioskd.store_dir / PurePosixPath(row["path"]) == files[0]
    series_rows = index_rows(kioskd, "SELECT series_uid, study_uid FROM series")
    assert series_rows == [{"series_uid": new_series, "study_uid": new_study}]
    study_rows = index_rows(kioskd, "SELECT study_uid, study_description FROM studies")
    assert study_rows == [{"study_uid": new_study, "study_description": "SECOND COPY"}]
    assert incoming_files(kioskd) == []


def test_lowlevel_helpers_send_a_valid_store(kioskd: KioskdProcess, tmp_path: Path) -> None:
    """Control for the tests above: the same low-level path with a consistent request is
    stored, so their failures come from what they change, not from the helpers."""
    source = make_instance(tmp_path)
    assoc = associate(kioskd.port, [(CT, EXPLICIT_LE)])
    assert assoc.is_established
    try:
        rsp = send_raw_store(assoc, context_id_for(assoc, CT), file_store_request(source))
    finally:
        assoc.release()
    assert rsp.Status == 0x0000
    (stored,) = kioskd.stored_files()
    assert dataset_bytes(stored) == dataset_bytes(source)
