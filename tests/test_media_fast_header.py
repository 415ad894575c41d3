"""The file set's fast paths give what pydicom gives: headers read from the mapped file equal
`dcmread(stop_before_pixels=True)` element for element, directory records written directly
equal pydicom's encoding byte for byte, and a DICOMDIR built with both fast paths is the same
file as one built entirely through pydicom (and passes dciodvfy)."""

from __future__ import annotations

import mmap
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

import appliance.media.dicomdir as dicomdir_module
import appliance.media.dicomdir_record as record_module
import appliance.media.fileset as fileset_module
from appliance.media.dicomdir import Node
from appliance.media.dicomdir_record import encode_record, encode_record_pydicom
from appliance.media.fileset import build_fileset
from appliance.media.profiles import get_profile
from appliance.media.source_header import read_header
from appliance.media.source_structure import meta_end
from tests.peers.data import TEST_FILES_DIR, make_instance, pydicom_sample_files
from tests.peers.discs import dciodvfy_errors

CHARSET_FILES = Path(pydicom.__file__).parent / "data" / "charset_files"
KOS = "1.2.840.10008.5.1.4.1.1.88.59"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


# -- instances of many kinds -----------------------------------------------------------------------


def _save(directory: Path, ds: Dataset, name: str, syntax: str = ExplicitVRLittleEndian) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(syntax)
    ds.file_meta = meta
    path = directory / name
    ds.save_as(path, enforce_file_format=True)
    return path


def _base(sop_class: str, study: str, series: str, **values: Any) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientID = "FAST01"
    ds.PatientName = "FAST^HEADER"
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20240301", "083000", "12"
    ds.AccessionNumber, ds.StudyDescription = "ACC12", "Fast path"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "OT", 3, 1
    ds.ContentDate, ds.ContentTime = "20240301", "083500"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def varied_instances(directory: Path) -> list[Path]:
    """CT and MR images, SR, KOS, PR, RT objects, multi-frame, other character sets, implicit
    VR and undefined-length sequences."""
    directory.mkdir(parents=True, exist_ok=True)
    study = generate_uid()
    paths = [
        make_instance(directory, study_uid=study, instance_number=n, modality="CT") for n in (1, 2)
    ]
    paths.append(make_instance(directory, study_uid=study, modality="MR", instance_number=1))
    for name in ("test-SR.dcm", "rtplan.dcm", "rtdose.dcm", "emri_small.dcm"):
        if (TEST_FILES_DIR / name).is_file():
            paths.append(Path(shutil.copy(TEST_FILES_DIR / name, directory / name)))

    kos = _base(KOS, study, generate_uid(), Modality="KO", CompletionFlag="COMPLETE")
    kos.ConceptNameCodeSequence = [_code("113000", "DCM", "Of Interest")]
    modifier = Dataset()
    modifier.RelationshipType = "HAS CONCEPT MOD"
    modifier.ValueType = "CODE"
    modifier.ConceptNameCodeSequence = [_code("113011", "DCM", "Document Title Modifier")]
    modifier.ConceptCodeSequence = [_code("113002", "DCM", "For Referring Provider")]
    kos.ContentSequence = [modifier]
    kos["ContentSequence"].is_undefined_length = True  # as many archives write them
    paths.append(_save(directory, kos, "kos.dcm"))

    pr = _base(GSPS, study, generate_uid(), Modality="PR", ContentLabel="PRESENT")
    pr.PresentationCreationDate, pr.PresentationCreationTime = "20240301", "090000"
    pr.ContentDescription, pr.ContentCreatorName = "Window", "READER^ONE"
    reference = Dataset()
    reference.SeriesInstanceUID = generate_uid()
    image = Dataset()
    image.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    image.ReferencedSOPInstanceUID = generate_uid()
    reference.ReferencedImageSequence = [image]
    pr.ReferencedSeriesSequence = [reference]
    paths.append(_save(directory, pr, "pr.dcm", ImplicitVRLittleEndian))

    frames = _base(ENHANCED_MR, study, generate_uid(), Modality="MR", NumberOfFrames=3)
    frames.Rows = frames.Columns = 4
    frames.SamplesPerPixel, frames.PhotometricInterpretation = 1, "MONOCHROME2"
    frames.BitsAllocated, frames.BitsStored, frames.HighBit = 16, 16, 15
    frames.PixelRepresentation = 0
    frames.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    frames.PixelData = bytes(3 * 4 * 4 * 2)
    paths.append(_save(directory, frames, "frames.dcm"))

    german = _base("1.2.840.10008.5.1.4.1.1.7", generate_uid(), generate_uid())
    german.SpecificCharacterSet = "ISO_IR 100"
    german.PatientName, german.PatientID = "Müller^Jürgen", "FAST02"
    german.StudyDescription = "Schädel nativ"
    german.Rows = german.Columns = 1
    paths.append(_save(directory, german, "german.dcm"))

    japanese = _base("1.2.840.10008.5.1.4.1.1.7", generate_uid(), generate_uid())
    japanese.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    japanese.PatientName, japanese.PatientID = "Yamada^Tarou=山田^太郎=やまだ^たろう", "FAST03"
    japanese.Rows = japanese.Columns = 1
    japanese.ReferencedStudySequence = [Dataset()]
    japanese.ReferencedStudySequence[0].ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    japanese.ReferencedStudySequence[0].ReferencedSOPInstanceUID = generate_uid()
    japanese["ReferencedStudySequence"].is_undefined_length = True
    paths.append(_save(directory, japanese, "japanese.dcm", ImplicitVRLittleEndian))
    return paths


