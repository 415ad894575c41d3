"""Images with known pixels for print tests: an asymmetric test pattern (so flips, transposes
and level shifts show), as MONOCHROME2, as a CR-like MONOCHROME1 and as a multi-frame image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
MULTIFRAME_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"


def pattern(rows: int = 64, columns: int = 96, shift: int = 0) -> NDArray[np.uint8]:
    """Levels 0..255 rising to the right and (twice as fast) downwards, 0 top left and 255
    bottom right; `shift` rolls it sideways (to tell frames apart)."""
    y, x = np.mgrid[0:rows, 0:columns]
    levels = (x + 2 * y) * 255 // ((columns - 1) + 2 * (rows - 1))
    return np.roll(levels.astype(np.uint8), shift, axis=1)


def _base(sop_class: str, study_uid: str, modality: str, number: int) -> Dataset:
    meta = FileMetaDataset()
    uid = generate_uid()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "PRINT^PATTERN"
    ds.PatientID = "PRT-1"
    ds.Modality = modality
    ds.SeriesNumber = number
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PixelRepresentation = 0
    return ds


def write_pattern(
    directory: Path,
    study_uid: str,
    *,
    monochrome1: bool = False,
    frames: int = 1,
    number: int = 1,
) -> Path:
    """A 16-bit (12 stored) image of `pattern()` x 16 with a LINEAR_EXACT window that maps it
    back to exactly the pattern's levels: MONOCHROME2 (CT), MONOCHROME1 (CR), or a multi-frame
    MONOCHROME2 whose frame k is the pattern rolled by 10 k columns."""
    sop_class = CR_IMAGE if monochrome1 else (MULTIFRAME_WORD_SC if frames > 1 else CT_IMAGE)
    ds = _base(sop_class, study_uid, "CR" if monochrome1 else "OT" if frames > 1 else "CT", number)
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    levels = np.stack([pattern(shift=10 * k) for k in range(frames)]).astype(np.uint16) * 16
    ds.Rows, ds.Columns = levels.shape[1], levels.shape[2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    if frames > 1:
        ds.NumberOfFrames = frames
    # LINEAR_EXACT maps [center - width/2, center + width/2] onto the output range.
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 2040, 4080, "LINEAR_EXACT"
    ds.PixelData = levels.tobytes()
    path = directory / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path
