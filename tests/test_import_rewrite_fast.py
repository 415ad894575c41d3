"""The splice path of the identity rewrite (appliance/importer/rewrite_fast.py).

The splice path must write exactly the bytes the header path writes. Every test here rewrites
the same input both ways (the header path forced with the module's private switch) and compares
the files byte for byte and the results field by field; it also checks which path was taken, so
a splice path that always declined would fail. Inputs: pydicom's sample files (every
Little Endian one qualifies), the CT instances of bench/rewrite.py (same generator, 3 of them),
and instances edited at the byte level (UID padding, retired group lengths). Outputs are also
read by DCMTK dcmdump and checked with dicom3tools dciodvfy.
"""

from __future__ import annotations

import dataclasses
import datetime
import struct
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from appliance.importer import rewrite
from appliance.importer.dataset_layout import (
    DEFLATED,
    EXPLICIT_VR_BE,
    find_dataset_offset,
    scan_layout,
)
from appliance.importer.rewrite import ImportIdentity, RewriteResult, rewrite_instance
from appliance.importer.rewrite_batch import RewriteItem, rewrite_all
from appliance.importer.rewrite_errors import RewriteError
from appliance.importer.uid_plan import UidPlan
from appliance.media.reidentify import NewIdentity, OtherPatientID
from bench.receive import DataSpec, ensure_data_set
from tests.peers.data import TEST_FILES_DIR, make_instance, pydicom_sample_files

DCMDUMP = "/usr/bin/dcmdump"
DCIODVFY = "dciodvfy"
CHARSET_DIR = TEST_FILES_DIR.parent / "charset_files"
MOMENT = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC)

IDENTITIES: dict[str, NewIdentity | None] = {
    "all": NewIdentity(
        patient_name="LOCAL^PATIENT",
        patient_id="MRN-4711",
        issuer_of_patient_id="OUR HOSPITAL",
        patient_birth_date="19650304",
        patient_sex="F",
        other_patient_ids=(OtherPatientID("OLD-1", "THEIR HOSPITAL"),),
        accession_number="ACC-LOCAL-1",
        requested_procedure_id="RP-77",
        requested_procedure_description="CT THORAX",
    ),
    "patient_id": NewIdentity(patient_id="MRN-1"),
    "no_other_ids": NewIdentity(patient_id="MRN-2", other_patient_ids=()),
    "utf8": NewIdentity(patient_name="Ærøskøbing^Åse"),
    "none": None,
}

# UIDs encoded with VR UN: pydicom writes them back as UI, which the splice path leaves to the
# header path rather than imitate.
UN_UIDS = {"rtdose_rle.dcm", "rtdose_rle_1frame.dcm"}
SAMPLES = pydicom_sample_files() + sorted(CHARSET_DIR.glob("chr*.dcm"))


def _identity(values: NewIdentity | None) -> ImportIdentity | None:
    if values is None:
        return None
    return ImportIdentity(values, "KIOSK", "OTHER HOSPITAL", modified_at=MOMENT)


def _syntax(path: Path) -> str:
    meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
    return str(meta.get("TransferSyntaxUID", ImplicitVRLittleEndian))


def _run(src: Path, dst: Path, identity: ImportIdentity | None, syntax: str) -> RewriteResult | str:
    """The result, or the error message if the instance cannot be rewritten."""
    try:
        return rewrite_instance(
            src,
            dst,
            data_set_offset=None,
            transfer_syntax_uid=syntax,
            identity=identity,
            uid_plan=UidPlan.keep(),
            source_ae="KIOSK",
        )
    except RewriteError as exc:
        assert not dst.exists()
        return str(exc)


def _both_ways(
    src: Path, out: Path, identity: ImportIdentity | None, syntax: str | None = None
) -> tuple[RewriteResult | str, RewriteResult | str]:
    """(default run, header-path run); asserts they wrote the same bytes and report the same
    (but for the method and the output path)."""
    syntax = syntax or _syntax(src)
    out.mkdir(exist_ok=True)
    fast = _run(src, out / "fast.dcm", identity, syntax)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rewrite, "_SPLICE_PATH", False)
        slow = _run(src, out / "slow.dcm", identity, syntax)
    if isinstance(slow, str) or isinstance(fast, str):
        assert fast == slow
        return fast, slow
    assert slow.method != "splice"
    assert (out / "fast.dcm").read_bytes() == (out / "slow.dcm").read_bytes()
    assert dataclasses.replace(fast, path=slow.path, method=slow.method) == slow
    return fast, slow


