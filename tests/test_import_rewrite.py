"""Identity rewrite of imported instances (appliance/importer/rewrite.py).

Inputs are pydicom's own sample files (every transfer syntax it ships, SR, charsets) and
instances built here; outputs are checked with tools we did not write: DCMTK dcmdump
(structure), dicom3tools dciodvfy (IOD conformance, before vs after) and pydicom (values, pixel
data bytes, references).
"""

from __future__ import annotations

import datetime
import re
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from appliance.config.schema import ImporterConfig
from appliance.importer.dataset_layout import find_dataset_offset
from appliance.importer.rewrite import (
    ImportIdentity,
    rewrite_instance,
    source_of_previous_values,
)
from appliance.importer.rewrite_batch import RewriteItem, rewrite_all
from appliance.importer.rewrite_errors import RewriteError
from appliance.importer.uid_plan import UidPlan, collect_uids
from appliance.media.reidentify import NewIdentity
from tests.peers.data import TEST_FILES_DIR, make_instance, pydicom_sample_files

DCMDUMP = "/usr/bin/dcmdump"
DCIODVFY = "dciodvfy"
CHARSET_DIR = TEST_FILES_DIR.parent / "charset_files"
MOMENT = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC)
MOMENT_DT = "20240506070809.123456+0000"
SECRET = b"job-secret-0123456789abcdef"
KOS_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
CT_CLASS = "1.2.840.10008.5.1.4.1.1.2"

LOCAL = NewIdentity(
    patient_name="LOCAL^PATIENT",
    patient_id="MRN-4711",
    issuer_of_patient_id="OUR HOSPITAL",
    patient_birth_date="19650304",
    patient_sex="F",
    accession_number="ACC-LOCAL-1",
    requested_procedure_id="RP-77",
    requested_procedure_description="CT THORAX",
)


