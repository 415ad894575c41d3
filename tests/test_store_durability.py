"""The single-fsync commit: a complete temp file carries a durable mark, so a rename lost in a
power cut is completed at start; an unmarked (partial) temp file is removed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from appliance.store import InstanceStore, StoreIndex
from appliance.store.incoming import COMPLETE_XATTR, is_marked_complete
from tests.peers.data import dataset_bytes, make_instance


@pytest.fixture
def store(tmp_path: Path) -> Iterator[InstanceStore]:
    index = StoreIndex(tmp_path / "var" / "kiosk.sqlite")
    yield InstanceStore(tmp_path / "var" / "store", index, 0)
    index.close()


def _incoming(store: InstanceStore, source: Path) -> tuple[str, object]:
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    incoming = store.open_incoming(
        str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.file_meta.TransferSyntaxUID), "SCU"
    )
    incoming.write(dataset_bytes(source))
    return str(ds.SOPInstanceUID), incoming


def _xattrs_supported(directory: Path) -> bool:
    probe = directory / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, COMPLETE_XATTR, b"1")
        return True
    except OSError:
        return False
    finally:
        probe.unlink()


def test_commit_marks_the_file_and_skips_nothing_it_needs(
    store: InstanceStore, tmp_path: Path
) -> None:
    if not _xattrs_supported(store.incoming_dir):
        pytest.skip("this filesystem has no user extended attributes")
    uid, incoming = _incoming(store, make_instance(tmp_path))
    result = store.commit(
        incoming,  # type: ignore[arg-type]
        expected_sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        expected_sop_instance_uid=uid,
        calling_ae="SCU",
        called_ae="KIOSK",
    )
    final = store.root / result.relpath
    assert incoming.marked  # type: ignore[attr-defined]
    assert is_marked_complete(final)
    assert store.index.find_instance(uid) is not None


def test_complete_temp_file_left_by_a_lost_rename_is_adopted(
    store: InstanceStore, tmp_path: Path
) -> None:
    if not _xattrs_supported(store.incoming_dir):
        pytest.skip("this filesystem has no user extended attributes")
    source = make_instance(tmp_path)
    uid, incoming = _incoming(store, source)
    incoming.finish()  # type: ignore[attr-defined]  # durable and marked; the rename "was lost"
    partial_uid, partial = _incoming(store, make_instance(tmp_path, instance_number=2))
    partial.close()  # type: ignore[attr-defined]  # complete bytes, but never finished: no mark
    report = store.recover()
    assert report.files_adopted == 1
    assert report.temp_files_removed == 1
    assert list(store.incoming_dir.iterdir()) == []
    stored = store.index.find_instance(uid)
    assert stored is not None
    assert dataset_bytes(store.root / stored.path) == dataset_bytes(source)
    assert store.index.find_instance(partial_uid) is None
