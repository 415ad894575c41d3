"""PS3.11 file sets checked by tools we did not write: dciodvfy, dcmdump and pydicom's FileSet.

Sources: the pydicom sample files (every transfer syntax pydicom ships: JPEG baseline and
extended, JPEG lossless, JPEG-LS, JPEG 2000, RLE, big endian, implicit, deflated) and generated
CT/MR studies across several patients, studies and series.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from appliance.errors import KioskError
from appliance.media.dicomdir import RECORD_TYPES
from appliance.media.errors import (
    FileSetError,
    MediaError,
    ProfileViolationError,
    SourceFileError,
    TranscodeError,
    UnknownProfileError,
)
from appliance.media.fileset import FileSetResult, build_fileset
from appliance.media.profiles import (
    EXPLICIT_VR_LE,
    JPEG_2000_LOSSLESS,
    JPEG_LOSSLESS_SV1,
    PROFILES,
    MediaProfile,
    get_profile,
)
from tests.peers.data import dataset_bytes, make_instance, pydicom_sample_files

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on odd sample values

DCIODVFY = "/usr/bin/dciodvfy"
DCMDUMP = "/usr/bin/dcmdump"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
FILE_ID_COMPONENT = re.compile(r"^[A-Z0-9_]{1,8}$")

# Samples no FSC can carry as they are: 12-bit JPEG Extended, which no installed plugin decodes,
# and a file with bytes after its last element.
UNUSABLE_SAMPLES = {"JPEG-lossy.dcm", "SC_rgb_jpeg.dcm"}

# Compressed syntaxes among the samples: RLE, JPEG-LS lossless, JPEG 2000 (both), JPEG baseline,
# extended and lossless SV1.
SAMPLE_SYNTAXES = (
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.70",
)

# Record types of the current standard that dicom3tools 2022 does not know yet.
DCIODVFY_UNKNOWN_RECORDS = {"ASSESSMENT", "PLAN", "SURFACE SCAN", "TRACT"}


@pytest.fixture(autouse=True, scope="module")
def _tools() -> None:
    for tool in (DCIODVFY, DCMDUMP):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing (apt-get install dicom3tools dcmtk)")


# -- sources ---------------------------------------------------------------------------------------


def _uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """pydicom's sample files. Several share a SOP Instance UID (MR_small in every syntax):
    those get a copy with a fresh UID, written by pydicom in the file's own syntax."""
    directory = tmp_path_factory.mktemp("samples")
    seen: set[str] = set()
    chosen = []
    for path in pydicom_sample_files():
        if path.name in UNUSABLE_SAMPLES:
            continue
        uid = _uid(path)
        if uid in seen:
            ds = pydicom.dcmread(path)
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            copied = directory / path.name
            ds.save_as(copied)
            seen.add(str(ds.SOPInstanceUID))
            chosen.append(copied)
        else:
            seen.add(uid)
            chosen.append(path)
    return chosen


def _as_mr(path: Path) -> None:
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID(MR_IMAGE)
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def study_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """3 patients x 2 studies x 2 series (CT, MR) x 3 images, shuffled."""
    directory = tmp_path_factory.mktemp("studies")
    files = []
    for p in range(3):
        for s in range(2):
            study = generate_uid()
            for r, modality in enumerate(("CT", "MR")):
                series = generate_uid()
                for i in (3, 1, 2):
                    path = make_instance(
                        directory,
                        patient_name=f"PATIENT^{p}",
                        patient_id=f"PID{p:04d}",
                        study_uid=study,
                        series_uid=series,
                        modality=modality,
                        instance_number=i,
                        rows=16,
                        columns=16,
                    )
                    ds = pydicom.dcmread(path)
                    ds.SeriesNumber = r + 1
                    ds.StudyDate = f"2024010{s + 1}"
                    ds.save_as(path, enforce_file_format=True)
                    if modality == "MR":
                        _as_mr(path)
                    files.append(path)
    return files[::-1]


# -- checks against the peers ----------------------------------------------------------------------


def dciodvfy_errors(dicomdir: Path) -> list[str]:
    result = subprocess.run(
        [DCIODVFY, str(dicomdir)], capture_output=True, text=True, timeout=60, check=False
    )
    return [
        line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")
    ]


_CHILD_TYPES = {"PATIENT": {"STUDY"}, "STUDY": {"SERIES"}}