@pytest.fixture(scope="module")
def varied(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return varied_instances(tmp_path_factory.mktemp("varied"))


# -- headers -------------------------------------------------------------------------------------


def _fast_header(path: Path) -> Dataset | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as view:
            return read_header(view, size, meta_end(view, size, path.name), str(path))
    finally:
        os.close(fd)


def _differences(ours: Dataset, theirs: Dataset, where: str = "") -> list[str]:
    """Every element of both, converted by pydicom, compared with its VR, position and length
    form; sequences item by item."""
    if set(ours.keys()) != set(theirs.keys()):
        return [f"{where}: tags {sorted(set(ours.keys()) ^ set(theirs.keys()))}"]
    found = []
    for tag in sorted(theirs.keys()):  # a Dataset iterates over elements, not tags
        a, b = ours[tag], theirs[tag]
        if (a.VR, a.file_tell, a.is_undefined_length) != (b.VR, b.file_tell, b.is_undefined_length):
            found.append(f"{where}{tag}: VR, position or length form")
        elif a.VR == "SQ":
            if len(a.value) != len(b.value):
                found.append(f"{where}{tag}: {len(a.value)} items, not {len(b.value)}")
            for n, (x, y) in enumerate(zip(a.value, b.value, strict=False)):
                found += _differences(x, y, f"{where}{tag}[{n}]")
        elif a.value != b.value:
            found.append(f"{where}{tag}: {a.value!r} != {b.value!r}")
    return found


def _header_sources(varied: list[Path]) -> list[Path]:
    charset = sorted(CHARSET_FILES.glob("*.dcm")) if CHARSET_FILES.is_dir() else []
    return [*varied, *pydicom_sample_files(), *charset]


def test_headers_equal_pydicom(varied: list[Path]) -> None:
    fast = 0
    for path in _header_sources(varied):
        with path.open("rb") as fh:
            if fh.read(132)[128:] != b"DICM":
                continue
        theirs = pydicom.dcmread(path, stop_before_pixels=True)
        ours = _fast_header(path)
        if ours is None:
            continue
        fast += 1
        assert _differences(ours, theirs) == [], path.name
        assert _differences(ours.file_meta, theirs.file_meta) == [], path.name
        assert ours.preamble == theirs.preamble
        assert ours.original_encoding == theirs.original_encoding
        assert ours.original_character_set == theirs.original_character_set
        assert ours._character_set == theirs._character_set
    assert fast >= 40  # the fast path is the common case, not a rarely taken branch


def test_every_kind_takes_the_fast_path(varied: list[Path]) -> None:
    """Explicit and implicit VR LE, defined and undefined-length sequences, other character
    sets: none of them needs pydicom's reader."""
    assert [p.name for p in varied if _fast_header(p) is None] == []


@pytest.mark.parametrize(
    "syntax", [ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian], ids=["big", "deflated"]
)
def test_other_encodings_are_left_to_pydicom(syntax: str, tmp_path: Path) -> None:
    ds = _base("1.2.840.10008.5.1.4.1.1.7", generate_uid(), generate_uid(), Rows=1, Columns=1)
    path = _save(tmp_path, ds, "other.dcm", syntax)
    assert _fast_header(path) is None


def test_truncated_header_is_left_to_pydicom(varied: list[Path], tmp_path: Path) -> None:
    data = varied[0].read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: meta_end_of(varied[0]) + 40])
    assert _fast_header(cut) is None


