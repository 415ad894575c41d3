"""Identity transforms: de-identification (PS3.15 Annex E) and re-identification (PS3.3 C.12.1).

Real files (pydicom's samples and generated CTs), written with pydicom and checked as bytes, with
dciodvfy (IOD conformance, before vs after) and dcmdump (readability).
"""

from __future__ import annotations

import datetime
import io
import re
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from appliance.errors import KioskError
from appliance.media.identity_transform import (
    REASON_COERCE,
    REASON_CORRECT,
    Deidentifier,
    DeidentOptions,
    IdentityTransform,
    IdentityTransformError,
    NewIdentity,
    OtherPatientID,
    Reidentifier,
    WarningKind,
)
from tests.peers.data import TEST_FILES_DIR, make_instance

SECRET = b"job-secret-0123456789-abcdef"
DCIODVFY = "/usr/bin/dciodvfy"
DCMDUMP = "/usr/bin/dcmdump"

PATIENT_NAME = "Müller^Jürgen"
PATIENT_ID = "MRN7730441"
BIRTH_DATE = "19610923"
ACCESSION = "ACC8812345"

# Every identifying value put into the rich instance; none may survive de-identification.
PHI = [
    "Müller",
    "Jürgen",
    PATIENT_ID,
    BIRTH_DATE,
    ACCESSION,
    "OLDMRN778899",
    "ALTMRN5566",
    "Welby^Marcus",
    "St Elsewhere General",
    "12 Elm Street Springfield",
    "555-0199",
    "Tech^Tom",
    "House^Gregory",
    "Wilson^James",
    "SN-4455667",
    "STUDY4711",
    "CTROOM_OC7",
    "Doe^John",
    "Schmidt^Anna",
    "Requested by Dr Cuddy",
    "Kelso^Bob",
]


def _encoded(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _assert_absent(data: bytes, values: list[str]) -> None:
    for value in values:
        for variant in {value, value.upper()}:
            for codec in ("utf-8", "latin-1"):
                try:
                    needle = variant.encode(codec)
                except UnicodeEncodeError:
                    continue
                assert needle not in data, f"PHI #{values.index(value)} left ({codec})"


def _rich_ct(
    directory: Path, *, study_uid: str | None = None, series_uid: str | None = None
) -> Path:
    """A CT with identifying data in many places (top level, sequences, private, overlays)."""
    path = make_instance(
        directory,
        patient_id=PATIENT_ID,
        birth_date=BIRTH_DATE,
        study_uid=study_uid,
        series_uid=series_uid,
    )
    ds = pydicom.dcmread(path)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = PATIENT_NAME
    ds.AccessionNumber = ACCESSION
    ds.IssuerOfPatientID = "St Elsewhere General"
    ds.OtherPatientIDs = "OLDMRN778899"
    other = Dataset()
    other.PatientID = "ALTMRN5566"
    other.IssuerOfPatientID = "MERCY"
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.PatientAddress = "12 Elm Street Springfield"
    ds.PatientTelephoneNumbers = "555-0199"
    ds.PatientAge = "062Y"
    ds.PatientWeight = "81"
    ds.ReferringPhysicianName = "Welby^Marcus"
    ds.PerformingPhysicianName = "House^Gregory"
    ds.NameOfPhysiciansReadingStudy = "Wilson^James"
    ds.OperatorsName = "Tech^Tom"
    ds.InstitutionName = "St Elsewhere General"
    ds.InstitutionAddress = "12 Elm Street Springfield"
    ds.StationName = "CTROOM_OC7"
    ds.DeviceSerialNumber = "SN-4455667"
    ds.Manufacturer = "ACME"
    ds.StudyID = "STUDY4711"
    ds.SeriesDate = "20240119"
    ds.SeriesTime = "072900"
    ds.ContentDate = "20240119"
    ds.ContentTime = "073001"
    ds.AcquisitionDateTime = "20240119073000"
    ds.StudyDescription = f"CT HEAD for {PATIENT_ID}"
    ds.SeriesDescription = "AXIAL 5MM"
    ds.ImageComments = "Patient Doe^John asked for a copy"
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1, 1]
    ds.SliceThickness = "5"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.KVP = "120"
    ds.AcquisitionNumber = "1"
    ds.PatientPosition = "HFS"
    ds.BurnedInAnnotation = "NO"
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study_ref.ReferencedSOPInstanceUID = generate_uid()
    ds.ReferencedStudySequence = Sequence([study_ref])
    instance_ref = Dataset()
    instance_ref.ReferencedSOPClassUID = ds.SOPClassUID
    instance_ref.ReferencedSOPInstanceUID = generate_uid()
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = generate_uid()
    series_ref.ReferencedInstanceSequence = Sequence([instance_ref])
    ds.ReferencedSeriesSequence = Sequence([series_ref])
    request = Dataset()
    request.AccessionNumber = ACCESSION
    request.RequestedProcedureID = "RP-1"
    request.ScheduledProcedureStepID = "SPS-1"
    request.RequestedProcedureDescription = "Requested by Dr Cuddy"
    ds.RequestAttributesSequence = Sequence([request])
    operator = Dataset()
    operator.PersonIdentificationCodeSequence = Sequence([Dataset()])
    code = operator.PersonIdentificationCodeSequence[0]
    code.CodeValue = "E-4471"
    code.CodingSchemeDesignator = "99HOSP"
    code.CodeMeaning = "Kelso^Bob"
    operator.InstitutionName = "St Elsewhere General"
    ds.OperatorIdentificationSequence = Sequence([operator])
    block = ds.private_block(0x0019, "ACME PRIVATE", create=True)
    block.add_new(0x10, "LO", "Schmidt^Anna")
    block.add_new(0x11, "SH", PATIENT_ID)
    ds.add_new(0x60000010, "US", 64)
    ds.add_new(0x60000011, "US", 64)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", b"\x00" * 512)
    ds.add_new(0x60004000, "LT", "Overlay by Doe^John")
    ds.save_as(path, enforce_file_format=True)
    return path