def check_offsets(dicomdir: Path) -> None:
    """Walk the records by their offsets, as a reader does: every record is reached exactly
    once, from the root through PATIENT, STUDY, SERIES to the leaves, in file order."""
    ds = pydicom.dcmread(dicomdir)
    by_offset = {r.seq_item_tell: r for r in ds.DirectoryRecordSequence}
    reached: list[int] = []

    def walk(offset: int, parent: str) -> None:
        while offset:
            record = by_offset[offset]  # KeyError: an offset that is no record's position
            reached.append(offset)
            kind = record.DirectoryRecordType
            if parent in _CHILD_TYPES:
                assert kind in _CHILD_TYPES[parent], (parent, kind)
            elif parent == "SERIES":
                assert kind not in ("PATIENT", "STUDY", "SERIES")
            walk(record.OffsetOfReferencedLowerLevelDirectoryEntity, kind)
            offset = record.OffsetOfTheNextDirectoryRecord

    walk(ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity, "ROOT")
    assert reached == sorted(by_offset)  # all of them, once, depth-first in file order
    roots = [o for o in reached if by_offset[o].DirectoryRecordType in ("PATIENT",)]
    assert ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity == max(roots, default=0)


def check_fileset(out: Path, result: FileSetResult, profile: MediaProfile) -> dict[str, Path]:
    """Everything a reader relies on; returns SOP Instance UID -> written file."""
    dicomdir = out / "DICOMDIR"
    assert dciodvfy_errors(dicomdir) == []
    check_offsets(dicomdir)

    written = {e.path: e for e in result.manifest.entries}
    instances = {p: e for p, e in written.items() if e.sop_instance_uid}
    assert "DICOMDIR" in written
    assert len(instances) == result.instances

    # Every File ID is short and plain, every file exists with the manifest's size, and every
    # DICOM file under the root is in the manifest.
    for path, entry in written.items():
        parts = path.split("/")
        assert len(parts) <= 8
        assert all(FILE_ID_COMPONENT.match(c) for c in parts), path
        assert (out / path).stat().st_size == entry.size
    on_disk = {str(p.relative_to(out)) for p in (out / "DICOM").rglob("*") if p.is_file()}
    assert on_disk == set(instances)

    # pydicom reads the directory back and finds exactly the written instances.
    fs = FileSet(dicomdir)
    listed = {str(i.SOPInstanceUID): Path(i.path) for i in fs}
    assert set(listed) == {e.sop_instance_uid for e in instances.values()}
    for instance in fs:
        assert "/".join(instance.ReferencedFileID) in instances

    # dcmdump (DCMTK) parses every file, and each one's syntax fits the profile.
    dump = subprocess.run(
        [DCMDUMP, "-q", "+P", "0002,0010", str(dicomdir), *(str(p) for p in listed.values())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert dump.returncode == 0, dump.stderr[-2000:]
    for uid, file in listed.items():
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        assert str(ds.SOPInstanceUID) == uid
        assert profile.allows(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
    return listed


def _source_by_uid(sources: list[Path]) -> dict[str, Path]:
    return {_uid(p): p for p in sources}


def _build(
    sources: list[Path], out: Path, profile: MediaProfile, **kwargs: object
) -> FileSetResult:
    return build_fileset(sources, out, profile, fileset_id="KIOSK TEST", **kwargs)  # type: ignore[arg-type]


# -- profiles --------------------------------------------------------------------------------------


def test_profiles_by_name() -> None:
    assert set(PROFILES) >= {
        "STD-GEN-CD",
        "STD-GEN-DVD",
        "STD-GEN-BD",
        "STD-CTMR-CD",
        "STD-CTMR-DVD",
        "STD-GEN-DVD-JPEG",
        "STD-GEN-DVD-J2K",
    }
    assert get_profile("std-gen-cd").name == "STD-GEN-CD"
    with pytest.raises(UnknownProfileError, match="STD-NOPE") as info:
        get_profile("STD-NOPE")
    assert isinstance(info.value, MediaError) and isinstance(info.value, KioskError)


def test_profile_rules() -> None:
    ct = "1.2.840.10008.5.1.4.1.1.2"
    gsps = "1.2.840.10008.5.1.4.1.1.11.1"
    us = "1.2.840.10008.5.1.4.1.1.6.1"
    gen, ctmr = get_profile("STD-GEN-CD"), get_profile("STD-CTMR-CD")
    assert gen.allows(us, EXPLICIT_VR_LE) and not gen.allows(ct, JPEG_LOSSLESS_SV1)
    assert not gen.allows_sop_class("1.3.12.2.1107.5.9.1")  # private
    assert ctmr.allows(ct, JPEG_LOSSLESS_SV1) and not ctmr.allows(gsps, JPEG_LOSSLESS_SV1)
    assert not ctmr.allows_sop_class(us)
    assert get_profile("STD-GEN-DVD-JPEG").allows(us, "1.2.840.10008.1.2.4.50")
    assert get_profile("STD-GEN-DVD-J2K").transcode_target == JPEG_2000_LOSSLESS
    for name in ("STD-GEN-CD", "STD-CTMR-DVD", "STD-GEN-DVD-JPEG"):
        # No JPEG Lossless encoder exists in pydicom: these fall back to Explicit VR LE.
        assert get_profile(name).transcode_target == EXPLICIT_VR_LE


# -- generated studies -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_generated_studies(name: str, study_files: list[Path], tmp_path: Path) -> None:
    profile = get_profile(name)
    calls: list[tuple[int, int]] = []
    result = _build(study_files, tmp_path, profile, progress=lambda d, t: calls.append((d, t)))
    listed = check_fileset(tmp_path, result, profile)
    assert (result.patients, result.studies, result.series, result.instances) == (3, 6, 12, 36)
    assert result.copied == 36 and result.transcoded == () and result.lossy == ()
    assert calls == [(n, 36) for n in range(1, 37)]
    assert result.total_bytes == sum(e.size for e in result.manifest.entries)

    # Nothing needed re-encoding: the data set bytes are the source's, byte for byte.
    sources = _source_by_uid(study_files)
    for uid, path in listed.items():
        assert dataset_bytes(path) == dataset_bytes(sources[uid])
        meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        assert meta.ImplementationClassUID == "2.25.30720662854114292865718063311640967011"


def test_copies_never_decode(
    study_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fitting sources are streamed: the full data set (pixels) is never read into memory."""

    def refuse(self: object) -> Dataset:
        raise AssertionError("a fitting source was decoded")

    monkeypatch.setattr("appliance.media.fileset._Source.read_full", refuse)
    result = _build(study_files, tmp_path, get_profile("STD-GEN-BD"))
    assert result.copied == len(study_files)


def test_file_ids_follow_patient_study_series_instance(
    study_files: list[Path], tmp_path: Path
) -> None:
    result = _build(study_files, tmp_path, get_profile("STD-GEN-CD"))
    rows = []
    for entry in result.manifest.entries[1:]:
        ds = pydicom.dcmread(tmp_path / entry.path, stop_before_pixels=True)
        rows.append(
            (
                entry.path,
                str(ds.PatientID),
                str(ds.StudyDate),
                int(ds.SeriesNumber),
                int(ds.InstanceNumber),
            )
        )
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert [r[1:] for r in rows] == sorted(r[1:] for r in rows)
    assert rows[0][0] == "DICOM/PAT00001/STU00001/SER00001/IMG00001"
    assert rows[-1][0] == "DICOM/PAT00003/STU00002/SER00002/IMG00003"

    # The same sources in another order give the same disc layout.
    again = _build(list(reversed(study_files)), tmp_path / "again", get_profile("STD-GEN-CD"))

    def layout(r: FileSetResult) -> list[tuple[str, str | None]]:
        return [(e.path, e.sop_instance_uid) for e in r.manifest.entries[1:]]

    assert layout(again) == layout(result)


def test_transform_reaches_files_and_directory(study_files: list[Path], tmp_path: Path) -> None:
    def rename(ds: Dataset) -> Dataset:
        ds.PatientName = "RENAMED^" + str(ds.PatientID)
        return ds

    profile = get_profile("STD-GEN-DVD")
    result = _build(study_files[:12], tmp_path, profile, transform=rename)
    listed = check_fileset(tmp_path, result, profile)
    for path in listed.values():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert str(ds.PatientName) == f"RENAMED^{ds.PatientID}"
    names = {
        str(r.PatientName)
        for r in pydicom.dcmread(tmp_path / "DICOMDIR").DirectoryRecordSequence
        if r.DirectoryRecordType == "PATIENT"
    }
    assert names and all(n.startswith("RENAMED^") for n in names)
    assert result.copied == 0


# -- pydicom sample files: every transfer syntax ------------------------------------------------


def _pixels(path: Path) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array


@pytest.mark.parametrize("name", ["STD-GEN-CD", "STD-GEN-DVD-JPEG", "STD-GEN-DVD-J2K"])
def test_sample_files(name: str, samples: list[Path], tmp_path: Path) -> None:
    profile = get_profile(name)
    result = _build(samples, tmp_path, profile)
    listed = check_fileset(tmp_path, result, profile)
    assert result.instances == len(samples) and result.skipped == ()
    sources = _source_by_uid(samples)
    transcoded = {t.sop_instance_uid: t for t in result.transcoded}
    assert transcoded, "the samples include compressed syntaxes"
    seen_syntaxes = {t.source_syntax for t in transcoded.values()}
    for syntax in SAMPLE_SYNTAXES:
        # Every compressed syntax the samples hold is re-encoded unless the profile takes it.
        assert (syntax in seen_syntaxes) != (syntax in profile.transfer_syntaxes), syntax

    for uid, path in listed.items():
        source = sources[uid]
        if uid not in transcoded:
            assert dataset_bytes(path) == dataset_bytes(source)
            continue
        written = pydicom.dcmread(path)
        assert str(written.file_meta.TransferSyntaxUID) == transcoded[uid].target_syntax
        if "PixelData" in written:
            # Lossless paths reproduce the decoded source exactly; a lossy source is decoded
            # once, so its pixels are the same as a reader of the source would see.
            assert np.array_equal(written.pixel_array, _pixels(source)), source.name
        if uid in result.lossy:
            assert written.LossyImageCompression == "01"

    if name == "STD-GEN-DVD-J2K":
        targets = {t.target_syntax for t in transcoded.values()}
        assert JPEG_2000_LOSSLESS in targets


def test_sample_files_on_ctmr_skip_what_does_not_fit(samples: list[Path], tmp_path: Path) -> None:
    profile = get_profile("STD-CTMR-CD")
    result = _build(samples, tmp_path, profile, on_unsupported="skip")
    check_fileset(tmp_path, result, profile)
    assert result.instances >= 3 and result.skipped
    reasons = " ".join(s.reason for s in result.skipped)
    assert "is not allowed on STD-CTMR-CD" in reasons
    with pytest.raises(ProfileViolationError, match="STD-CTMR-CD"):
        _build(samples, tmp_path / "strict", profile)
    assert not (tmp_path / "strict" / "DICOMDIR").exists()
    assert not (tmp_path / "strict" / "DICOM").exists()


def test_text_keys_keep_their_character_set(study_files: list[Path], tmp_path: Path) -> None:
    ds = pydicom.dcmread(study_files[0])
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jürgen"
    ds.StudyDescription = "Thorax ÜBERSICHT"
    ds.file_meta.SourceApplicationEntityTitle = "CT_SCANNER_7"
    source = tmp_path / "utf8.dcm"
    ds.save_as(source, enforce_file_format=True)
    result = _build([source], tmp_path / "out", get_profile("STD-GEN-CD"))
    check_fileset(tmp_path / "out", result, get_profile("STD-GEN-CD"))
    records = pydicom.dcmread(tmp_path / "out" / "DICOMDIR").DirectoryRecordSequence
    patient = next(r for r in records if r.DirectoryRecordType == "PATIENT")
    study = next(r for r in records if r.DirectoryRecordType == "STUDY")
    assert patient.SpecificCharacterSet == "ISO_IR 192"
    assert str(patient.PatientName) == "Müller^Jürgen"
    assert study.StudyDescription == "Thorax ÜBERSICHT"
    written = pydicom.dcmread(tmp_path / "out" / result.manifest.entries[1].path)
    assert written.file_meta.SourceApplicationEntityTitle == "CT_SCANNER_7"
    assert str(written.PatientName) == "Müller^Jürgen"


# -- directory records: placeholders and every record type ---------------------------------------


def _write(directory: Path, ds: Dataset, name: str) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    path = directory / name
    ds.save_as(path, enforce_file_format=True)
    return path


def _bare(sop_class: str, study: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = generate_uid()
    return ds


def test_missing_type1_values_get_placeholders(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    study = generate_uid()
    paths = []
    for n in range(2):
        ds = _bare("1.2.840.10008.5.1.4.1.1.2", study)
        ds.PatientID = ""
        ds.PatientName = f"NOID^{n}"
        ds.StudyDate = "2024-01-19"  # malformed: not a DA
        ds.SeriesDate = "20240118"
        ds.StudyID = ""
        ds.Modality = ""
        ds.SeriesNumber = None
        ds.InstanceNumber = None
        ds.Rows = ds.Columns = 1
        paths.append(_write(src, ds, f"{n}.dcm"))
    result = _build(paths, tmp_path / "out", get_profile("STD-GEN-CD"))
    check_fileset(tmp_path / "out", result, get_profile("STD-GEN-CD"))
    records = pydicom.dcmread(tmp_path / "out" / "DICOMDIR").DirectoryRecordSequence
    patients = [r for r in records if r.DirectoryRecordType == "PATIENT"]
    assert len(patients) == 1  # one study: filed under the patient of its first instance
    assert patients[0].PatientID.startswith("KIOSK")
    study_record = next(r for r in records if r.DirectoryRecordType == "STUDY")
    assert study_record.StudyDate == "20240118"  # from Series Date
    assert study_record.StudyID == "1"
    series = [r for r in records if r.DirectoryRecordType == "SERIES"]
    assert [s.Modality for s in series] == ["OT", "OT"]
    assert sorted(int(s.SeriesNumber) for s in series) == [1, 2]


def _record_type_sources(directory: Path) -> dict[str, Path]:
    study = generate_uid()
    made: dict[str, Path] = {}
    for sop_class, record_type in sorted(RECORD_TYPES.items()):
        if record_type in made:
            continue
        ds = _bare(sop_class, study)
        ds.PatientID = "RT0001"
        ds.PatientName = "RECORD^TYPES"
        ds.StudyDate, ds.StudyTime, ds.StudyID = "20240119", "101010", "7"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "OT", 1, 1
        ds.ContentDate, ds.ContentTime = "20240119", "101010"
        image_ref = Dataset()
        image_ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        image_ref.ReferencedSOPInstanceUID = generate_uid()
        series_ref = Dataset()
        series_ref.SeriesInstanceUID = generate_uid()
        series_ref.ReferencedImageSequence = [image_ref]
        ds.ReferencedSeriesSequence = [series_ref]
        evidence = Dataset()
        evidence.StudyInstanceUID = study
        evidence.ReferencedSeriesSequence = [Dataset()]
        evidence.ReferencedSeriesSequence[0].SeriesInstanceUID = series_ref.SeriesInstanceUID
        evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence = [image_ref]
        ds.ReferencedImageEvidenceSequence = [evidence]
        # Root-level records need their own Type 1 keys, which have no sensible placeholder.
        ds.HangingProtocolName = ds.HangingProtocolDescription = "HP"
        ds.HangingProtocolLevel, ds.HangingProtocolCreator = "SITE", "KIOSK"
        ds.HangingProtocolCreationDateTime, ds.NumberOfPriorsReferenced = "20240119101010", 0
        ds.HangingProtocolDefinitionSequence = [Dataset()]
        ds.HangingProtocolDefinitionSequence[0].Modality = "CT"
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "1", "99TEST", "x"
        ds.HangingProtocolDefinitionSequence[0].ProcedureCodeSequence = [code]
        ds.HangingProtocolDefinitionSequence[0].ReasonForRequestedProcedureCodeSequence = [code]
        ds.Manufacturer = ds.ImplantName = ds.ImplantPartNumber = "X"
        ds.ImplantAssemblyTemplateName = ds.ImplantTemplateGroupName = "X"
        ds.ImplantTemplateGroupIssuer = "X"
        ds.ProcedureTypeCodeSequence = [code]
        made[record_type] = _write(directory, ds, record_type.replace(" ", "_") + ".dcm")
    return made


def test_every_record_type(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    sources = _record_type_sources(src)
    private = _bare("1.3.12.2.1107.5.9.1", generate_uid())  # Siemens CSA Non-Image
    private.PatientID, private.Modality = "RT0001", "OT"
    sources["PRIVATE"] = _write(src, private, "private.dcm")
    # A profile for this test only: every standard class plus the private one.
    profile = replace(
        get_profile("STD-GEN-CD"),
        sop_classes=frozenset({*RECORD_TYPES, "1.3.12.2.1107.5.9.1"}),
    )
    result = _build(list(sources.values()), tmp_path / "out", profile)
    out = tmp_path / "out"
    errors = dciodvfy_errors(out / "DICOMDIR")
    allowed = [
        f"Error - Unrecognized enumerated value <{t}> for value 1 of attribute "
        "<Directory Record Type>"
        for t in DCIODVFY_UNKNOWN_RECORDS
    ]
    assert sorted(errors) == sorted(allowed)
    records = pydicom.dcmread(out / "DICOMDIR").DirectoryRecordSequence
    leaf_types = {r.DirectoryRecordType for r in records} - {"PATIENT", "STUDY", "SERIES"}
    assert leaf_types == set(sources)
    private_record = next(r for r in records if r.DirectoryRecordType == "PRIVATE")
    assert private_record.PrivateRecordUID == "1.3.12.2.1107.5.9.1"
    assert {str(i.SOPInstanceUID) for i in FileSet(out / "DICOMDIR")} == {
        e.sop_instance_uid for e in result.manifest.entries if e.sop_instance_uid
    }


# -- failures --------------------------------------------------------------------------------------


def test_missing_source(study_files: list[Path], tmp_path: Path) -> None:
    missing = tmp_path / "1.2.3.4.dcm"
    with pytest.raises(SourceFileError, match=r"1\.2\.3\.4\.dcm is missing"):
        _build([*study_files[:3], missing], tmp_path / "out", get_profile("STD-GEN-CD"))
    assert not (tmp_path / "out" / "DICOM").exists()
    assert not (tmp_path / "out" / "DICOMDIR").exists()


@pytest.mark.parametrize("cut", [10, 2000, 100_000])
def test_truncated_source(cut: int, study_files: list[Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.dcm"
    data = study_files[0].read_bytes()
    broken.write_bytes(data[: max(len(data) - cut, 0)] if cut < len(data) else data[:200])
    with pytest.raises(SourceFileError, match=r"broken\.dcm is truncated"):
        _build([study_files[1], broken], tmp_path / "out", get_profile("STD-GEN-CD"))
    assert not (tmp_path / "out" / "DICOM").exists()


def test_undecodable_pixel_data(study_files: list[Path], tmp_path: Path) -> None:
    ds = pydicom.dcmread(study_files[0])
    ds.SOPInstanceUID = generate_uid()
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00\x00\x01\xb3" + b"\x55" * 60])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")  # MPEG-2: no decoder
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    video = tmp_path / "video.dcm"
    ds.save_as(video, enforce_file_format=True)
    with pytest.raises(TranscodeError, match=f"instance {ds.SOPInstanceUID}.*MPEG2"):
        _build([video], tmp_path / "out", get_profile("STD-GEN-CD"))
    result = _build(
        [video, study_files[0]], tmp_path / "out2", get_profile("STD-GEN-CD"), on_unsupported="skip"
    )
    assert result.instances == 1 and [s.source for s in result.skipped] == ["video.dcm"]


def test_refusals(study_files: list[Path], tmp_path: Path) -> None:
    profile = get_profile("STD-GEN-CD")
    with pytest.raises(FileSetError, match="no instance"):
        _build([], tmp_path / "empty", profile)
    with pytest.raises(FileSetError, match="File-set ID"):
        build_fileset(study_files[:1], tmp_path / "a", profile, fileset_id="lower case")
    with pytest.raises(FileSetError, match="given twice"):
        _build([study_files[0], study_files[0]], tmp_path / "b", profile)
    _build(study_files[:1], tmp_path / "c", profile)
    with pytest.raises(FileSetError, match="already holds a file set"):
        _build(study_files[:1], tmp_path / "c", profile)


def test_progress_can_abort(study_files: list[Path], tmp_path: Path) -> None:
    class StopError(Exception):
        pass

    def stop(done: int, total: int) -> None:
        if done == 5:
            raise StopError

    with pytest.raises(StopError):
        _build(study_files, tmp_path, get_profile("STD-GEN-CD"), progress=stop)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def mr_with_bad_bits(study_files: list[Path], tmp_path: Path) -> Iterator[Path]:
    ds = pydicom.dcmread(next(p for p in study_files if _is_mr(p)))
    ds.BitsStored, ds.HighBit = 10, 9
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / "mr10.dcm"
    ds.save_as(path, enforce_file_format=True)
    yield path


def _is_mr(path: Path) -> bool:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID) == MR_IMAGE


def test_ctmr_attribute_rules(mr_with_bad_bits: Path, tmp_path: Path) -> None:
    with pytest.raises(ProfileViolationError, match="stores 10 bits"):
        _build([mr_with_bad_bits], tmp_path / "out", get_profile("STD-CTMR-CD"))
    # The general-purpose profile has no such rule.
    _build([mr_with_bad_bits], tmp_path / "gen", get_profile("STD-GEN-CD"))
