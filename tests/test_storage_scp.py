"""Storage SCP against DCMTK storescu: every instance stored as received, byte for byte."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path

import pydicom
import pytest

from tests.peers.data import (
    DCMTK_UNREADABLE,
    STORESCU_PROPOSAL,
    dataset_bytes,
    pydicom_sample_files,
    transfer_syntax_of,
)
from tests.peers.dcmtk import echoscu, storescu
from tests.peers.kioskd import KioskdProcess
from tests.peers.pynetdicom_scu import associate_for_files, raw_sender_ae


def _stored_by_sop(daemon: KioskdProcess) -> dict[str, Path]:
    return {
        pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in daemon.stored_files()
    }


def test_echo(kioskd: KioskdProcess) -> None:
    result = echoscu(kioskd.port)
    assert result.returncode == 0, result.stderr


def _element_values(path: Path) -> dict[int, object]:
    """Tag -> value of every top-level element. Left out: what storescu itself changes when it
    sends (it recomputes group lengths and drops Data Set Trailing Padding); the VR of
    encapsulated Pixel Data (OW corrected to OB) is not compared, only values."""
    ds = pydicom.dcmread(path)
    return {
        int(elem.tag): elem.value for elem in ds if elem.tag.element != 0 and elem.tag != 0xFFFCFFFC
    }


def test_storescu_samples_are_stored_unchanged(kioskd: KioskdProcess) -> None:
    """Every pydicom sample DCMTK can read (vendors, JPEG, J2K, JPEG-LS, RLE, deflate,
    multi-frame, SR, RT, waveform...), sent by storescu in its own transfer syntax, lands with
    every element unchanged, our File Meta and an index row."""
    by_syntax: dict[str, list[Path]] = defaultdict(list)
    for path in pydicom_sample_files():
        ts = transfer_syntax_of(path)
        if path.name in DCMTK_UNREADABLE:
            continue
        if ts in STORESCU_PROPOSAL and ts != "1.2.840.10008.1.2.2":
            by_syntax[ts].append(path)
    assert len(by_syntax) >= 8, "expected samples in many transfer syntaxes"
    sent: dict[str, Path] = {}
    for ts, files in by_syntax.items():
        result = storescu(kioskd.port, files, extra=(STORESCU_PROPOSAL[ts],))
        assert result.returncode == 0, f"{ts}: {result.stderr}"
        for f in files:
            sent[str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)] = f
    stored = _stored_by_sop(kioskd)
    assert set(sent) <= set(stored)
    for sop_uid, source in sent.items():
        target = stored[sop_uid]
        assert _element_values(target) == _element_values(source), source.name
        meta = pydicom.dcmread(target, stop_before_pixels=True).file_meta
        assert meta.SourceApplicationEntityTitle == "STORESCU"
        assert meta.ImplementationClassUID == "2.25.30720662854114292865718063311640967011"
        assert meta.TransferSyntaxUID == transfer_syntax_of(source)
    with sqlite3.connect(kioskd.index_file) as conn:
        rows = dict(conn.execute("SELECT sop_instance_uid, transfer_syntax_uid FROM instances"))
    assert set(rows) == set(stored)
    for sop_uid, source in sent.items():
        assert rows[sop_uid] == transfer_syntax_of(source)


def test_raw_sender_samples_are_byte_identical(kioskd: KioskdProcess) -> None:
    """Sent byte for byte (pynetdicom streams the file's data set), stored byte for byte."""
    files = pydicom_sample_files()
    ae = raw_sender_ae()
    assoc = associate_for_files(ae, kioskd.port, files)
    assert assoc.is_established
    consistent = []
    try:
        for path in files:
            status = assoc.send_c_store(path)
            # pynetdicom takes the request's UIDs from the File Meta; a few samples disagree
            # with their own data set, and such a request must be refused with 0xA900.
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if ds.file_meta.MediaStorageSOPInstanceUID != ds.SOPInstanceUID:
                assert status.Status == 0xA900, path.name
            else:
                assert status.Status == 0x0000, path.name
                consistent.append(path)
    finally:
        assoc.release()
    assert len(consistent) >= 50
    # Several samples share a SOP Instance UID (one image in many transfer syntaxes): the last
    # one sent replaces the earlier copies, file and index row alike.
    last_sent = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in consistent}
    stored = _stored_by_sop(kioskd)
    assert set(stored) == set(last_sent)
    for uid, path in last_sent.items():
        assert dataset_bytes(stored[uid]) == dataset_bytes(path), path.name
        assert transfer_syntax_of(stored[uid]) == transfer_syntax_of(path)
    with sqlite3.connect(kioskd.index_file) as conn:
        indexed = dict(conn.execute("SELECT sop_instance_uid, transfer_syntax_uid FROM instances"))
    assert indexed == {uid: transfer_syntax_of(p) for uid, p in last_sent.items()}


def test_transfer_syntax_preference_is_configurable(make_kioskd) -> None:  # type: ignore[no-untyped-def]
    """Offered Explicit LE and Big Endian in one context, a kioskd configured to prefer Big
    Endian accepts Big Endian, and the big-endian file is stored byte for byte."""
    big_endian = "1.2.840.10008.1.2.2"
    daemon = make_kioskd(
        {
            "dicom": {
                "transfer_syntax_preference": [
                    big_endian,
                    "1.2.840.10008.1.2.1",
                    "1.2.840.10008.1.2",
                ]
            }
        }
    )
    files = [
        p
        for p in pydicom_sample_files()
        if transfer_syntax_of(p) == big_endian and not p.name.startswith("rtdose")
    ]
    assert files
    ae = raw_sender_ae()
    for sop_class in {pydicom.dcmread(f, stop_before_pixels=True).SOPClassUID for f in files}:
        ae.add_requested_context(sop_class, ["1.2.840.10008.1.2.1", big_endian])
    assoc = ae.associate("127.0.0.1", daemon.port, ae_title="KIOSK")
    assert assoc.is_established
    try:
        assert {cx.transfer_syntax[0] for cx in assoc.accepted_contexts} == {big_endian}
        for f in files:
            assert assoc.send_c_store(f).Status == 0x0000
    finally:
        assoc.release()
    stored = _stored_by_sop(daemon)
    last_sent = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in files}
    for uid, f in last_sent.items():
        assert dataset_bytes(stored[uid]) == dataset_bytes(f)


@pytest.mark.parametrize("proposal", ["-xi", "-xe"])
def test_uncompressed_prefers_explicit_little_endian(kioskd: KioskdProcess, proposal: str) -> None:
    """With implicit and explicit LE both offered, we accept Explicit VR LE (default order)."""
    source = next(p for p in pydicom_sample_files() if p.name == "CT_small.dcm")
    result = storescu(kioskd.port, [source], extra=(proposal,))
    assert result.returncode == 0, result.stderr
    (stored,) = kioskd.stored_files()
    expected = "1.2.840.10008.1.2" if proposal == "-xi" else "1.2.840.10008.1.2.1"
    assert transfer_syntax_of(stored) == expected
    assert pydicom.dcmread(stored).PixelData == pydicom.dcmread(source).PixelData