def _empty(ds: Dataset, keyword: str) -> bool:
    """Present with a zero-length value (Z)."""
    return keyword in ds and ds[keyword].is_empty


def _deidentifier(options: DeidentOptions | None = None) -> Deidentifier:
    return Deidentifier(options or DeidentOptions(), secret=SECRET)


def _codes(ds: Dataset) -> set[str]:
    return {str(item.CodeValue) for item in ds.DeidentificationMethodCodeSequence}


# --- de-identification: nothing identifying is left ----------------------------------------------


def test_no_original_phi_in_the_written_file(tmp_path: Path) -> None:
    path = _rich_ct(tmp_path)
    source = pydicom.dcmread(path)
    original_uids = [
        source.SOPInstanceUID,
        source.StudyInstanceUID,
        source.SeriesInstanceUID,
        source.FrameOfReferenceUID,
        source.ReferencedStudySequence[0].ReferencedSOPInstanceUID,
        source.ReferencedSeriesSequence[0].SeriesInstanceUID,
        source.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID,
    ]
    assert all(v.encode("latin-1") in path.read_bytes() for v in ("Müller", "Schmidt^Anna"))

    deidentifier = _deidentifier()
    ds = deidentifier(pydicom.dcmread(path))
    data = _encoded(ds)

    _assert_absent(data, PHI)
    _assert_absent(data, original_uids)
    assert ds.PatientIdentityRemoved == "YES"
    assert "113100" in _codes(ds)
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert str(ds.PatientName).startswith("ANONYMOUS^")
    assert str(ds.PatientID).startswith("ANON")
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SOPInstanceUID.startswith("2.25.")
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    # X/Z on a non-empty sequence: cleaned, so the reference survives with a new UID.
    assert ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID.startswith("2.25.")
    assert not any(elem.tag.is_private for elem in ds)
    assert not any(elem.tag.group == 0x6000 for elem in ds)
    for keyword in ("OtherPatientIDsSequence", "RequestAttributesSequence", "ImageComments"):
        assert keyword not in ds
    # Person Identification Code Sequence (D) keeps a dummy code, the operator's item stays.
    person = ds.OperatorIdentificationSequence[0].PersonIdentificationCodeSequence[0]
    assert person.CodingSchemeDesignator.startswith("99")
    assert ds.Manufacturer == "ACME"  # not identifying: kept


