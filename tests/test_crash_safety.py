"""Crash safety: kill -9 during reception loses nothing acknowledged; start-up repair of the store.

The first test is the real thing: a running kioskd is SIGKILLed at random moments while two
associations stream instances into it; every instance answered with Success before the kill
must survive, byte for byte, and index and files must agree after the restart's repair. The
other tests drive `InstanceStore.recover()` directly on hand-made damage.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from appliance.store import InstanceStore, StoreIndex
from appliance.store.layout import instance_relpath
from tests.peers.data import dataset_bytes, make_instance
from tests.peers.kioskd import KioskdProcess
from tests.peers.lifecycle import start_without_probe
from tests.peers.sender import CT_IMAGE_STORAGE, EXPLICIT_VR_LE, LoopSender, sop_uid_of

SEED = 20240119
ROUNDS = 7
REPAIR_LINE = "store repaired at start"


def _generate(directory: Path, count: int) -> list[Path]:
    """`count` instances in 3 studies x 2 series; every 4th one is 512x512 (a wide window for a
    kill to land mid-reception), the rest 64x64."""
    directory.mkdir(parents=True, exist_ok=True)
    studies = [generate_uid() for _ in range(3)]
    series = {s: [generate_uid(), generate_uid()] for s in studies}
    files = []
    for i in range(count):
        study = studies[i % 3]
        big = i % 4 == 0
        files.append(
            make_instance(
                directory,
                study_uid=study,
                series_uid=series[study][i % 2],
                instance_number=i + 1,
                rows=512 if big else 64,
                columns=512 if big else 64,
                patient_id=f"CRASH{i % 3}",
            )
        )
    return files


def _stack(thread: threading.Thread) -> str:
    frame = sys._current_frames().get(thread.ident or 0)
    return "".join(traceback.format_stack(frame)) if frame is not None else "(no frame)"


def _disk_paths(store_dir: Path) -> set[str]:
    return {p.relative_to(store_dir).as_posix() for p in store_dir.glob("*/*/*.dcm")}


def _index_paths(index_file: Path) -> dict[str, str]:
    """path -> SOP Instance UID of every row in `instances`."""
    conn = sqlite3.connect(index_file, timeout=30)
    try:
        return dict(conn.execute("SELECT path, sop_instance_uid FROM instances"))
    finally:
        conn.close()


def _partials(store_dir: Path) -> list[Path]:
    return [p for p in store_dir.rglob("*") if p.is_file() and p.name.endswith(".part")]


def test_kill9_during_reception_loses_nothing_acknowledged(
    make_kioskd: Callable[..., KioskdProcess], tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    delays = [rng.uniform(0.05, 1.0) for _ in range(ROUNDS)]
    files = _generate(tmp_path / "src", 300)
    uid_of = {f: sop_uid_of(f) for f in files}
    source_of = {uid: f for f, uid in uid_of.items()}
    daemon = make_kioskd({"logging": {"level": "DEBUG"}}, start=False)

    acked: dict[str, Path] = {}
    expected_repairs = 0
    needs_repair = False
    kills = []
    for round_no in range(ROUNDS):
        log_before = len(daemon.log())
        start_without_probe(daemon)
        start_log = daemon.log()[log_before:]
        if round_no:
            # The previous round's kill left work for the start-up repair iff it left a temp
            # file or a file/index mismatch (both predicted before this start).
            assert (REPAIR_LINE in start_log) == needs_repair, (
                f"round {round_no} (seed {SEED}): repair expected={needs_repair}\n{start_log}"
            )
        # Not yet acknowledged instances first, then everything again (replacements).
        pending = [f for f in files if uid_of[f] not in acked]
        rest = [f for f in files if uid_of[f] in acked]
        rng.shuffle(pending)
        order = pending + rest
        # A short DIMSE timeout: pynetdicom sometimes misses the closed connection of the
        # killed peer and would wait the full timeout for a response that never comes.
        senders = [
            LoopSender(
                daemon.port,
                order[i::2],
                uid_of,
                repeat=True,
                calling=f"CRASH{i}",
                timeout=5,
            )
            for i in range(2)
        ]
        for sender in senders:
            sender.start()
        delay = delays[round_no]
        time.sleep(delay)
        daemon.kill9()
        for sender in senders:
            sender.join(timeout=20)
            assert not sender.is_alive(), f"a sender hangs after the kill:\n{_stack(sender)}"
            assert sender.error is None, sender.error
            for uid, status in sender.failures:
                assert status is None, f"{uid} refused with 0x{status:04X} before the kill"
            acked.update(sender.acked)
        kills.append((round(delay, 3), sum(len(s.acked) for s in senders)))

        incoming = list((daemon.store_dir / ".incoming").iterdir())
        on_disk = _disk_paths(daemon.store_dir)
        indexed = set(_index_paths(daemon.index_file))
        needs_repair = bool(incoming) or on_disk != indexed
        expected_repairs += needs_repair

    # Last restart: repair, then an orderly stop.
    log_before = len(daemon.log())
    start_without_probe(daemon)
    start_log = daemon.log()[log_before:]
    assert (REPAIR_LINE in start_log) == needs_repair, start_log
    assert daemon.stop(timeout=15) == 0, daemon.log()[-3000:]

    assert len(acked) >= 50, f"too few instances acknowledged to mean anything: {kills}"
    assert expected_repairs >= 1, f"no kill ever hit an instance in flight: {kills}"

    store = daemon.store_dir
    index = _index_paths(daemon.index_file)
    on_disk = _disk_paths(store)
    assert set(index) == on_disk, "index and files disagree after repair"
    for relpath, uid in index.items():
        assert relpath.endswith(f"/{uid}.dcm")
    assert not _partials(store), "partial files left behind"
    assert list((store / ".incoming").iterdir()) == []
    assert not (daemon.var / "quarantine").exists(), "a kill -9 must not leave unreadable files"

    indexed_uids = set(index.values())
    missing = set(acked) - indexed_uids
    assert not missing, f"{len(missing)} acknowledged instance(s) lost (seed {SEED}, {kills})"
    for relpath, uid in index.items():
        # Every stored file (acknowledged or not) is one we sent, complete and unchanged.
        stored = store / relpath
        ds = pydicom.dcmread(stored)
        assert str(ds.SOPInstanceUID) == uid
        assert len(ds.PixelData) == ds.Rows * ds.Columns * 2
        assert dataset_bytes(stored) == dataset_bytes(source_of[uid]), relpath
        assert ds.file_meta.MediaStorageSOPInstanceUID == uid

    conn = sqlite3.connect(daemon.index_file)
    try:
        repaired_events = conn.execute(
            "SELECT COUNT(*) FROM store_events WHERE kind = 'store_repaired'"
        ).fetchone()[0]
        sizes = dict(conn.execute("SELECT path, size FROM instances"))
        orphans = conn.execute(
            "SELECT (SELECT COUNT(*) FROM studies WHERE study_uid NOT IN "
            "(SELECT study_uid FROM instances)), (SELECT COUNT(*) FROM series WHERE series_uid "
            "NOT IN (SELECT series_uid FROM instances)), (SELECT COUNT(*) FROM instances WHERE "
            "series_uid NOT IN (SELECT series_uid FROM series))"
        ).fetchone()
    finally:
        conn.close()
    assert repaired_events == expected_repairs
    assert tuple(orphans) == (0, 0, 0), "studies/series/instances rows out of step"
    for relpath, size in sizes.items():
        assert (store / relpath).stat().st_size == size, relpath
    assert "Traceback" not in daemon.log()


# -- InstanceStore.recover() on hand-made damage ------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[InstanceStore]:
    index = StoreIndex(tmp_path / "var" / "kiosk.sqlite")
    yield InstanceStore(tmp_path / "var" / "store", index, 0)
    index.close()


def _receive(store: InstanceStore, source: Path) -> str:
    """Store a file through the real receive path (temp file, commit); returns its relpath."""
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    incoming = store.open_incoming(
        CT_IMAGE_STORAGE, str(ds.SOPInstanceUID), EXPLICIT_VR_LE, "TESTSCU"
    )
    incoming.write(dataset_bytes(source))
    result = store.commit(
        incoming,
        expected_sop_class_uid=CT_IMAGE_STORAGE,
        expected_sop_instance_uid=str(ds.SOPInstanceUID),
        calling_ae="TESTSCU",
        called_ae="KIOSK",
    )
    return result.relpath


def _rows(store: InstanceStore, sql: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in store.index.query(sql)]


def _events(store: InstanceStore) -> list[str]:
    return [r[0] for r in _rows(store, "SELECT kind FROM store_events ORDER BY id")]


def test_recover_on_a_clean_store_changes_nothing(store: InstanceStore, tmp_path: Path) -> None:
    for i in range(3):
        _receive(store, make_instance(tmp_path, instance_number=i))
    before = store.index.indexed_paths()
    report = store.recover()
    assert not report.changed
    assert store.index.indexed_paths() == before == _disk_paths(store.root)
    assert "store_repaired" not in _events(store)


def test_orphan_temp_files_are_removed(store: InstanceStore, tmp_path: Path) -> None:
    kept = _receive(store, make_instance(tmp_path, instance_number=1))
    # A reception cut short (as after kill -9): the temp file is half written, never committed.
    source = make_instance(tmp_path, instance_number=2)
    half = store.open_incoming(CT_IMAGE_STORAGE, sop_uid_of(source), EXPLICIT_VR_LE, "X")
    data = dataset_bytes(source)
    half.write(data[: len(data) // 2])
    half.close()
    stray = store.incoming_dir / "0123456789abcdef.part"
    stray.write_bytes(b"partial")
    assert len(list(store.incoming_dir.iterdir())) == 2

    report = store.recover()
    assert report.temp_files_removed == 2
    assert (report.files_adopted, report.records_dropped, report.files_quarantined) == (0, 0, 0)
    assert list(store.incoming_dir.iterdir()) == []
    assert store.index.indexed_paths() == {kept} == _disk_paths(store.root)
    events = _rows(store, "SELECT kind, detail FROM store_events WHERE kind = 'store_repaired'")
    assert events == [("store_repaired", "temp_removed=2 adopted=0 dropped=0 quarantined=0")]
    assert not store.recover().changed


def test_file_without_index_row_is_adopted(store: InstanceStore, tmp_path: Path) -> None:
    source = make_instance(
        tmp_path, patient_name="ADOPT^ME", patient_id="ADOPT1", modality="MR", instance_number=7
    )
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    relpath = instance_relpath(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    # A crash between the rename into place and the index commit leaves exactly this.
    target = store.root / relpath
    target.parent.mkdir(parents=True)
    shutil.copyfile(source, target)

    report = store.recover()
    assert report.files_adopted == 1
    assert report.changed
    row = store.index.find_instance(str(ds.SOPInstanceUID))
    assert row is not None
    assert row.path == str(relpath)
    assert row.size == target.stat().st_size
    assert row.study_uid == ds.StudyInstanceUID
    assert row.transfer_syntax_uid == EXPLICIT_VR_LE
    study = store.index.query("SELECT patient_name, patient_id, state FROM studies")
    assert [tuple(r) for r in study] == [("ADOPT^ME", "ADOPT1", "receiving")]
    assert _rows(store, "SELECT modality FROM series") == [("MR",)]
    assert target.read_bytes() == source.read_bytes()
    assert not store.recover().changed


def test_index_row_whose_file_is_gone_is_dropped(store: InstanceStore, tmp_path: Path) -> None:
    study = generate_uid()
    gone = _receive(store, make_instance(tmp_path, study_uid=study, instance_number=1))
    kept = _receive(store, make_instance(tmp_path, study_uid=study, instance_number=2))
    (store.root / gone).unlink()

    report = store.recover()
    assert report.records_dropped == 1
    assert store.index.indexed_paths() == {kept}
    # The series of the lost instance is pruned, the study lives on.
    assert len(_rows(store, "SELECT series_uid FROM series")) == 1
    assert _rows(store, "SELECT study_uid FROM studies") == [(study,)]

    (store.root / kept).unlink()
    assert store.recover().records_dropped == 1
    assert store.index.indexed_paths() == set()
    assert _rows(store, "SELECT study_uid FROM studies") == []
    assert "study_emptied" in _events(store)


def _quarantined(store: InstanceStore) -> list[Path]:
    return sorted(store.quarantine_dir.iterdir()) if store.quarantine_dir.exists() else []


def test_unparseable_file_is_quarantined_not_deleted(store: InstanceStore, tmp_path: Path) -> None:
    kept = _receive(store, make_instance(tmp_path, instance_number=1))
    garbage = store.root / "1.2.3" / "1.2.3.4" / "1.2.3.4.5.dcm"
    garbage.parent.mkdir(parents=True)
    content = b"this is not DICOM at all\n" * 20
    garbage.write_bytes(content)

    report = store.recover()
    assert report.files_quarantined == 1
    assert report.files_adopted == 0
    assert not garbage.exists()
    (moved,) = _quarantined(store)
    assert moved.read_bytes() == content
    assert moved.name.endswith("1.2.3.4.5.dcm")
    assert store.index.indexed_paths() == {kept}
    assert not store.recover().changed


def test_dicom_file_in_the_wrong_place_is_quarantined(store: InstanceStore, tmp_path: Path) -> None:
    source = make_instance(tmp_path)
    sop = sop_uid_of(source)
    misplaced = store.root / "1.2.3" / "1.2.3.4" / f"{sop}.dcm"
    misplaced.parent.mkdir(parents=True)
    shutil.copyfile(source, misplaced)
    report = store.recover()
    assert report.files_quarantined == 1
    assert store.index.indexed_paths() == set()
    (moved,) = _quarantined(store)
    assert moved.read_bytes() == source.read_bytes()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_file_truncated_in_its_header_is_quarantined(store: InstanceStore, tmp_path: Path) -> None:
    source = make_instance(tmp_path)
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    target = store.root / instance_relpath(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    target.parent.mkdir(parents=True)
    target.write_bytes(source.read_bytes()[:400])
    assert store.recover().files_quarantined == 1
    assert store.index.indexed_paths() == set()
    assert len(_quarantined(store)) == 1


def test_file_truncated_in_its_pixel_data_is_quarantined(
    store: InstanceStore, tmp_path: Path
) -> None:
    """A file cut short inside Pixel Data (declared length 8192, fewer bytes present) is not a
    complete instance: adopting it would index, and later publish, a corrupt image."""
    source = make_instance(tmp_path)
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    target = store.root / instance_relpath(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    target.parent.mkdir(parents=True)
    data = source.read_bytes()
    target.write_bytes(data[: len(data) - 3000])
    report = store.recover()
    assert report.files_adopted == 0, "a truncated file was adopted into the index"
    assert report.files_quarantined == 1
    assert store.index.indexed_paths() == set()


def test_stale_copy_of_a_replaced_instance_is_removed(store: InstanceStore, tmp_path: Path) -> None:
    """An instance re-sent under another study moves; a crash before the old file's removal
    leaves the old copy behind, which the repair removes (the index keeps the new one)."""
    sop = generate_uid()
    (tmp_path / "a").mkdir()
    first = make_instance(tmp_path / "a", sop_uid=sop, instance_number=1)
    old_rel = _receive(store, first)
    old_copy = (store.root / old_rel).read_bytes()
    (tmp_path / "b").mkdir()
    second = make_instance(tmp_path / "b", sop_uid=sop, instance_number=2)
    new_rel = _receive(store, second)
    assert new_rel != old_rel
    assert not (store.root / old_rel).exists()
    # Put the replaced file back, as if the crash came before its removal.
    (store.root / old_rel).parent.mkdir(parents=True, exist_ok=True)
    (store.root / old_rel).write_bytes(old_copy)

    store.recover()
    assert not (store.root / old_rel).exists()
    assert store.index.indexed_paths() == {new_rel} == _disk_paths(store.root)
    assert dataset_bytes(store.root / new_rel) == dataset_bytes(second)
