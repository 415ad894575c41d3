"""ISO building and image verification, checked with tools we did not write (xorriso, dcmmkdir)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from appliance.media.iso import IsoResult, build_iso, is_level1_dir_name, is_level1_file_name
from appliance.media.iso_errors import (
    FileTooLargeError,
    InvalidVolumeLabelError,
    IsoNameError,
    IsoSourceError,
)
from appliance.media.manifest import Manifest, ManifestEntry, sha256_file
from appliance.media.verify import VerificationError, verify_dicomdir_in_image, verify_image
from tests.peers.data import make_instance

XORRISO = "/usr/bin/xorriso"
DCMMKDIR = "/usr/bin/dcmmkdir"

DICOM_FILES = ("DICOM/P1/S1/IMG00001", "DICOM/P1/S1/IMG00002", "DICOM/P1/S2/IMG00001")
WEB_FILES = {
    "IHE_PDI/this-is-a-long-page-name.html": "<html>page one</html>",
    "IHE_PDI/this-is-a-long-page-name-too.html": "<html>page two</html>",
    "IHE_PDI/styles/site.css": "body { color: black }",
    "README.TXT": "Read me\r\n",
    "INDEX.HTM": '<a href="IHE_PDI/this-is-a-long-page-name.html">x</a>',
}


def _require(tool: str) -> None:
    if not Path(tool).exists():
        pytest.fail(f"{tool} is missing: install the peers (see PEERS.md)")


def _xorriso(*args: str) -> str:
    _require(XORRISO)
    done = subprocess.run([XORRISO, *args], capture_output=True, text=True, check=True, timeout=60)
    return done.stdout + done.stderr


def xorriso_files(image: Path, *, read_fs: str) -> set[str]:
    """File paths xorriso sees in the image (`ecma119`: ISO 9660 names; `norock`: Joliet)."""
    out = _xorriso("-read_fs", read_fs, "-indev", f"stdio:{image}", "-find", "/", "-exec", "lsdl")
    return {
        m.group(1).lstrip("/")
        for line in out.splitlines()
        if line.startswith("-") and (m := re.search(r"'(/[^']*)'$", line))
    }


def make_manifest(root: Path, uids: dict[str, str]) -> Manifest:
    """Manifest of every file under root (what the file-set and PDI writers would produce)."""
    manifest = Manifest()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        manifest.add(ManifestEntry(rel, sha256_file(path), path.stat().st_size, uids.get(rel)))
    return manifest


@dataclass
class Disc:
    root: Path
    image: Path
    result: IsoResult
    manifest: Manifest
    uids: dict[str, str]
    progress: list[tuple[int, int]]


def make_tree(root: Path) -> dict[str, str]:
    """A Level-1 DICOM part with a DICOMDIR by dcmmkdir, plus a long-named web part."""
    _require(DCMMKDIR)
    staging = root.parent / f"{root.name}-staging"
    staging.mkdir()
    uids: dict[str, str] = {}
    for number, rel in enumerate(DICOM_FILES, start=1):
        made = make_instance(staging, instance_number=number, rows=32, columns=32)
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(made, target)
        uids[rel] = str(pydicom.dcmread(target, stop_before_pixels=True).SOPInstanceUID)
    subprocess.run(
        [DCMMKDIR, "+I", "--recurse", "DICOM"],
        cwd=root,
        check=True,
        capture_output=True,
        timeout=60,
    )
    for rel, text in WEB_FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return uids


@pytest.fixture(scope="module")
def disc(tmp_path_factory: pytest.TempPathFactory) -> Disc:
    base = tmp_path_factory.mktemp("iso")
    root = base / "content"
    root.mkdir()
    uids = make_tree(root)
    progress: list[tuple[int, int]] = []
    image = base / "disc.iso"
    result = build_iso(
        root,
        image,
        volume_label="KIOSK_TEST_01",
        joliet=True,
        progress=lambda done, total: progress.append((done, total)),
    )
    return Disc(root, image, result, make_manifest(root, uids), uids, progress)


# --- building -------------------------------------------------------------------------------------


def test_result_describes_the_image(disc: Disc) -> None:
    data = disc.image.read_bytes()
    assert disc.result.size == len(data)
    assert disc.result.size % 2048 == 0
    assert disc.result.sha256 == hashlib.sha256(data).hexdigest()
    assert disc.result.file_count == len(disc.manifest.entries)
    assert not disc.image.with_name("disc.iso.part").exists()
    assert disc.progress[-1] == (disc.result.size, disc.result.size)
    dones = [done for done, _ in disc.progress]
    assert dones == sorted(dones)


def test_iso9660_tree_has_level1_names_only(disc: Disc) -> None:
    level1 = xorriso_files(disc.image, read_fs="ecma119")
    assert level1 == set(disc.result.iso9660_paths.values())
    for path in level1:
        *folders, name = path.split("/")
        assert all(is_level1_dir_name(f) for f in folders), path
        assert is_level1_file_name(name), path
    # The DICOM part keeps its File IDs exactly; long web names are mapped, and uniquely.
    assert {*DICOM_FILES, "DICOMDIR", "README.TXT", "INDEX.HTM"} <= level1
    assert "IHE_PDI/STYLES/SITE.CSS" in level1
    renamed = disc.result.renamed
    assert set(renamed) == {p for p in WEB_FILES if p.startswith("IHE_PDI/")}
    assert len(set(renamed.values())) == len(renamed)


def test_joliet_tree_keeps_the_long_names(disc: Disc) -> None:
    joliet = xorriso_files(disc.image, read_fs="norock")
    assert joliet == {e.path for e in disc.manifest.entries}
    assert "IHE_PDI/this-is-a-long-page-name-too.html" in joliet


def test_xorriso_reads_every_block(disc: Disc) -> None:
    out = _xorriso("-indev", f"stdio:{disc.image}", "-check_media", "--")
    blocks = disc.result.size // 2048
    assert re.search(rf"Media region :\s+0 ,\s+{blocks} , \+ good", out), out
    assert "Volume id    : 'KIOSK_TEST_01'" in out


def test_without_joliet_only_level1_names_exist(tmp_path: Path) -> None:
    root = tmp_path / "c"
    (root / "IHE_PDI").mkdir(parents=True)
    (root / "IHE_PDI" / "a-long-page.html").write_text("x")
    (root / "IHE_PDI" / "A_LONG_P.HTM").write_text("a real file with the name the mapping wants")
    result = build_iso(root, tmp_path / "x.iso", volume_label="NOJOLIET", joliet=False)
    seen = xorriso_files(result.path, read_fs="norock")  # Joliet allowed, but there is none
    assert seen == {"IHE_PDI/A_LONG_P.HTM", "IHE_PDI/A_LONG_1.HTM"}
    assert result.renamed == {"IHE_PDI/a-long-page.html": "IHE_PDI/A_LONG_1.HTM"}
    manifest = make_manifest(root, {})
    ok = verify_image(
        result.path, manifest, expected_sha256=result.sha256, iso9660_paths=result.iso9660_paths
    )
    assert ok.ok, ok.summary()
    # Without the mapping the long name cannot be found, and the mapped one looks foreign.
    report = verify_image(result.path, manifest, expected_sha256=None)
    assert "IHE_PDI/a-long-page.html" in report.bad_paths


@pytest.mark.parametrize("label", ["", "lower", "HAS-DASH", "HAS SPACE", "X" * 33])
def test_bad_volume_label_is_refused(tmp_path: Path, label: str) -> None:
    with pytest.raises(InvalidVolumeLabelError, match="disc label"):
        build_iso(tmp_path, tmp_path / "x.iso", volume_label=label, joliet=False)


def test_dicom_part_names_must_already_be_level1(tmp_path: Path) -> None:
    root = tmp_path / "c"
    (root / "DICOM" / "P1").mkdir(parents=True)
    (root / "DICOM" / "P1" / "img1.dcm").write_bytes(b"x")
    with pytest.raises(IsoNameError, match=r"DICOM/P1/img1\.dcm.*Level 1"):
        build_iso(root, tmp_path / "x.iso", volume_label="V", joliet=True)
    assert not (tmp_path / "x.iso").exists()


def test_file_over_4gib_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "c"
    root.mkdir()
    with (root / "BIG.BIN").open("wb") as fh:
        fh.truncate(2**32)  # sparse: no disk space used
    with pytest.raises(FileTooLargeError, match=r"BIG\.BIN.*4 GiB"):
        build_iso(root, tmp_path / "x.iso", volume_label="V", joliet=False)


def test_symlinks_and_deep_folders_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "c"
    root.mkdir()
    (root / "LINK").symlink_to("/etc/passwd")
    with pytest.raises(IsoSourceError, match="symbolic link"):
        build_iso(root, tmp_path / "x.iso", volume_label="V", joliet=False)
    (root / "LINK").unlink()
    (root / "A" / "B" / "C" / "D" / "E" / "F" / "G" / "H").mkdir(parents=True)
    with pytest.raises(IsoSourceError, match="nested deeper"):
        build_iso(root, tmp_path / "x.iso", volume_label="V", joliet=False)


def test_joliet_name_limits(tmp_path: Path) -> None:
    root = tmp_path / "c"
    root.mkdir()
    (root / ("n" * 65 + ".htm")).write_text("x")
    with pytest.raises(IsoNameError, match="64 characters"):
        build_iso(root, tmp_path / "x.iso", volume_label="V", joliet=True)


def test_progress_exception_cancels_and_leaves_nothing(disc: Disc, tmp_path: Path) -> None:
    class CancelledError(Exception):
        pass

    def cancel(done: int, total: int) -> None:
        if done > 0:
            raise CancelledError

    out = tmp_path / "cancelled.iso"
    with pytest.raises(CancelledError):
        build_iso(disc.root, out, volume_label="V", joliet=True, progress=cancel)
    assert list(tmp_path.iterdir()) == []


# --- verification ---------------------------------------------------------------------------------


def test_verify_image_accepts_the_built_image(disc: Disc) -> None:
    report = verify_image(disc.image, disc.manifest, expected_sha256=disc.result.sha256)
    assert report.ok, report.summary()
    assert report.checked_files == len(disc.manifest.entries)
    assert report.image_sha256 == disc.result.sha256
    report.raise_for_problems()


def test_verify_dicomdir_made_by_dcmmkdir(disc: Disc) -> None:
    report = verify_dicomdir_in_image(disc.image)
    assert report.ok, report.summary()
    assert report.checked_files == len(DICOM_FILES)


def corrupt_copy(disc: Disc, rel: str, tmp_path: Path) -> Path:
    """A copy of the image with one byte of `rel`'s content flipped."""
    data = bytearray(disc.image.read_bytes())
    tail = (disc.root / rel).read_bytes()[-64:]  # random pixel data: unique in the image
    offset = data.find(tail)
    assert offset > 0 and data.find(tail, offset + 1) == -1
    data[offset + 10] ^= 0x01
    bad = tmp_path / "corrupt.iso"
    bad.write_bytes(data)
    return bad