def test_structured_report_content_is_cleaned(tmp_path: Path) -> None:
    ds = pydicom.dcmread(TEST_FILES_DIR / "test-SR.dcm")
    pname = Dataset()
    pname.RelationshipType = "CONTAINS"
    pname.ValueType = "PNAME"
    pname.ConceptNameCodeSequence = Sequence([Dataset()])
    concept = pname.ConceptNameCodeSequence[0]
    concept.CodeValue = "121008"
    concept.CodingSchemeDesignator = "DCM"
    concept.CodeMeaning = "Person Observer Name"
    pname.PersonName = "Doe^Jane"
    text = Dataset()
    text.RelationshipType = "CONTAINS"
    text.ValueType = "TEXT"
    text.ConceptNameCodeSequence = Sequence([concept])
    text.TextValue = "Discussed with Jane Doe on the phone"
    ds.ContentSequence.extend([pname, text])
    items = len(ds.ContentSequence)
    phi = ["Riesmeier", "Jörg", "Observer^Verifying", "Doe^Jane", "Jane Doe", "Test^S R"]
    assert b"Riesmeier" in _encoded(ds)

    out = _deidentifier()(ds)
    data = _encoded(out)

    _assert_absent(data, phi)
    assert len(out.ContentSequence) == items  # the tree is kept, its leaves are dummied
    assert out.ContentSequence[-2].PersonName == "ANONYMIZED"
    assert out.ContentSequence[-1].TextValue == "ANONYMIZED"
    assert out.VerifyingObserverSequence[0].VerifyingObserverIdentificationCodeSequence == []
    assert not out.SOPInstanceUID.startswith("1.2.276")
    path = tmp_path / "sr.dcm"
    path.write_bytes(data)
    assert pydicom.dcmread(path).ContentSequence[0].ValueType


# --- UIDs ----------------------------------------------------------------------------------------


def test_uids_are_remapped_consistently_across_a_study(tmp_path: Path) -> None:
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    first = pydicom.dcmread(_rich_ct(tmp_path, study_uid=study, series_uid=series))
    second = pydicom.dcmread(_rich_ct(tmp_path, study_uid=study, series_uid=series))
    first.FrameOfReferenceUID = second.FrameOfReferenceUID = frame
    ref = Dataset()
    ref.ReferencedSOPClassUID = first.SOPClassUID
    ref.ReferencedSOPInstanceUID = first.SOPInstanceUID
    second.ReferencedImageSequence = Sequence([ref])
    second.SourceImageSequence = Sequence([ref])
    series_ref = second.ReferencedSeriesSequence[0]
    series_ref.SeriesInstanceUID = series
    series_ref.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID = first.SOPInstanceUID
    originals = (first.SOPInstanceUID, second.SOPInstanceUID)

    deidentifier = _deidentifier()
    transform: IdentityTransform = deidentifier  # what the file-set writer takes
    one, two = transform(first), transform(second)

    assert one.StudyInstanceUID == two.StudyInstanceUID != study
    assert one.SeriesInstanceUID == two.SeriesInstanceUID != series
    assert one.FrameOfReferenceUID == two.FrameOfReferenceUID != frame
    assert one.SOPInstanceUID != two.SOPInstanceUID
    assert set(originals).isdisjoint({one.SOPInstanceUID, two.SOPInstanceUID})
    for sequence in (two.ReferencedImageSequence, two.SourceImageSequence):  # X/Z/U*: kept
        assert sequence[0].ReferencedSOPInstanceUID == one.SOPInstanceUID
        assert sequence[0].ReferencedSOPClassUID == one.SOPClassUID  # classes never change
    nested = two.ReferencedSeriesSequence[0]
    assert nested.SeriesInstanceUID == one.SeriesInstanceUID
    assert nested.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == one.SOPInstanceUID
    assert deidentifier.remap_uid(originals[0]) == one.SOPInstanceUID
    # Keyed, not random: the same secret gives the same UIDs in another run (a re-burn).
    assert _deidentifier().remap_uid(study) == one.StudyInstanceUID
    other_key = Deidentifier(DeidentOptions(), secret=b"another-secret-0123456789")
    assert other_key.remap_uid(study) != one.StudyInstanceUID
    for uid in (one.StudyInstanceUID, one.SOPInstanceUID):
        assert re.fullmatch(r"2\.25\.[1-9][0-9]*", uid) and len(uid) <= 64


