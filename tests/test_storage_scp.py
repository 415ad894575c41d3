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


def _stored_by_sop(daemon: KioskdProcess) -> dict[str, Path]:
    return {
        pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in daemon.stored_files()
    }


def test_echo(kioskd: KioskdProcess) -> None:
    result = echoscu(kioskd.port)
    assert result.returncode == 0, result.stderr


def test_sample_files_are_stored_byte_identical(kioskd: KioskdProcess) -> None:
    """Every pydicom sample (vendors, JPEG, J2K, JPEG-LS, RLE, deflate, multi-frame, SR, RT...)
    sent in its own transfer syntax lands with the identical data set and our File Meta."""
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
        assert dataset_bytes(target) == dataset_bytes(source), source.name
        meta = pydicom.dcmread(target, stop_before_pixels=True).file_meta
        assert meta.SourceApplicationEntityTitle == "STORESCU"
        assert meta.ImplementationClassUID == "2.25.30720662854114292865718063311640967011"
        assert meta.TransferSyntaxUID == transfer_syntax_of(source)
    with sqlite3.connect(kioskd.index_file) as conn:
        rows = dict(conn.execute("SELECT sop_instance_uid, transfer_syntax_uid FROM instances"))
    assert set(rows) == set(stored)
    for sop_uid, source in sent.items():
        assert rows[sop_uid] == transfer_syntax_of(source)


def test_big_endian_when_preferred(make_kioskd) -> None:  # type: ignore[no-untyped-def]
    """The transfer-syntax preference is configurable: put Big Endian first and it is kept."""
    daemon = make_kioskd(
        {
            "dicom": {
                "transfer_syntax_preference": [
                    "1.2.840.10008.1.2.2",
                    "1.2.840.10008.1.2.1",
                    "1.2.840.10008.1.2",
                ]
            }
        }
    )
    files = [p for p in pydicom_sample_files() if transfer_syntax_of(p) == "1.2.840.10008.1.2.2"]
    assert files
    result = storescu(daemon.port, files, extra=("-xb",))
    assert result.returncode == 0, result.stderr
    stored = _stored_by_sop(daemon)
    for f in files:
        uid = pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID
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