def test_one_corrupt_byte_names_the_file(disc: Disc, tmp_path: Path) -> None:
    bad = corrupt_copy(disc, "DICOM/P1/S1/IMG00002", tmp_path)
    report = verify_image(bad, disc.manifest, expected_sha256=disc.result.sha256)
    assert not report.ok
    assert report.bad_paths == ["DICOM/P1/S1/IMG00002"]
    reasons = [p.reason for p in report.problems]
    assert any("checksum differs" in r for r in reasons)
    assert any("SHA-256 mismatch" in r for r in reasons)
    with pytest.raises(VerificationError, match="DICOM/P1/S1/IMG00002"):
        report.raise_for_problems()
    # xorriso alone cannot see it: every block is readable.
    assert "+ good" in _xorriso("-indev", f"stdio:{bad}", "-check_media", "--")


def test_missing_extra_and_wrong_uid_are_reported(disc: Disc) -> None:
    entries = {e.path: e for e in disc.manifest.entries}
    dropped = entries.pop("README.TXT")
    ghost = ManifestEntry("DICOM/P1/S1/IMG00009", dropped.sha256, dropped.size)
    wrong = entries["DICOM/P1/S2/IMG00001"]
    entries[wrong.path] = ManifestEntry(wrong.path, wrong.sha256, wrong.size, "1.2.3.4")
    bigger = entries["INDEX.HTM"]
    entries[bigger.path] = ManifestEntry(bigger.path, bigger.sha256, bigger.size + 1)
    manifest = Manifest([*entries.values(), ghost])
    report = verify_image(disc.image, manifest, expected_sha256=None)
    problems = {p.path: p.reason for p in report.problems}
    assert problems == {
        "README.TXT": "is on the disc but not in the manifest",
        "DICOM/P1/S1/IMG00009": "is missing from the disc",
        "DICOM/P1/S2/IMG00001": (
            f"holds SOP Instance UID {disc.uids['DICOM/P1/S2/IMG00001']}, expected 1.2.3.4"
        ),
        "INDEX.HTM": f"is {bigger.size} bytes on the disc, expected {bigger.size + 1}",
    }