def test_uid_root_and_standard_uids(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_rich_ct(tmp_path))
    ds.ReferencedStudySequence = Sequence()
    code = Dataset()
    code.CodeValue = "T-A0100"
    code.CodingSchemeDesignator = "SRT"
    code.CodingSchemeUID = "2.16.840.1.113883.6.96"
    code.CodeMeaning = "Brain"
    ds.AnatomicRegionSequence = Sequence([code])
    root = "1.2.826.0.1.3680043.10.999"

    out = Deidentifier(DeidentOptions(), uid_root=root, secret=SECRET)(ds)

    assert out.SOPInstanceUID.startswith(root + ".") and len(out.SOPInstanceUID) <= 64
    assert out.AnatomicRegionSequence[0].CodingSchemeUID == "2.16.840.1.113883.6.96"
    assert out.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    with pytest.raises(IdentityTransformError, match="uid_root"):
        Deidentifier(DeidentOptions(), uid_root="1.02.3", secret=SECRET)
    with pytest.raises(IdentityTransformError, match="secret"):
        Deidentifier(DeidentOptions(), secret=b"short")


def test_retain_uids_option(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_rich_ct(tmp_path))
    sop, study = ds.SOPInstanceUID, ds.StudyInstanceUID

    out = _deidentifier(DeidentOptions(retain_uids=True))(ds)

    assert (out.SOPInstanceUID, out.StudyInstanceUID) == (sop, study)
    assert out.file_meta.MediaStorageSOPInstanceUID == sop
    assert "113110" in _codes(out)


# --- dates and the other options ------------------------------------------------------------------


def test_dates_removed_by_default_and_kept_with_the_option(tmp_path: Path) -> None:
    path = _rich_ct(tmp_path)

    default = _deidentifier()(pydicom.dcmread(path))
    assert _empty(default, "StudyDate") and _empty(default, "StudyTime")  # Z
    assert default.ContentDate == "19000101"  # Z/D with a value: dummy, never breaks Type 1
    assert default.SeriesDate == "19000101"
    assert _empty(default, "PatientBirthDate")
    assert default.LongitudinalTemporalInformationModified == "REMOVED"
    assert "113106" not in _codes(default)

    kept = _deidentifier(DeidentOptions(retain_dates=True))(pydicom.dcmread(path))
    assert (kept.StudyDate, kept.StudyTime) == ("20240119", "072730")
    assert (kept.SeriesDate, kept.ContentDate) == ("20240119", "20240119")
    assert kept.AcquisitionDateTime == "20240119073000"
    assert _empty(kept, "PatientBirthDate")  # the option keeps event dates, not the birth date
    assert kept.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert "113106" in _codes(kept)


def test_device_characteristics_and_descriptor_options(tmp_path: Path) -> None:
    path = _rich_ct(tmp_path)

    default = _deidentifier()(pydicom.dcmread(path))
    assert default.StationName == "ANONYMIZED" and default.DeviceSerialNumber == "ANONYMIZED"
    assert "PatientAge" not in default and "StudyDescription" not in default
    assert _empty(default, "PatientSex")

    options = DeidentOptions(
        retain_device_identity=True, retain_patient_characteristics=True, retain_descriptions=True
    )
    out = _deidentifier(options)(pydicom.dcmread(path))
    assert (out.StationName, out.DeviceSerialNumber) == ("CTROOM_OC7", "SN-4455667")
    assert (out.PatientAge, out.PatientWeight, out.PatientSex) == ("062Y", 81, "O")
    # Descriptors are kept with the patient's identifiers masked; comments stay removed.
    assert out.StudyDescription == "CT HEAD for ***"
    assert out.SeriesDescription == "AXIAL 5MM"
    assert "ImageComments" not in out
    assert {"113105", "113108", "113109"} <= _codes(out)
    _assert_absent(_encoded(out), [PATIENT_ID, "Müller", "Welby^Marcus"])