def _splice_expected(src: Path, identity: ImportIdentity | None, header_method: str) -> bool:
    """Whether the splice path applies: the header path's cases, less Big Endian, UIDs not
    encoded as pydicom writes them, and a switch to UTF-8."""
    if header_method != "header" or _syntax(src) in (EXPLICIT_VR_BE, DEFLATED):
        return False
    if src.name in UN_UIDS:
        return False
    ds = pydicom.dcmread(src, stop_before_pixels=True)
    return identity is None or not identity.reidentifier.switches_to_utf8(ds)


def _dcmdump(path: Path) -> tuple[int, set[str]]:
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


def _dciodvfy_errors(path: Path) -> set[str]:
    result = subprocess.run(
        [DCIODVFY, str(path)],
        check=False,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
    )
    lines = (result.stdout + result.stderr).splitlines()
    return {line for line in lines if line.startswith("Error")}


# -- pydicom's sample files ----------------------------------------------------------------------


@pytest.mark.parametrize("which", list(IDENTITIES))
@pytest.mark.parametrize("src", SAMPLES, ids=lambda p: p.name)
def test_same_bytes_as_the_header_path(tmp_path: Path, src: Path, which: str) -> None:
    identity = _identity(IDENTITIES[which])
    fast, slow = _both_ways(src, tmp_path, identity)
    if isinstance(slow, str):
        assert src.name.startswith("chrSQEncoding")  # no SOP UIDs: refused both ways
        return
    assert isinstance(fast, RewriteResult)
    assert (fast.method == "splice") == _splice_expected(src, identity, slow.method)


@pytest.mark.parametrize(
    "src",
    [p for p in SAMPLES if p.name in {"CT_small.dcm", "MR_small_implicit.dcm", "chrH32.dcm"}],
    ids=lambda p: p.name,
)
def test_a_second_coercion_appends_to_original_attributes(tmp_path: Path, src: Path) -> None:
    """Input that already has Original Attributes Sequence and Instance Coercion DateTime (the
    output of a first rewrite): both are decoded, replaced, and come out the same both ways."""
    first = _identity(IDENTITIES["all"])
    once = tmp_path / "once.dcm"
    assert isinstance(_run(src, once, first, _syntax(src)), RewriteResult)
    later = ImportIdentity(
        NewIdentity(patient_id="MRN-9", issuer_of_patient_id="", other_patient_ids=()),
        "KIOSK",
        "",
        modified_at=MOMENT + datetime.timedelta(days=1),
    )
    fast, _ = _both_ways(once, tmp_path / "again", later)
    assert isinstance(fast, RewriteResult) and fast.method == "splice"
    after = pydicom.dcmread(tmp_path / "again" / "fast.dcm")
    assert len(after.OriginalAttributesSequence) == 2
    assert after.OriginalAttributesSequence[1].ModifiedAttributesSequence[0].PatientID == (
        "MRN-4711"
    )
    assert "OtherPatientIDsSequence" not in after
    assert after.InstanceCoercionDateTime.startswith("20240507")


# -- the benchmark's CT instances -----------------------------------------------------------------


def test_the_benchmark_ct_instances(tmp_path: Path) -> None:
    data = ensure_data_set(DataSpec("ct", 3, 512, 512), tmp_path / "data")
    identity = ImportIdentity(
        NewIdentity(patient_name="LOCAL^BENCH", patient_id="MRN-1", issuer_of_patient_id="HOSP"),
        "KIOSK",
        "OTHER HOSPITAL",
        modified_at=MOMENT,
    )
    sources = sorted(data.directory.glob("*.dcm"))
    assert len(sources) == 3
    for n, src in enumerate(sources):
        out = tmp_path / f"out{n}"
        fast, _ = _both_ways(src, out, identity)
        assert isinstance(fast, RewriteResult) and fast.method == "splice"
        assert fast.changed == (
            "InstanceCoercionDateTime",
            "IssuerOfPatientID",
            "OriginalAttributesSequence",
            "PatientID",
            "PatientName",
        )
        written = (out / "fast.dcm").read_bytes()
        data_bytes = src.read_bytes()
        assert written.endswith(data_bytes[data_bytes.index(b"\xe0\x7f\x10\x00OW") :])
        status, warnings = _dcmdump(out / "fast.dcm")
        assert status == 0 and warnings == set()
        after = pydicom.dcmread(out / "fast.dcm")
        assert (after.PatientName, after.PatientID) == ("LOCAL^BENCH", "MRN-1")
    # The instances share one patient: the change was worked out once and reused.
    assert len(identity.memo) == 1
    assert _dciodvfy_errors(tmp_path / "out0" / "fast.dcm") - _dciodvfy_errors(sources[0]) == set()