def test_unreadable_image_is_a_report_not_a_crash(tmp_path: Path) -> None:
    junk = tmp_path / "junk.iso"
    junk.write_bytes(os.urandom(64 * 1024))
    report = verify_image(junk, Manifest(), expected_sha256=None)
    assert [p.path for p in report.problems] == [None]
    assert "cannot be read as ISO 9660" in report.summary()
    assert not verify_dicomdir_in_image(junk).ok


def test_dicomdir_file_ids_cannot_escape_and_must_exist(disc: Disc, tmp_path: Path) -> None:
    root = tmp_path / "c"
    shutil.copytree(disc.root, root)
    ds = pydicom.dcmread(root / "DICOMDIR")
    records = {
        "/".join(r.ReferencedFileID): r
        for r in ds.DirectoryRecordSequence
        if "ReferencedFileID" in r
    }
    assert set(records) == set(DICOM_FILES)
    with warnings.catch_warnings():  # pydicom rightly warns that ".." is no CS value
        warnings.simplefilter("ignore")
        records["DICOM/P1/S1/IMG00001"].ReferencedFileID = ["..", "..", "ETC", "PASSWD"]
    records["DICOM/P1/S1/IMG00002"].ReferencedFileID = ["DICOM", "P1", "S1", "IMG00009"]
    records["DICOM/P1/S2/IMG00001"].ReferencedSOPInstanceUIDInFile = "1.2.3.4"
    ds.save_as(root / "DICOMDIR")
    result = build_iso(root, tmp_path / "x.iso", volume_label="V", joliet=True)
    report = verify_dicomdir_in_image(result.path)
    reasons = {p.path: p.reason for p in report.problems}
    assert reasons == {
        "DICOMDIR record ..\\..\\ETC\\PASSWD": "is not a valid DICOM File ID",
        "DICOM/P1/S1/IMG00009": "is referenced by the DICOMDIR but missing from the disc",
        "DICOM/P1/S2/IMG00001": (
            f"holds SOP Instance UID {disc.uids['DICOM/P1/S2/IMG00001']}, expected 1.2.3.4"
        ),
    }