def test_pseudonyms(tmp_path: Path) -> None:
    deidentifier = _deidentifier()
    a1, a2, b = (
        deidentifier(pydicom.dcmread(make_instance(tmp_path, patient_id=pid, patient_name=name)))
        for pid, name in (("P-111", "A^B"), ("P-111", "A^B"), ("P-222", "C^D"))
    )
    assert (a1.PatientName, a1.PatientID) == (a2.PatientName, a2.PatientID)
    assert a1.PatientID != b.PatientID and a1.PatientName != b.PatientName

    fixed = Deidentifier(
        DeidentOptions(pseudonym_name="TEACHING^CASE7", pseudonym_id="TC7"), secret=SECRET
    )(pydicom.dcmread(make_instance(tmp_path)))
    assert (fixed.PatientName, fixed.PatientID) == ("TEACHING^CASE7", "TC7")

    with pytest.raises(IdentityTransformError, match="pseudonym_name") as error:
        DeidentOptions(pseudonym_name="Zoë^Case")
    assert "Zoë" not in str(error.value)
    with pytest.raises(IdentityTransformError, match="pseudonym_id"):
        DeidentOptions(pseudonym_id="X" * 65)


def test_burned_in_annotation_is_reported_not_hidden(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_rich_ct(tmp_path))
    ds.BurnedInAnnotation = "YES"
    deidentifier = _deidentifier()
    clean = deidentifier(pydicom.dcmread(_rich_ct(tmp_path)))
    flagged = deidentifier(ds)

    assert flagged.BurnedInAnnotation == "YES"
    assert deidentifier.burned_in_uids == [flagged.SOPInstanceUID]
    assert clean.SOPInstanceUID not in deidentifier.burned_in_uids
    (warning,) = deidentifier.warnings
    assert warning.kind is WarningKind.BURNED_IN_ANNOTATION
    assert flagged.SOPInstanceUID in warning.message


def test_functional_groups_survive_and_existing_codes_are_kept(tmp_path: Path) -> None:
    ds = pydicom.dcmread(TEST_FILES_DIR / "liver_1frame.dcm")  # a Segmentation (group 5200)
    previous = Dataset()
    previous.CodeValue = "113101"
    previous.CodingSchemeDesignator = "DCM"
    previous.CodeMeaning = "Clean Pixel Data Option"
    ds.DeidentificationMethodCodeSequence = Sequence([previous])

    out = _deidentifier()(ds)

    assert "SharedFunctionalGroupsSequence" in out and "PerFrameFunctionalGroupsSequence" in out
    assert _codes(out) == {"113100", "113101"}


# --- peers: dciodvfy and dcmdump ------------------------------------------------------------------

_UID_IN_MESSAGE = re.compile(r"\b\d+(?:\.\d+)+\b|(?<=UID )\d+\b")