# -- byte-level variants ---------------------------------------------------------------------------


def _set_study_uid_bytes(path: Path, raw: bytes) -> None:
    """Replace the Study Instance UID value (12 bytes long) with `raw` (12 bytes)."""
    data = bytearray(path.read_bytes())
    at = data.index(b"1.2.3.4.5.6\x00")
    data[at : at + 12] = raw
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("raw", "spliced"),
    [
        (b"1.2.3.4.5.6\x00", True),  # as pydicom writes it
        (b"1.2.3.4.5.67", True),  # even length, no padding
        (b"1.2.3.4.5.6 ", False),  # space padding: pydicom writes a NUL instead
        (b"1.2.3.4.5\x00\x00\x00", False),  # more NULs than needed: pydicom writes one
        (b"1.2.3.4.5.6\n", False),  # pydicom's UID strips the newline
        (b" 1.2.3.4.5.6", False),  # ...and the leading space
    ],
    ids=["nul", "even", "space", "nuls", "newline", "leading_space"],
)
@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_uid_padding(tmp_path: Path, raw: bytes, spliced: bool, syntax: str) -> None:
    """The header path re-encodes the UIDs it checks; the splice path copies them only when that
    gives the same bytes."""
    src = make_instance(tmp_path, study_uid="1.2.3.4.5.6")
    if syntax == ImplicitVRLittleEndian:
        ds = pydicom.dcmread(src)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(src, enforce_file_format=True)
    _set_study_uid_bytes(src, raw)
    fast, slow = _both_ways(src, tmp_path / "out", _identity(IDENTITIES["all"]), syntax)
    assert isinstance(fast, RewriteResult) and isinstance(slow, RewriteResult)
    assert (fast.method == "splice") is spliced
    assert fast.study_instance_uid == raw.decode().strip("\x00 \n")


def _with_group_lengths(src: Path, syntax: str) -> Path:
    """`src` with (0008,0000), (0010,0000) and (7FE0,0000) inserted (pydicom cannot write
    them: it drops retired group lengths)."""
    implicit = syntax == ImplicitVRLittleEndian
    data = src.read_bytes()
    layout = scan_layout(data, find_dataset_offset(data, src.name), syntax, src.name)
    pieces = []
    done: set[int] = set()
    last = layout.dataset_offset
    for element in layout.elements:
        group = element.tag >> 16
        if group in (0x0008, 0x0010, 0x7FE0) and group not in done:
            members = [e for e in layout.elements if e.tag >> 16 == group]
            length = sum(e.end - e.start for e in members)
            pieces.append(data[last : element.start])
            pieces.append(_encode(group << 16, b"UL", struct.pack("<I", length), implicit))
            last = element.start
            done.add(group)
    pieces.append(data[last:])
    path = src.with_name("group_lengths.dcm")
    path.write_bytes(data[: layout.dataset_offset] + b"".join(pieces))
    return path


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_retired_group_lengths(tmp_path: Path, syntax: str) -> None:
    """Group lengths before group 0401 are dropped (the header path does the same), the one of
    the pixel data group is copied with the tail."""
    src = make_instance(tmp_path)
    if syntax == ImplicitVRLittleEndian:
        ds = pydicom.dcmread(src)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(src, enforce_file_format=True)
    with_lengths = _with_group_lengths(src, syntax)
    assert 0x00100000 in pydicom.dcmread(with_lengths)
    fast, _ = _both_ways(with_lengths, tmp_path / "out", _identity(IDENTITIES["all"]), syntax)
    assert isinstance(fast, RewriteResult) and fast.method == "splice"
    after = pydicom.dcmread(tmp_path / "out" / "fast.dcm")
    assert 0x00080000 not in after and 0x00100000 not in after
    assert 0x7FE00000 in after
    assert after.PatientID == "MRN-4711"
    assert _dcmdump(tmp_path / "out" / "fast.dcm")[0] == 0


def test_pixel_representation_re_encoded_as_the_header_path_does(tmp_path: Path) -> None:
    """pydicom decodes Pixel Representation whenever it decodes or sets a sequence, so the
    header path writes it anew: encoded with VR UN on the disc, it comes out as US. The splice
    path decodes it too and writes the same."""
    src = make_instance(tmp_path)
    data = src.read_bytes()
    at = data.index(b"\x28\x00\x03\x01US\x02\x00")
    value = data[at + 8 : at + 10]
    un = b"\x28\x00\x03\x01UN\x00\x00" + struct.pack("<I", 2) + value
    src.write_bytes(data[:at] + un + data[at + 10 :])
    fast, _ = _both_ways(src, tmp_path / "out", _identity(IDENTITIES["patient_id"]))
    assert isinstance(fast, RewriteResult) and fast.method == "splice"
    assert b"\x28\x00\x03\x01US\x02\x00" in (tmp_path / "out" / "fast.dcm").read_bytes()


