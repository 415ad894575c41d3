"""The tolerant disc reader: ISO images and folders in, a catalog out, nothing written outside.

Discs are built from pydicom's sample files with DCMTK `dcmmkdir` and `xorriso -as mkisofs`
(see tests/peers/import_discs.py), then damaged the way real discs are. What the reader finds
is compared with pydicom's own reading of the source files and DCMTK's dump of the DICOMDIR.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pycdlib
import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from appliance.importer.catalog import scan
from appliance.importer.errors import DamagedFileError, StagingStoppedError
from appliance.importer.header import inspect_header, locate_dataset, read_header
from appliance.importer.limits import ReadLimits
from appliance.importer.model import Catalog
from appliance.importer.names import UnsafeNameError, safe_relative_path, shown
from appliance.importer.reading import scan_source
from appliance.importer.source import (
    DiscSource,
    EntryKind,
    SourceEntry,
    SourceKind,
    open_source,
)
from appliance.importer.staging import StagingProgress, stage
from appliance.media.secure import SecureFileReader
from tests.peers import import_discs as discs
from tests.peers.data import dataset_offset, make_instance

LIMITS = ReadLimits()


def _listing(root: Path, *, exclude: Path) -> set[str]:
    """Every path under root (links not followed), except under `exclude`."""
    found = set()
    for folder, dirs, files in os.walk(root):
        if Path(folder) == exclude or exclude in Path(folder).parents:
            continue
        for name in dirs + files:
            if Path(folder, name) != exclude:
                found.add(os.path.relpath(os.path.join(folder, name), root))
    return found


def _reasons(catalog: Catalog) -> dict[str, str]:
    return {item.path: item.reason for item in catalog.skipped}


# --- a clean disc -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_fileset(tmp_path_factory: pytest.TempPathFactory) -> discs.FileSet:
    root = tmp_path_factory.mktemp("clean") / "disc"
    fileset = discs.layout(root)
    discs.run_dcmmkdir(root)
    return fileset


@pytest.mark.parametrize("rock_ridge", [True, False], ids=["rr-joliet", "iso9660-level1"])
def test_clean_disc_matches_pydicom_and_dcmdump(
    clean_fileset: discs.FileSet, tmp_path: Path, rock_ridge: bool
) -> None:
    image = discs.make_iso(clean_fileset.root, tmp_path / "disc.iso", rock_ridge=rock_ridge)
    catalog = scan_source(image, tmp_path / "work", LIMITS)

    expected = {path: discs.sop_uid(src) for path, src in clean_fileset.files.items()}
    found = {i.disc_path: i.sop_instance_uid for i in catalog.instances}
    assert found == expected
    file_ids = {fid.replace("\\", "/") for fid in discs.dicomdir_file_ids(clean_fileset.dicomdir)}
    assert file_ids == set(found)
    assert catalog.skipped == [] and catalog.non_dicom == 0 and catalog.duplicates == []
    [dicomdir] = catalog.dicomdirs
    assert (dicomdir.path, dicomdir.referenced, dicomdir.missing, dicomdir.problems) == (
        "DICOMDIR",
        10,
        [],
        [],
    )
    assert catalog.unlisted == []
    for inst in catalog.instances:
        source = clean_fileset.files[inst.disc_path]
        ds = pydicom.dcmread(source, stop_before_pixels=True)
        assert inst.study_instance_uid == ds.StudyInstanceUID
        assert inst.series_instance_uid == ds.SeriesInstanceUID
        assert inst.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
        assert inst.dataset_offset == dataset_offset(source)
        assert inst.has_preamble and not inst.encrypted
        assert Path(inst.path).read_bytes() == source.read_bytes()

    summary = catalog.summary()
    assert summary["totals"]["patients"] == 3
    assert summary["totals"]["instances"] == 10
    by_id = {p["id"]: p for p in summary["patients"]}
    assert set(by_id) == {"1CT1", "4MR1", "ID1"}
    assert len(by_id["ID1"]["studies"]) == 1
    [sc_study] = [s for s in summary["studies"] if s["uid"] == by_id["ID1"]["studies"][0]]
    assert (sc_study["instances"], sc_study["series"], sc_study["modalities"]) == (8, 1, ["OT"])
    assert summary["source"]["label"] == "IMPORT"
    assert summary["source"]["kind"] == "image"


def test_fingerprint_is_stable_and_tells_discs_apart(
    clean_fileset: discs.FileSet, tmp_path: Path
) -> None:
    first = discs.make_iso(clean_fileset.root, tmp_path / "a.iso", volid="DISC_A")
    second = discs.make_iso(clean_fileset.root, tmp_path / "b.iso", volid="DISC_B")
    with open_source(first) as a1, open_source(first) as a2, open_source(second) as b:
        assert a1.fingerprint == a2.fingerprint != b.fingerprint
        assert (a1.label, b.label) == ("DISC_A", "DISC_B")
        assert a1.kind is SourceKind.IMAGE


def test_catalog_save_load_round_trip(clean_fileset: discs.FileSet, tmp_path: Path) -> None:
    catalog = scan_source(clean_fileset.root, tmp_path / "work", LIMITS)
    # 10,000 instances: the size an import job keeps in its staging folder.
    catalog.instances = [
        dataclasses.replace(inst, sop_instance_uid=f"1.2.3.{n}")
        for n in range(1000)
        for inst in catalog.instances
    ]
    path = tmp_path / "catalog.json"
    catalog.save(path)
    loaded = Catalog.load(path)
    assert loaded == catalog
    assert loaded.summary() == catalog.summary()


# --- a hostile disc -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """One Rock Ridge + Joliet image carrying every kind of damage at once."""
    base = tmp_path_factory.mktemp("hostile")
    root = base / "disc"
    fileset = discs.layout(root)
    d = root / "DICOM"
    bare_src = discs.new_uid_copy(discs.sample("CT_small.dcm"), base / "bare-source.dcm")
    discs.run_dcmmkdir(root)
    # Damage after indexing, so the DICOMDIR lists what a real disc's would.
    redirected = [f.replace("\\", "/") for f in discs.dicomdir_file_ids(root / "DICOMDIR")[:2]]
    assert "DICOM/SC000008" not in redirected
    hits = discs.break_dicomdir_offsets(root / "DICOMDIR")
    discs.rewrite_file_ids(
        root / "DICOMDIR", {0: ["..", "..", "ETC", "PASSWD"], 1: ["", "ETC", "PASSWD"]}
    )
    (d / "SC000008").unlink()  # listed in the DICOMDIR, missing on the disc
    extra = discs.new_uid_copy(discs.sample("CT_small.dcm"), d / "EXTRA001")  # not listed
    shutil.copyfile(discs.sample(discs.DUPLICATE_OF_MR), d / "DUP00001")
    ct = discs.sample("CT_small.dcm")
    discs.truncated_copy(ct, d / "TRUNC001", ct.stat().st_size // 2)
    discs.truncated_copy(ct, d / "TRUNC002", 700)
    discs.patch_length(discs.sample("MR_small.dcm"), d / "LONGLEN1", 0x00100010, b"PN", 0xFFF0)
    discs.patch_length(discs.sample("MR_small.dcm"), d / "LONGLEN2", 0x7FE00010, b"OW", 0x7FFFFFF0)
    discs.decompression_bomb(d / "BOMB0001")
    discs.bare_dataset(bare_src, d / "BARE0001")
    discs.bare_dataset(discs.sample("rtdose_1frame.dcm"), d / "BARE0002")
    secure_plain = discs.new_uid_copy(discs.sample("MR_small.dcm"), base / "secure-plain.dcm")
    discs.openssl_encrypt(secure_plain, d / "SECURE01")
    os.symlink("/etc/passwd", d / "LINK0001")
    os.symlink("CT000001", d / "LINK0002")
    non_dicom = discs.add_non_dicom(root)
    image = discs.make_iso(root, base / "hostile.iso")
    yield {
        "image": image,
        "fileset": fileset,
        "offsets_broken": hits,
        "redirected": redirected,
        "extra": extra,
        "bare_src": bare_src,
        "secure_plain": secure_plain,
        "non_dicom": non_dicom,
    }


def test_hostile_disc_outcome(hostile: dict[str, object], tmp_path: Path) -> None:
    assert isinstance(hostile["offsets_broken"], int) and hostile["offsets_broken"] > 10
    before = _listing(tmp_path, exclude=tmp_path / "work")
    catalog = scan_source(hostile["image"], tmp_path / "work", LIMITS)  # type: ignore[arg-type]
    assert _listing(tmp_path, exclude=tmp_path / "work") == before

    fileset = hostile["fileset"]
    assert isinstance(fileset, discs.FileSet)
    expected = {p: discs.sop_uid(s) for p, s in fileset.files.items() if p != "DICOM/SC000008"}
    # DUP00001 sorts first, so it is the copy kept; MR000001 is the reported duplicate.
    expected["DICOM/DUP00001"] = expected.pop("DICOM/MR000001")
    expected["DICOM/EXTRA001"] = discs.sop_uid(hostile["extra"])  # type: ignore[arg-type]
    expected["DICOM/BARE0001"] = discs.sop_uid(hostile["bare_src"])  # type: ignore[arg-type]
    expected["DICOM/BARE0002"] = discs.sop_uid(discs.sample("rtdose_1frame.dcm"))
    assert {i.disc_path: i.sop_instance_uid for i in catalog.instances} == expected

    bare = {i.disc_path: i for i in catalog.instances if not i.has_preamble}
    assert set(bare) == {"DICOM/BARE0001", "DICOM/BARE0002"}
    assert bare["DICOM/BARE0001"].transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert bare["DICOM/BARE0002"].transfer_syntax_uid == "1.2.840.10008.1.2"
    assert {b.dataset_offset for b in bare.values()} == {0}

    reasons = _reasons(catalog)
    assert set(reasons) == {
        "DICOM/LINK0001",
        "DICOM/LINK0002",
        "DICOM/TRUNC001",
        "DICOM/TRUNC002",
        "DICOM/LONGLEN1",
        "DICOM/LONGLEN2",
        "DICOM/BOMB0001",
    }
    assert reasons["DICOM/LINK0001"] == "is a symbolic link (not followed) (-> /etc/passwd)"
    assert reasons["DICOM/LINK0002"] == "is a symbolic link (not followed) (-> CT000001)"
    assert reasons["DICOM/TRUNC001"].startswith("has truncated pixel data (32768 bytes declared")
    assert "declared length goes beyond the end of the file" in reasons["DICOM/TRUNC002"]
    assert "declared length goes beyond the end of the file" in reasons["DICOM/LONGLEN1"]
    assert reasons["DICOM/LONGLEN2"].startswith("has truncated pixel data (2147483632 bytes")
    assert "decompression bomb" in reasons["DICOM/BOMB0001"]

    assert catalog.non_dicom == 3
    assert catalog.needs_password == ["DICOM/SECURE01"]
    assert [(d.path, d.sop_instance_uid, d.kept_path) for d in catalog.duplicates] == [
        ("DICOM/MR000001", expected["DICOM/DUP00001"], "DICOM/DUP00001")
    ]

    [dicomdir] = catalog.dicomdirs
    assert dicomdir.missing == ["DICOM/SC000008"]
    assert sorted((p.path, p.reason) for p in dicomdir.problems) == [
        ("..\\..\\ETC\\PASSWD", "has a Referenced File ID leading outside the disc (not followed)"),
        ("\\ETC\\PASSWD", "has an absolute Referenced File ID (not followed)"),
    ]
    # Files on the disc no DICOMDIR record lists: added ones, and the two whose records were
    # redirected outside.
    assert sorted(catalog.unlisted) == sorted(
        ["DICOM/BARE0001", "DICOM/BARE0002", "DICOM/DUP00001", "DICOM/EXTRA001"]
        + hostile["redirected"]  # type: ignore[operator]
    )
    summary = catalog.summary()["totals"]
    assert summary["instances"] == 12 and summary["needs_password"] == 1
    assert summary["non_dicom"] == 3 and summary["skipped"] == 7


def test_hostile_disc_secure_file_opens_with_password(
    hostile: dict[str, object], tmp_path: Path
) -> None:
    work = tmp_path / "work"
    scan_source(hostile["image"], work, LIMITS)  # type: ignore[arg-type]
    reader = SecureFileReader(passwords=[discs.PASSWORD])
    catalog = scan(work / "disc", limits=LIMITS, credentials=reader)
    [secure] = [i for i in catalog.instances if i.encrypted]
    assert secure.disc_path == "DICOM/SECURE01"
    assert secure.sop_instance_uid == discs.sop_uid(hostile["secure_plain"])  # type: ignore[arg-type]
    assert Path(secure.path) == work / "decrypted" / "DICOM" / "SECURE01"
    assert Path(secure.path).read_bytes() == hostile["secure_plain"].read_bytes()  # type: ignore[attr-defined]
    assert catalog.needs_password == []
    assert sorted(os.listdir(work / "decrypted" / "DICOM")) == ["SECURE01"]


def test_hostile_disc_wrong_password_is_a_per_file_error(
    hostile: dict[str, object], tmp_path: Path
) -> None:
    work = tmp_path / "work"
    scan_source(hostile["image"], work, LIMITS)  # type: ignore[arg-type]
    catalog = scan(work / "disc", limits=LIMITS, credentials=SecureFileReader(passwords=["nope"]))
    reason = _reasons(catalog)["DICOM/SECURE01"]
    assert reason.startswith("Secure DICOM File cannot be opened: ")
    assert "password" in reason.lower()
    assert not any(i.encrypted for i in catalog.instances)
    assert len(catalog.instances) == 12  # the rest of the disc is unaffected
    assert os.listdir(work / "decrypted" / "DICOM") == []  # nothing half-decrypted


# --- names, extensions, no DICOMDIR -------------------------------------------------------------


def test_lower_case_disc_matches_upper_case_dicomdir(tmp_path: Path) -> None:
    root = tmp_path / "disc"
    fileset = discs.layout(root)
    discs.run_dcmmkdir(root)
    (root / "DICOM").rename(root / "dicom")
    for name in os.listdir(root / "dicom"):
        (root / "dicom" / name).rename(root / "dicom" / name.lower())
    image = discs.make_iso(root, tmp_path / "lower.iso")
    catalog = scan_source(image, tmp_path / "work", LIMITS)
    assert {i.disc_path for i in catalog.instances} == {p.lower() for p in fileset.files}
    [dicomdir] = catalog.dicomdirs
    assert (dicomdir.missing, catalog.unlisted) == ([], [])


def test_no_dicomdir_any_names_and_extensions(tmp_path: Path) -> None:
    root = tmp_path / "disc"
    names = ["images/ct.dcm", "images/MR.DCM", "images/deep/er/sc1.Dcm", "sc2", "IMG 3.dicom"]
    sources = ["CT_small.dcm", "MR_small.dcm", "SC_rgb_jpeg_dcmtk.dcm"]
    sources += ["SC_rgb_small_odd.dcm", "SC_rgb_gdcm_KY.dcm"]
    for name, source in zip(names, sources, strict=True):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(discs.sample(source), root / name)
    (root / "readme.txt").write_text("Images of your examination\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    image = discs.make_iso(root, tmp_path / "names.iso")
    catalog = scan_source(image, tmp_path / "work", LIMITS)
    found = {i.disc_path: i.sop_instance_uid for i in catalog.instances}
    assert found == {n: discs.sop_uid(discs.sample(s)) for n, s in zip(names, sources, strict=True)}
    assert (catalog.non_dicom, catalog.dicomdirs, catalog.skipped) == (2, [], [])


def test_plain_iso9660_names_lose_versions_and_dots(tmp_path: Path) -> None:
    root = tmp_path / "disc"
    (root / "DICOM").mkdir(parents=True)
    shutil.copyfile(discs.sample("CT_small.dcm"), root / "DICOM" / "IM1")
    shutil.copyfile(discs.sample("MR_small.dcm"), root / "DICOM" / "IM2.DCM")
    image = discs.make_iso(root, tmp_path / "l1.iso", rock_ridge=False)
    with open_source(image) as source:
        paths = {e.path for e in source.entries()}
    assert paths == {"DICOM/IM1", "DICOM/IM2.DCM"}


# --- folders ------------------------------------------------------------------------------------


def test_folder_source_skips_links_fifos_and_writes_nothing_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = make_instance(outside, patient_id="OUTSIDE").rename(outside / "secret.dcm")
    stick = tmp_path / "stick"
    (stick / "DICOM").mkdir(parents=True)
    shutil.copyfile(discs.sample("CT_small.dcm"), stick / "DICOM" / "IM000001")
    os.symlink(secret, stick / "DICOM" / "IM000002")
    os.symlink(outside, stick / "DICOM" / "LINKDIR")
    os.mkfifo(stick / "DICOM" / "PIPE")
    before = _listing(tmp_path, exclude=tmp_path / "work")
    catalog = scan_source(stick, tmp_path / "work", LIMITS)
    assert _listing(tmp_path, exclude=tmp_path / "work") == before
    assert [i.disc_path for i in catalog.instances] == ["DICOM/IM000001"]
    assert _reasons(catalog) == {
        "DICOM/IM000002": f"is a symbolic link (not followed) (-> {secret})",
        "DICOM/LINKDIR": f"is a symbolic link (not followed) (-> {outside})",
        "DICOM/PIPE": "is a FIFO",
    }
    assert catalog.source["kind"] == "folder"
    staged = _listing(tmp_path / "work", exclude=tmp_path / "none")
    assert staged == {"disc", "disc/DICOM", "disc/DICOM/IM000001"}


class _ListedSource(DiscSource):
    """A source whose names are whatever a hostile disc could hold (bytes from memory)."""

    def __init__(self, files: dict[tuple[str, ...], bytes]) -> None:
        self.kind = SourceKind.IMAGE
        self.label = "HOSTILE"
        self._files = files

    @property
    def fingerprint(self) -> str:
        return "0" * 64

    def entries(self) -> Iterator[SourceEntry]:
        for n, (parts, data) in enumerate(self._files.items()):
            yield SourceEntry(parts, len(data), EntryKind.FILE, n, None, data)

    def open(self, entry: SourceEntry) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(entry.handle))

    def close(self) -> None:
        pass


def test_staging_refuses_names_that_escape(tmp_path: Path) -> None:
    dicom = discs.sample("CT_small.dcm").read_bytes()
    source = _ListedSource(
        {
            ("..", "escaped"): dicom,
            ("DICOM", "..", "..", "escaped2"): dicom,
            ("/etc", "passwd"): dicom,
            ("DICOM", "a/../../b"): dicom,
            ("DICOM", "nul\x00name"): dicom,
            ("DICOM", "tab\tname"): dicom,
            ("DICOM", "x" * 300): dicom,
            ("DICOM", "GOOD"): dicom,
            ("DICOM", "GOOD", "UNDER"): dicom,  # a file and a folder of the same name
        }
    )
    target = tmp_path / "work" / "disc"
    before = _listing(tmp_path, exclude=tmp_path / "work")
    report = stage(source, target, limits=LIMITS)
    assert _listing(tmp_path, exclude=tmp_path / "work") == before
    assert report.staged_files == 1
    assert _listing(tmp_path / "work", exclude=tmp_path / "none") == {
        "disc",
        "disc/DICOM",
        "disc/DICOM/GOOD",
    }
    reasons = {s.path: s.reason for s in report.skipped}
    assert reasons == {
        "../escaped": "unsafe name: has a '..' path component",
        "DICOM/../../escaped2": "unsafe name: has a '..' path component",
        "/etc/passwd": "unsafe name: has a path separator inside a name",
        "DICOM/a/../../b": "unsafe name: has a path separator inside a name",
        "DICOM/nul?name": "unsafe name: has control characters in its name",
        "DICOM/tab?name": "unsafe name: has control characters in its name",
        shown("DICOM/" + "x" * 300): "unsafe name: has a name longer than 255 bytes",
        "DICOM/GOOD/UNDER": "its folder has the name of a file on the disc",
    }


@pytest.mark.parametrize(
    "parts", [(), ("",), (".",), ("a", ".."), ("a/b",), ("a\\b",), ("x\x7f",), ("d",) * 33]
)
def test_safe_relative_path_refuses(parts: tuple[str, ...]) -> None:
    with pytest.raises(UnsafeNameError):
        safe_relative_path(parts)


def test_staging_limits_progress_and_stop(clean_fileset: discs.FileSet, tmp_path: Path) -> None:
    image = discs.make_iso(clean_fileset.root, tmp_path / "disc.iso")
    small = ReadLimits(max_file_bytes=20_000)
    seen: list[StagingProgress] = []
    with open_source(image) as source:
        report = stage(source, tmp_path / "a", limits=small, on_progress=seen.append)
    big = {p for p, s in clean_fileset.files.items() if s.stat().st_size > 20_000}
    big.add("DICOMDIR") if clean_fileset.dicomdir.stat().st_size > 20_000 else None
    assert {s.path for s in report.skipped} == big
    assert all(s.reason.endswith("larger than the limit of 20000") for s in report.skipped)
    assert seen[-1].files_done == seen[-1].files_total == report.files_total == 11
    assert seen[-1].bytes_done == seen[-1].bytes_total - sum(
        clean_fileset.root.joinpath(p).stat().st_size for p in big
    )

    calls = 0

    def stop_after_three() -> bool:
        nonlocal calls
        calls += 1
        return calls > 3

    with open_source(image) as source, pytest.raises(StagingStoppedError):
        stage(source, tmp_path / "b", limits=LIMITS, should_stop=stop_after_three)
    leftovers = [n for _, _, files in os.walk(tmp_path / "b") for n in files if "stage-" in n]
    assert leftovers == []


# --- the header reader --------------------------------------------------------------------------


def test_read_header_and_locate(tmp_path: Path) -> None:
    ct = discs.sample("CT_small.dcm")
    ds = read_header(ct)
    assert "PixelData" not in ds
    assert ds.SOPInstanceUID == pydicom.dcmread(ct).SOPInstanceUID
    location = locate_dataset(ct)
    assert (location.dataset_offset, location.transfer_syntax_uid) == (
        dataset_offset(ct),
        "1.2.840.10008.1.2.1",
    )
    bare = discs.bare_dataset(ct, tmp_path / "bare")
    bare_location = locate_dataset(bare)
    assert (bare_location.dataset_offset, bare_location.has_preamble) == (0, False)
    assert read_header(bare).SOPInstanceUID == ds.SOPInstanceUID


def test_deflated_file_read_and_deflate_bomb_refused(tmp_path: Path) -> None:
    dfl = discs.sample("image_dfl.dcm")
    header = inspect_header(dfl)
    assert header.location.transfer_syntax_uid == DeflatedExplicitVRLittleEndian
    assert header.dataset.SOPInstanceUID == pydicom.dcmread(dfl).SOPInstanceUID

    ds = pydicom.dcmread(discs.sample("CT_small.dcm"))
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.add_new(0x00091010, "OB", bytes(40 * 1024 * 1024))  # deflates ~1000:1
    bomb = tmp_path / "bomb.dcm"
    ds.save_as(bomb, enforce_file_format=True)
    assert bomb.stat().st_size < 200_000
    with pytest.raises(DamagedFileError, match="decompression bomb"):
        inspect_header(bomb, max_inflated=int(bomb.stat().st_size * 200))
    catalog = scan(_single(bomb, tmp_path / "staged"), limits=LIMITS)
    assert [s.reason for s in catalog.skipped] == [
        f"inflates to more than {bomb.stat().st_size * 200} bytes (decompression bomb)"
    ]


def _single(path: Path, folder: Path) -> Path:
    folder.mkdir()
    shutil.copyfile(path, folder / path.name)
    return folder


def test_udf_names_are_used_when_there_is_no_rock_ridge_or_joliet(tmp_path: Path) -> None:
    # pycdlib (the third-party library) writes the UDF 2.60 bridge image here.
    iso = pycdlib.PyCdlib()
    iso.new(udf="2.60", interchange_level=1)
    iso.add_directory("/DICOM", udf_path="/DICOM")
    data = discs.sample("CT_small.dcm").read_bytes()
    iso.add_fp(io.BytesIO(data), len(data), "/DICOM/IM1.;1", udf_path="/DICOM/ct image.dcm")
    iso.write(str(tmp_path / "udf.iso"))
    iso.close()
    catalog = scan_source(tmp_path / "udf.iso", tmp_path / "work", LIMITS)
    assert [(i.disc_path, i.sop_instance_uid) for i in catalog.instances] == [
        ("DICOM/ct image.dcm", discs.sop_uid(discs.sample("CT_small.dcm")))
    ]


def test_no_patient_data_in_logs(
    clean_fileset: discs.FileSet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="appliance")
    catalog = scan_source(clean_fileset.root, tmp_path / "work", LIMITS)
    assert catalog.instances and caplog.records
    text = caplog.text
    for inst in catalog.instances:
        for value in (inst.patient_name, inst.patient_id, inst.patient_birth_date):
            if value:
                assert value not in text