def _dciodvfy_errors(path: Path) -> set[str]:
    result = subprocess.run(
        [DCIODVFY, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    lines = (result.stdout + result.stderr).splitlines()
    # UIDs differ after remapping by design; compare the messages without them.
    return {_UID_IN_MESSAGE.sub("<UID>", line) for line in lines if line.startswith("Error")}


@pytest.mark.skipif(not Path(DCIODVFY).exists(), reason="dciodvfy (dicom3tools) is not installed")
@pytest.mark.parametrize("source", ["CT_small.dcm", "rich", "test-SR.dcm"])
def test_deidentified_instance_has_no_new_dciodvfy_errors(tmp_path: Path, source: str) -> None:
    path = _rich_ct(tmp_path) if source == "rich" else TEST_FILES_DIR / source
    out = tmp_path / "deidentified.dcm"
    _deidentifier()(pydicom.dcmread(path)).save_as(out, enforce_file_format=True)

    assert _dciodvfy_errors(out) - _dciodvfy_errors(path) == set()


@pytest.mark.skipif(not Path(DCMDUMP).exists(), reason="dcmdump (DCMTK) is not installed")
def test_dcmdump_reads_the_output(tmp_path: Path) -> None:
    out = tmp_path / "deidentified.dcm"
    _deidentifier()(pydicom.dcmread(_rich_ct(tmp_path))).save_as(out, enforce_file_format=True)
    result = subprocess.run(
        [DCMDUMP, "+U8", str(out)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "(0012,0062) CS [YES]" in result.stdout
    assert "ANONYMOUS^" in result.stdout


# --- re-identification ----------------------------------------------------------------------------

MOMENT = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC)


def _clock() -> datetime.datetime:
    return MOMENT


def test_reidentify_sets_values_and_records_the_old_ones(tmp_path: Path) -> None:
    path = _rich_ct(tmp_path)
    ds = pydicom.dcmread(path)
    transform = Reidentifier(
        NewIdentity(
            patient_name="Local^Name",
            patient_id="LOCAL-42",
            patient_birth_date="19610924",
            patient_sex="F",
            other_patient_ids=(OtherPatientID(PATIENT_ID, "St Elsewhere General"),),
            accession_number="LA-1",
        ),
        reason=REASON_COERCE,
        modifying_system="KIOSK DISC IMPORT",
        source_of_previous_values="St Elsewhere General",
        clock=_clock,
    )

    out = pydicom.dcmread(io.BytesIO(_encoded(transform(ds))))

    assert (out.PatientName, out.PatientID, out.PatientBirthDate) == (
        "Local^Name",
        "LOCAL-42",
        "19610924",
    )
    assert (out.PatientSex, out.AccessionNumber) == ("F", "LA-1")
    assert out.OtherPatientIDsSequence[0].PatientID == PATIENT_ID
    assert out.SpecificCharacterSet == "ISO_IR 100"  # ASCII values: no change needed
    (record,) = out.OriginalAttributesSequence
    assert record.AttributeModificationDateTime == "20240506070809.123456+0000"
    assert record.ModifyingSystem == "KIOSK DISC IMPORT"
    assert record.SourceOfPreviousValues == "St Elsewhere General"
    assert record.ReasonForTheAttributeModification == "COERCE"
    (old,) = record.ModifiedAttributesSequence
    assert old.PatientName == PATIENT_NAME  # decoded with the data set's Latin-1
    assert (old.PatientID, old.PatientBirthDate, old.PatientSex) == (PATIENT_ID, BIRTH_DATE, "O")
    assert old.AccessionNumber == ACCESSION
    assert old.OtherPatientIDsSequence[0].PatientID == "ALTMRN5566"
    assert old.IssuerOfPatientID == "St Elsewhere General"  # context of the old ID
    assert out.InstanceCoercionDateTime == record.AttributeModificationDateTime


def test_reidentify_appends_to_an_existing_sequence(tmp_path: Path) -> None:
    ds = pydicom.dcmread(make_instance(tmp_path, patient_id="FIRST"))
    first = Reidentifier(
        NewIdentity(patient_id="SECOND"), reason=REASON_COERCE, modifying_system="PACS"
    )
    second = Reidentifier(
        NewIdentity(patient_id="THIRD"), reason=REASON_CORRECT, modifying_system="KIOSK"
    )

    out = second(first(ds))

    history = out.OriginalAttributesSequence
    assert [item.ModifiedAttributesSequence[0].PatientID for item in history] == [
        "FIRST",
        "SECOND",
    ]
    assert [item.ReasonForTheAttributeModification for item in history] == ["COERCE", "CORRECT"]
    assert out.PatientID == "THIRD"
    # Nothing to change: no new record (an absent attribute counts as empty).
    assert len(second(out).OriginalAttributesSequence) == 2
    unchanged = Reidentifier(
        NewIdentity(patient_id="THIRD", issuer_of_patient_id="", other_patient_ids=()),
        reason=REASON_CORRECT,
        modifying_system="KIOSK",
    )
    assert len(unchanged(out).OriginalAttributesSequence) == 2


def test_reidentify_with_non_ascii_switches_to_utf8(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_rich_ct(tmp_path))
    transform = Reidentifier(
        NewIdentity(patient_name="Ærøskøbing^Åse", other_patient_ids=()),
        reason=REASON_CORRECT,
        modifying_system="KIOSK",
    )

    data = _encoded(transform(ds))
    out = pydicom.dcmread(io.BytesIO(data))

    assert out.SpecificCharacterSet == "ISO_IR 192"
    assert out.PatientName == "Ærøskøbing^Åse"
    assert "Ærøskøbing".encode() in data
    old = out.OriginalAttributesSequence[0].ModifiedAttributesSequence[0]
    assert old.PatientName == PATIENT_NAME  # re-encoded from Latin-1 to UTF-8, not garbled
    assert old.OtherPatientIDsSequence[0].PatientID == "ALTMRN5566"
    assert "OtherPatientIDsSequence" not in out  # an empty replacement removes it
    assert out.OperatorIdentificationSequence[0].InstitutionName == "St Elsewhere General"


@pytest.mark.skipif(not Path(DCIODVFY).exists(), reason="dciodvfy (dicom3tools) is not installed")
def test_reidentified_ct_has_no_new_dciodvfy_errors(tmp_path: Path) -> None:
    path = TEST_FILES_DIR / "CT_small.dcm"
    out = tmp_path / "reidentified.dcm"
    Reidentifier(
        NewIdentity(patient_name="Local^Name", patient_id="LOCAL-42", issuer_of_patient_id="HOSP"),
        reason=REASON_COERCE,
        modifying_system="KIOSK",
    )(pydicom.dcmread(path)).save_as(out, enforce_file_format=True)

    assert _dciodvfy_errors(out) - _dciodvfy_errors(path) == set()


@pytest.mark.parametrize(
    ("identity", "field", "value"),
    [
        (NewIdentity(patient_name="A" * 65), "PatientName", "A" * 65),
        (NewIdentity(patient_name="Doe\\John"), "PatientName", "Doe\\John"),
        (NewIdentity(patient_name="A^B^C^D^E^Fzz"), "PatientName", "Fzz"),
        (NewIdentity(patient_birth_date="2024-01-01"), "PatientBirthDate", "2024-01-01"),
        (NewIdentity(patient_birth_date="20240231"), "PatientBirthDate", "20240231"),
        (NewIdentity(patient_sex="X"), "PatientSex", "'X'"),
        (NewIdentity(patient_id="9" * 65), "PatientID", "9" * 65),
        (NewIdentity(issuer_of_patient_id="line\nbreak"), "IssuerOfPatientID", "break"),
        (NewIdentity(accession_number="ACC-12345678901234"), "AccessionNumber", "ACC-1234"),
        (
            NewIdentity(other_patient_ids=(OtherPatientID("OK", type_of_patient_id="NFC"),)),
            "TypeOfPatientID",
            "NFC",
        ),
    ],
)
def test_invalid_values_raise_a_typed_error_without_the_value(
    identity: NewIdentity, field: str, value: str
) -> None:
    with pytest.raises(IdentityTransformError) as error:
        Reidentifier(identity, reason=REASON_COERCE, modifying_system="KIOSK")
    assert isinstance(error.value, KioskError)
    assert field in str(error.value)
    assert value not in str(error.value)


@pytest.mark.parametrize(
    ("reason", "system", "field"),
    [("coerce", "KIOSK", "reason"), ("", "KIOSK", "reason"), ("COERCE", " ", "modifying_system")],
)
def test_invalid_settings_raise(reason: str, system: str, field: str) -> None:
    with pytest.raises(IdentityTransformError, match=field):
        Reidentifier(NewIdentity(patient_id="X1"), reason=reason, modifying_system=system)