def _charset_samples() -> list[Path]:
    """Charset sample files that are storable instances (two lack SOP UIDs)."""
    found = []
    for path in sorted(CHARSET_DIR.glob("chr*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "SOPInstanceUID" in ds and "SOPClassUID" in ds:
            found.append(path)
    return found


def _syntax(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


def _rewrite(src: Path, dst: Path, identity: ImportIdentity | None, plan: UidPlan) -> None:
    rewrite_instance(
        src,
        dst,
        data_set_offset=None,
        transfer_syntax_uid=_syntax(src),
        identity=identity,
        uid_plan=plan,
        source_ae="KIOSK",
    )


# -- tools we did not write --------------------------------------------------------------------

_UID_IN_MESSAGE = re.compile(r"[0-9]+(\.[0-9]+){3,}")


def _dciodvfy_errors(path: Path) -> set[str]:
    result = subprocess.run(
        [DCIODVFY, str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
        check=False,
    )
    lines = (result.stdout + result.stderr).splitlines()
    return {_UID_IN_MESSAGE.sub("<UID>", line) for line in lines if line.startswith("Error")}


def _dcmdump(path: Path) -> tuple[int, set[str]]:
    """dcmdump's exit status and its warning/error lines (without the file name).

    No charset conversion (+U8): this DCMTK's iconv cannot convert ISO 2022 IR 87.
    """
    result = subprocess.run(
        [DCMDUMP, str(path)],
        check=False,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
        env={"TCP_NODELAY": "1"},
    )
    lines = {line.replace(str(path), "<file>") for line in result.stderr.splitlines()}
    return result.returncode, {line for line in lines if line[:2] in ("W:", "E:", "F:")}


# -- the identity in use -------------------------------------------------------------------------


def _fixed(values: NewIdentity = LOCAL) -> ImportIdentity:
    return ImportIdentity(
        values,
        ImporterConfig().modifying_system,
        "OTHER HOSPITAL",
        modified_at=MOMENT,
    )


def _pixels(ds: Dataset) -> dict[str, bytes]:
    return {
        k: bytes(ds[k].value)
        for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
        if k in ds
    }


def _top_level_values(ds: Dataset, skip: set[str]) -> dict[str, str]:
    """Decoded values of the top-level elements, for comparing text before/after."""
    values = {}
    for elem in ds:
        if elem.keyword in skip or elem.tag.element == 0 or elem.tag.group == 0x0002:
            continue
        if elem.keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            continue
        values[str(elem.tag)] = repr(elem.value)
    return values


SAMPLES = pydicom_sample_files() + _charset_samples()


@pytest.mark.parametrize("src", SAMPLES, ids=lambda p: p.name)
def test_rewrite_of_a_sample_file(tmp_path: Path, src: Path) -> None:
    dst = tmp_path / "out.dcm"
    before = pydicom.dcmread(src)
    result = rewrite_instance(
        src,
        dst,
        data_set_offset=None,
        transfer_syntax_uid=str(before.file_meta.TransferSyntaxUID),
        identity=_fixed(),
        uid_plan=UidPlan.keep(),
        source_ae="KIOSK",
    )
    after = pydicom.dcmread(dst)

    # Structure: dcmdump reads it with no warning the input did not already cause.
    status, warnings = _dcmdump(dst)
    assert status == 0
    assert warnings - _dcmdump(src)[1] == set()
    # Conformance: no dciodvfy error that the input did not have.
    assert _dciodvfy_errors(dst) - _dciodvfy_errors(src) == set()
    # The pixel data is the same bytes.
    assert _pixels(after) == _pixels(before)
    # The File Meta is ours and names this instance in its own syntax.
    assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
    assert after.file_meta.MediaStorageSOPClassUID == after.SOPClassUID
    assert after.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
    assert after.file_meta.SourceApplicationEntityTitle == "KIOSK"
    assert result.size == dst.stat().st_size
    assert result.sop_instance_uid == before.SOPInstanceUID == after.SOPInstanceUID
    # The new identity...
    assert after.PatientName == "LOCAL^PATIENT"
    assert after.PatientID == "MRN-4711"
    assert after.IssuerOfPatientID == "OUR HOSPITAL"
    assert after.PatientBirthDate == "19650304"
    assert after.PatientSex == "F"
    assert after.AccessionNumber == "ACC-LOCAL-1"
    (request,) = after.RequestAttributesSequence
    assert (request.RequestedProcedureID, request.RequestedProcedureDescription) == (
        "RP-77",
        "CT THORAX",
    )
    assert after.InstanceCoercionDateTime == MOMENT_DT
    # ...and the old one, recorded as C.12.1.1.9 asks.
    record = after.OriginalAttributesSequence[-1]
    assert record.ModifyingSystem == "KIOSK"
    assert record.ReasonForTheAttributeModification == "COERCE"
    assert record.AttributeModificationDateTime == MOMENT_DT
    assert record.SourceOfPreviousValues == "OTHER HOSPITAL"
    old = record.ModifiedAttributesSequence[0]
    assert str(old.get("PatientName", "")) == str(before.get("PatientName", ""))
    assert str(old.get("PatientID", "")) == str(before.get("PatientID", ""))
    assert "PatientName" in result.changed
    # Everything else reads exactly as before (text in its character set included).
    skip = set(result.changed)
    assert _top_level_values(after, skip) == _top_level_values(before, skip)


@pytest.mark.parametrize(
    "name", ["chrFren.dcm", "chrGerm.dcm", "chrH31.dcm", "chrH32.dcm", "chrJapMulti.dcm"]
)
def test_non_ascii_name_switches_to_utf8_and_keeps_other_text(tmp_path: Path, name: str) -> None:
    src = CHARSET_DIR / name
    dst = tmp_path / "out.dcm"
    before = pydicom.dcmread(src)
    identity = _fixed(NewIdentity(patient_name="Ærøskøbing^Åse=神田^花子"))
    _rewrite(src, dst, identity, UidPlan.keep())

    after = pydicom.dcmread(dst)
    assert after.SpecificCharacterSet == "ISO_IR 192"
    assert str(after.PatientName) == "Ærøskøbing^Åse=神田^花子"
    old = after.OriginalAttributesSequence[-1].ModifiedAttributesSequence[0]
    assert str(old.PatientName) == str(before.PatientName)  # decoded with the old charset
    skip = {"PatientName", "SpecificCharacterSet", "InstanceCoercionDateTime"}
    skip.add("OriginalAttributesSequence")
    assert _top_level_values(after, skip) == _top_level_values(before, skip)
    # DCMTK decodes it to the same text.
    dump = subprocess.run(
        [DCMDUMP, "+U8", str(dst)], capture_output=True, text=True, check=True, timeout=60
    )
    assert "Ærøskøbing^Åse=神田^花子" in dump.stdout
    assert _dciodvfy_errors(dst) - _dciodvfy_errors(src) == set()


def test_ascii_values_keep_an_iso_2022_character_set(tmp_path: Path) -> None:
    src = CHARSET_DIR / "chrH32.dcm"
    dst = tmp_path / "out.dcm"
    _rewrite(src, dst, _fixed(NewIdentity(patient_id="MRN-1")), UidPlan.keep())
    before, after = pydicom.dcmread(src), pydicom.dcmread(dst)
    assert after.SpecificCharacterSet == before.SpecificCharacterSet
    assert str(after.PatientName) == str(before.PatientName)  # the Japanese name, unchanged
    assert after.PatientID == "MRN-1"


def test_only_the_header_is_rewritten_and_the_tail_copied(tmp_path: Path) -> None:
    """The output ends with the input's bytes from the first element after group 0400."""
    src = TEST_FILES_DIR / "CT_small.dcm"
    dst = tmp_path / "out.dcm"
    result = rewrite_instance(
        src,
        dst,
        data_set_offset=None,
        transfer_syntax_uid=_syntax(src),
        identity=_fixed(),
        uid_plan=UidPlan.keep(),
        source_ae=None,
    )
    assert result.method == "splice"
    data = src.read_bytes()
    pixel_tag = b"\xe0\x7f\x10\x00OW"
    tail = data[data.index(pixel_tag) :]
    assert dst.read_bytes().endswith(tail)
    assert "SourceApplicationEntityTitle" not in pydicom.dcmread(dst).file_meta


def test_without_an_identity_only_the_file_meta_changes(tmp_path: Path) -> None:
    src = TEST_FILES_DIR / "MR_small_bigendian.dcm"
    dst = tmp_path / "out.dcm"
    result = rewrite_instance(
        src,
        dst,
        data_set_offset=None,
        transfer_syntax_uid=_syntax(src),
        identity=None,
        uid_plan=UidPlan.keep(),
        source_ae=None,
    )
    assert result.changed == ()
    before, after = pydicom.dcmread(src), pydicom.dcmread(dst)
    assert _top_level_values(after, set()) == _top_level_values(before, set())
    assert after.file_meta.ImplementationClassUID != before.file_meta.ImplementationClassUID


def test_a_bare_data_set_becomes_a_ps310_file(tmp_path: Path) -> None:
    path = TEST_FILES_DIR / "MR_small_implicit.dcm"
    source = pydicom.dcmread(path)
    data = path.read_bytes()
    bare = tmp_path / "IMG0001"
    bare.write_bytes(data[find_dataset_offset(data, path.name) :])
    assert bare.read_bytes()[128:132] != b"DICM"
    dst = tmp_path / "out.dcm"
    rewrite_instance(
        bare,
        dst,
        data_set_offset=0,
        transfer_syntax_uid="1.2.840.10008.1.2",
        identity=_fixed(),
        uid_plan=UidPlan.keep(),
        source_ae=None,
    )
    assert dst.read_bytes()[128:132] == b"DICM"
    after = pydicom.dcmread(dst)
    assert after.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    assert after.PatientID == "MRN-4711"
    assert after.PixelData == source.PixelData
    assert _dcmdump(dst)[0] == 0


# -- new UIDs ------------------------------------------------------------------------------------


def _kos(images: list[Path], directory: Path) -> Path:
    """A Key Object Selection Document referencing the given images."""
    refs = [pydicom.dcmread(p, stop_before_pixels=True) for p in images]
    first = refs[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = KOS_CLASS
    ds.SOPClassUID = KOS_CLASS
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = first.StudyInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID = first.PatientName, first.PatientID
    ds.PatientBirthDate, ds.PatientSex = first.PatientBirthDate, ""
    ds.StudyDate, ds.StudyTime, ds.ContentDate, ds.ContentTime = "20240101", "1200", "", ""
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "1", ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "KO", 99, 1
    ds.Manufacturer = ""
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator = "113000", "DCM"
    title.CodeMeaning = "Of Interest"
    ds.ConceptNameCodeSequence = Sequence([title])
    template = Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", "2010"
    ds.ContentTemplateSequence = Sequence([template])
    series_items: dict[str, Dataset] = {}
    content = []
    for ref in refs:
        sop = Dataset()
        sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID = (
            ref.SOPClassUID,
            ref.SOPInstanceUID,
        )
        series = series_items.setdefault(str(ref.SeriesInstanceUID), Dataset())
        series.SeriesInstanceUID = ref.SeriesInstanceUID
        series.setdefault("ReferencedSOPSequence", Sequence()).value.append(sop)
        item = Dataset()
        item.RelationshipType, item.ValueType = "CONTAINS", "IMAGE"
        image = Dataset()
        image.ReferencedSOPClassUID, image.ReferencedSOPInstanceUID = (
            ref.SOPClassUID,
            ref.SOPInstanceUID,
        )
        item.ReferencedSOPSequence = Sequence([image])
        content.append(item)
    study = Dataset()
    study.StudyInstanceUID = first.StudyInstanceUID
    study.ReferencedSeriesSequence = Sequence(list(series_items.values()))
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([study])
    ds.ContentSequence = Sequence(content)
    path = directory / "kos.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _study(directory: Path) -> list[Path]:
    """Three CT images in two series (one derived from another) and a KOS over all of them."""
    directory.mkdir()
    study = generate_uid()
    series = [generate_uid(), generate_uid()]
    paths = [
        make_instance(directory, study_uid=study, series_uid=series[n // 2], instance_number=n)
        for n in range(3)
    ]
    # The third image says it was derived from the first (Source Image Sequence).
    ds = pydicom.dcmread(paths[2])
    first = pydicom.dcmread(paths[0], stop_before_pixels=True)
    source = Dataset()
    source.ReferencedSOPClassUID, source.ReferencedSOPInstanceUID = CT_CLASS, first.SOPInstanceUID
    ds.SourceImageSequence = Sequence([source])
    ds.FrameOfReferenceUID = generate_uid()
    ds.save_as(paths[2], enforce_file_format=True)
    return [*paths, _kos(paths, directory)]


def _rewrite_study(sources: list[Path], out: Path, secret: bytes) -> list[Dataset]:
    out.mkdir()
    originals: set[str] = set()
    for path in sources:
        originals |= collect_uids(pydicom.dcmread(path, stop_before_pixels=True))
    plan = UidPlan.new_uids(secret, originals)
    identity = _fixed(NewIdentity(patient_id="MRN-NEW"))
    items = [RewriteItem(p, out / p.name, None, ExplicitVRLittleEndian, identity) for p in sources]
    result = rewrite_all(items, uid_plan=plan)
    assert result.failed == () and not result.stopped
    return [pydicom.dcmread(out / p.name) for p in sources]


def _referenced_uids(ds: Dataset) -> set[str]:
    found: set[str] = set()

    def visit(_ds: Dataset, elem: pydicom.DataElement) -> None:
        if elem.keyword in ("ReferencedSOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
            found.add(str(elem.value))

    for elem in ds:
        if elem.VR == "SQ" and elem.keyword != "OriginalAttributesSequence":
            for item in elem.value:
                item.walk(visit)
    return found


def test_new_uids_are_consistent_across_the_import(tmp_path: Path) -> None:
    sources = _study(tmp_path / "disc")
    before = [pydicom.dcmread(p) for p in sources]
    after = _rewrite_study(sources, tmp_path / "out", SECRET)

    old_uids = set().union(*(collect_uids(ds) for ds in before))
    new_sops = {str(ds.SOPInstanceUID) for ds in after}
    assert len({str(ds.StudyInstanceUID) for ds in after}) == 1
    assert len({str(ds.SeriesInstanceUID) for ds in after}) == 3
    for old, new in zip(before, after, strict=True):
        assert new.SOPInstanceUID != old.SOPInstanceUID
        assert new.SOPInstanceUID.startswith("2.25.")
        assert new.file_meta.MediaStorageSOPInstanceUID == new.SOPInstanceUID
        assert new.SOPClassUID == old.SOPClassUID
        assert new.PatientID == "MRN-NEW"
        recorded = new.OriginalAttributesSequence[-1].ModifiedAttributesSequence[0]
        assert recorded.SOPInstanceUID == old.SOPInstanceUID
        assert recorded.StudyInstanceUID == old.StudyInstanceUID
    # Every reference resolves to a new UID of the import, none to an old one.
    kos = after[-1]
    references = _referenced_uids(kos)
    assert {str(ds.SOPInstanceUID) for ds in after[:3]} <= references
    assert references <= new_sops | {str(ds.SeriesInstanceUID) for ds in after} | {
        str(kos.StudyInstanceUID)
    }
    derived = after[2]
    assert derived.SourceImageSequence[0].ReferencedSOPInstanceUID == after[0].SOPInstanceUID
    assert derived.SourceImageSequence[0].ReferencedSOPClassUID == CT_CLASS
    assert derived.FrameOfReferenceUID != before[2].FrameOfReferenceUID
    # The old UIDs are gone from the files except in Original Attributes Sequence.
    for ds in after:
        del ds.OriginalAttributesSequence
        assert not (_referenced_uids(ds) | collect_uids(ds)) & old_uids
    assert _dciodvfy_errors(tmp_path / "out" / "kos.dcm") - _dciodvfy_errors(sources[-1]) == set()


def test_the_same_job_gives_the_same_uids_and_another_job_others(tmp_path: Path) -> None:
    sources = _study(tmp_path / "disc")
    first = _rewrite_study(sources, tmp_path / "one", SECRET)
    again = _rewrite_study(sources, tmp_path / "two", SECRET)
    other = _rewrite_study(sources, tmp_path / "three", b"another-job-secret-0123456")
    assert [ds.SOPInstanceUID for ds in first] == [ds.SOPInstanceUID for ds in again]
    assert {ds.SOPInstanceUID for ds in first}.isdisjoint({ds.SOPInstanceUID for ds in other})


def test_a_renamed_uid_after_the_pixel_data_forces_a_full_rewrite(tmp_path: Path) -> None:
    """A private element after Pixel Data holding the study UID: copying it would leak the old
    UID, so the instance is decoded whole and the value renamed."""
    src = make_instance(tmp_path)
    ds = pydicom.dcmread(src)
    ds.add_new(0x7FE10010, "LO", "ACME 1.0")
    ds.add_new(0x7FE11001, "UI", ds.StudyInstanceUID)
    ds.save_as(src, enforce_file_format=True)
    plan = UidPlan.new_uids(SECRET, collect_uids(ds))

    renamed = rewrite_instance(
        src,
        tmp_path / "new.dcm",
        data_set_offset=None,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        identity=_fixed(),
        uid_plan=plan,
        source_ae=None,
    )
    kept = rewrite_instance(
        src,
        tmp_path / "kept.dcm",
        data_set_offset=None,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        identity=_fixed(),
        uid_plan=UidPlan.keep(),
        source_ae=None,
    )
    assert renamed.method == "full"
    assert kept.method == "splice"
    out = pydicom.dcmread(tmp_path / "new.dcm")
    assert out[0x7FE11001].value == out.StudyInstanceUID != ds.StudyInstanceUID
    assert out.PixelData == ds.PixelData


# -- damaged input -------------------------------------------------------------------------------


def _damaged(tmp_path: Path, how: str) -> Path:
    data = bytearray((TEST_FILES_DIR / "CT_small.dcm").read_bytes())
    path = tmp_path / f"{how}.dcm"
    name_at = data.index(b"\x10\x00\x10\x00PN")  # Patient's Name
    if how == "truncated_header":
        data = data[: name_at + 4]
    elif how == "length_beyond_end":
        data[name_at + 6 : name_at + 8] = b"\xff\x7f"
    elif how == "bad_vr":
        data[name_at + 4 : name_at + 6] = b"??"
    elif how == "truncated_pixels":
        data = data[:-1000]
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "how", ["truncated_header", "length_beyond_end", "bad_vr", "truncated_pixels"]
)
def test_a_damaged_file_gives_a_clear_error_and_no_output(tmp_path: Path, how: str) -> None:
    src = _damaged(tmp_path, how)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RewriteError, match=rf"{how}\.dcm: .*(truncated|damaged)"):
        rewrite_instance(
            src,
            out / "x.dcm",
            data_set_offset=None,
            transfer_syntax_uid=ExplicitVRLittleEndian,
            identity=_fixed(),
            uid_plan=UidPlan.keep(),
            source_ae=None,
        )
    assert list(out.iterdir()) == []


def test_a_file_without_sop_instance_uid_is_refused(tmp_path: Path) -> None:
    src = CHARSET_DIR / "chrSQEncoding.dcm"
    with pytest.raises(RewriteError, match="SOPClassUID is missing"):
        _rewrite(src, tmp_path / "x.dcm", _fixed(), UidPlan.keep())
    assert list(tmp_path.iterdir()) == []


# -- request attributes, batch ---------------------------------------------------------------


def test_request_attributes_hold_one_item_for_the_local_order(tmp_path: Path) -> None:
    src = make_instance(tmp_path)
    ds = pydicom.dcmread(src)
    foreign = Dataset()
    foreign.RequestedProcedureID, foreign.ScheduledProcedureStepID = "THEIRS-1", "SPS-9"
    ds.RequestAttributesSequence = Sequence([foreign, Dataset()])
    ds.RequestedProcedureDescription = "THEIR PROCEDURE"  # a top-level copy some modalities add
    ds.save_as(src, enforce_file_format=True)

    identity = _fixed(NewIdentity(requested_procedure_id="RP-1"))
    _rewrite(src, tmp_path / "out.dcm", identity, UidPlan.keep())
    after = pydicom.dcmread(tmp_path / "out.dcm")
    (item,) = after.RequestAttributesSequence
    assert item.RequestedProcedureID == "RP-1"
    assert "ScheduledProcedureStepID" not in item
    assert after.RequestedProcedureDescription == "THEIR PROCEDURE"  # not given: not touched
    assert "RequestedProcedureID" not in after  # not at the top level before: not added
    old = after.OriginalAttributesSequence[-1].ModifiedAttributesSequence[0]
    assert old.RequestAttributesSequence[0].ScheduledProcedureStepID == "SPS-9"


def test_batch_reports_failures_progress_and_stops(tmp_path: Path) -> None:
    sources = [make_instance(tmp_path, instance_number=n) for n in range(6)]
    bad = _damaged(tmp_path, "truncated_header")
    out = tmp_path / "out"
    out.mkdir()
    items = [
        RewriteItem(p, out / f"{n}.dcm", None, ExplicitVRLittleEndian, _fixed())
        for n, p in enumerate([sources[0], bad, *sources[1:]])
    ]
    seen: list[tuple[int, int]] = []
    result = rewrite_all(items, uid_plan=UidPlan.keep(), progress=lambda d, t: seen.append((d, t)))
    assert len(result.written) == 6 and not result.stopped
    assert [f.src for f in result.failed] == [bad]
    assert seen == [(n, 7) for n in range(1, 8)]

    asked = 0

    def stop_after_two() -> bool:
        nonlocal asked
        asked += 1
        return asked > 2

    stopped = rewrite_all(items, uid_plan=UidPlan.keep(), should_stop=stop_after_two)
    assert stopped.stopped
    assert len(stopped.written) + len(stopped.failed) == 2


def test_source_of_previous_values_from_the_disc() -> None:
    ds = Dataset()
    assert source_of_previous_values(ds) == ""
    ds.IssuerOfPatientID = "THEIR MRN"
    assert source_of_previous_values(ds) == "THEIR MRN"
    ds.InstitutionName = "St. Elsewhere\\Annex"
    assert source_of_previous_values(ds) == "St. Elsewhere Annex"