def meta_end_of(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as view:
            return meta_end(view, size, path.name)
    finally:
        os.close(fd)


# -- directory records and the DICOMDIR ----------------------------------------------------------


def _nodes(roots: list[Node]) -> list[Node]:
    found: list[Node] = []
    for node in roots:
        found.append(node)
        found += _nodes(node.children)
    return found


def _build(sources: list[Path], out: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    monkeypatch.setattr(fileset_module, "generate_uid", lambda prefix=None: "1.2.3.4")
    result = build_fileset(sources, out, get_profile("STD-GEN-DVD"), fileset_id="FAST")
    assert result.instances == len(sources)
    return (out / "DICOMDIR").read_bytes()


def _counting(function: Callable[..., Any], calls: list[object]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        calls.append(result)
        return result

    return counted


def test_records_equal_pydicom_encoding(
    varied: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_pydicom: list[object] = []
    monkeypatch.setattr(
        record_module, "encode_record_pydicom", _counting(encode_record_pydicom, by_pydicom)
    )
    result = build_fileset(varied, tmp_path / "out", get_profile("STD-GEN-DVD"))
    assert result.directory is not None
    nodes = _nodes(result.directory.roots)
    by_pydicom.clear()
    for node in nodes:
        assert encode_record(node.record_type, node.keys) == record_module.encode_record_pydicom(
            node.record_type, node.keys
        ), node.record_type
    # Half of the calls are the comparison's own; records with sequences, person names or
    # ISO 2022 text took pydicom's path, the plain ones (most leaves) did not.
    taken = len(by_pydicom) - len(nodes)
    assert 0 < taken < len(nodes) // 2 + len(nodes) // 4


def test_dicomdir_equals_pydicom_path(
    varied: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_headers: list[object] = []
    monkeypatch.setattr(fileset_module, "read_header", _counting(read_header, fast_headers))
    fast = _build(varied, tmp_path / "fast", monkeypatch)
    assert sum(1 for h in fast_headers if h is not None) >= len(varied)

    # The same file set with both fast paths off: pydicom reads every header and encodes
    # every record, as before they existed.
    monkeypatch.setattr(fileset_module, "read_header", lambda *args: None)
    monkeypatch.setattr(dicomdir_module, "encode_record", record_module.encode_record_pydicom)
    slow = _build(varied, tmp_path / "slow", monkeypatch)
    assert fast == slow
    assert dciodvfy_errors(tmp_path / "fast" / "DICOMDIR") == []
    loaded = FileSet(pydicom.dcmread(tmp_path / "fast" / "DICOMDIR"))
    assert len(loaded) == len(varied)
