"""Test data: the real files shipped in the pydicom wheel, and generated instances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

TEST_FILES_DIR = Path(pydicom.__file__).parent / "data" / "test_files"

# Files pydicom ships that are not sendable instances: no File Meta, deliberately broken, or
# lacking the UIDs a storage SCP needs.
_UNSENDABLE = {
    "ExplVR_BigEndNoMeta.dcm",
    "ExplVR_LitEndNoMeta.dcm",
    "no_meta.dcm",
    "no_meta_group_length.dcm",
    "meta_missing_tsyntax.dcm",
    "MR_truncated.dcm",
    "rtplan_truncated.dcm",
    "badVR.dcm",
    "UN_sequence.dcm",
    "JPEG2000-embedded-sequence-delimiter.dcm",
}


def pydicom_sample_files() -> list[Path]:
    """Local pydicom sample files with a File Meta and the UIDs storage needs (no downloads)."""
    result = []
    for path in sorted(TEST_FILES_DIR.glob("*.dcm")):
        if path.name in _UNSENDABLE:
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        if (
            not all(
                k in ds
                for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
            )
            or "TransferSyntaxUID" not in ds.file_meta
        ):
            continue
        result.append(path)
    return result


def make_instance(
    directory: Path,
    *,
    patient_name: str = "TEST^PATIENT",
    patient_id: str = "PID0001",
    birth_date: str = "19700101",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    rows: int = 64,
    columns: int = 64,
    modality: str = "CT",
    instance_number: int = 1,
) -> Path:
    """Write one synthetic CT Image Storage instance (16-bit, Explicit VR LE); return its path."""
    meta = FileMetaDataset()
    sop_uid = sop_uid or generate_uid()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date
    ds.PatientSex = "O"
    ds.StudyDate = "20240119"
    ds.StudyTime = "072730"
    ds.AccessionNumber = "ACC0001"
    ds.StudyDescription = "SYNTHETIC"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance_number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    rng = np.random.default_rng(instance_number)
    ds.PixelData = rng.integers(0, 4096, size=(rows, columns), dtype=np.uint16).tobytes()
    path = directory / f"{sop_uid}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def dataset_offset(path: Path) -> int:
    """Byte offset where the data set starts in a PS3.10 file (after preamble and File Meta)."""
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    if head[128:132] != b"DICM":
        raise ValueError(f"{path.name} has no DICM preamble")
    pos = 132
    while pos + 8 <= len(head):
        group = int.from_bytes(head[pos : pos + 2], "little")
        if group != 0x0002:
            return pos
        vr = head[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
            length = int.from_bytes(head[pos + 8 : pos + 12], "little")
            pos += 12 + length
        else:
            length = int.from_bytes(head[pos + 6 : pos + 8], "little")
            pos += 8 + length
    raise ValueError(f"{path.name}: File Meta does not end in the first 64 kB")


def dataset_bytes(path: Path) -> bytes:
    """The encoded data set of a PS3.10 file, exactly as stored."""
    return path.read_bytes()[dataset_offset(path) :]


# storescu option that proposes a file's own transfer syntax first (see `storescu --help`).
STORESCU_PROPOSAL = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


def transfer_syntax_of(path: Path) -> str:
    """The Transfer Syntax UID in a file's meta."""
    return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


DCMTK_UNREADABLE = {"SC_rgb_jpeg.dcm", "rtdose_rle.dcm", "rtdose_rle_1frame.dcm"}
"""Samples DCMTK 3.6.7's storescu refuses to read (malformed meta or trailing garbage)."""