def _encode(tag: int, vr: bytes, value: bytes, implicit: bool) -> bytes:
    """One element, by hand (to write what pydicom would not)."""
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + struct.pack("<I", len(value)) + value
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return head + vr + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return head + vr + struct.pack("<H", len(value)) + value


def _insert_elements(src: Path, syntax: str, elements: list[tuple[int, bytes]]) -> None:
    """Insert encoded elements at their sorted position in the data set of `src`."""
    data = src.read_bytes()
    layout = scan_layout(data, find_dataset_offset(data, src.name), syntax, src.name)
    for tag, encoded in sorted(elements, reverse=True):
        at = next((e.start for e in layout.elements if e.tag > tag), len(data))
        data = data[:at] + encoded + data[at:]
    src.write_bytes(data)


def _undefined_length_sequence(implicit: bool) -> bytes:
    """Referenced Image Sequence of undefined length, one undefined-length item that holds a
    retired group length (pydicom drops it when it writes the sequence again)."""
    item = (
        _encode(0x00080000, b"UL", struct.pack("<I", 34), implicit)
        + _encode(0x00081150, b"UI", b"1.2.840.10008.5.1.4.1.1.2\x00", implicit)
        + _encode(0x00081155, b"UI", b"1.2.3.4\x00", implicit)
    )
    item += b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"  # Item Delimitation Item
    head = struct.pack("<HH", 0x0008, 0x1140)
    head += struct.pack("<I", 0xFFFFFFFF) if implicit else b"SQ\x00\x00\xff\xff\xff\xff"
    return (
        head
        + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"  # Item, undefined length
        + item
        + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"  # Sequence Delimitation Item
    )


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_elements_pydicom_decodes_on_reading(tmp_path: Path, syntax: str) -> None:
    """pydicom reads sequences of undefined length and some empty values into decoded elements,
    so the header path writes them anew, even unchanged: the splice path writes them the same
    (here: a group length inside an item is dropped; an empty Patient's Size with VR UN comes
    out as DS)."""
    implicit = syntax == ImplicitVRLittleEndian
    src = make_instance(tmp_path)
    if implicit:
        ds = pydicom.dcmread(src)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(src, enforce_file_format=True)
    _insert_elements(
        src,
        syntax,
        [
            (0x00081140, _undefined_length_sequence(implicit)),
            (0x00101020, _encode(0x00101020, b"UN", b"", implicit)),
            (0x00101030, _encode(0x00101030, b"DS", b"", implicit)),
        ],
    )
    assert pydicom.dcmread(src).ReferencedImageSequence[0].ReferencedSOPInstanceUID == "1.2.3.4"
    fast, _ = _both_ways(src, tmp_path / "out", _identity(IDENTITIES["patient_id"]), syntax)
    assert isinstance(fast, RewriteResult) and fast.method == "splice"
    group_length = _encode(0x00080000, b"UL", struct.pack("<I", 34), implicit)
    assert group_length in src.read_bytes()
    written = (tmp_path / "out" / "fast.dcm").read_bytes()
    assert group_length not in written
    if not implicit:
        assert b"\x10\x00\x20\x10DS\x00\x00" in written
    assert _dcmdump(tmp_path / "out" / "fast.dcm")[0] == 0


def test_a_batch_on_two_threads_shares_the_memory(tmp_path: Path) -> None:
    """`rewrite_all` with two workers: instances of one patient share an identity (and its
    memory of plans) across the threads; each output is the header path's bytes."""
    sources = [make_instance(tmp_path, instance_number=n) for n in range(8)]
    identity = _identity(IDENTITIES["all"])
    assert identity is not None
    out = tmp_path / "out"
    out.mkdir()
    items = [
        RewriteItem(p, out / f"{n}.dcm", None, ExplicitVRLittleEndian, identity)
        for n, p in enumerate(sources)
    ]
    result = rewrite_all(items, uid_plan=UidPlan.keep(), source_ae="KIOSK", workers=2)
    assert result.failed == () and {r.method for r in result.written} == {"splice"}
    assert len(identity.memo) == 1
    for n, src in enumerate(sources):
        slow = _both_ways(src, tmp_path / f"slow{n}", identity)[1]
        assert isinstance(slow, RewriteResult)
        assert (out / f"{n}.dcm").read_bytes() == (tmp_path / f"slow{n}" / "slow.dcm").read_bytes()
