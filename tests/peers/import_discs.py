"""Build discs that patients bring in, good and broken, with tools we did not write.

File sets are laid out from pydicom's sample files, indexed by DCMTK `dcmmkdir`, and put into
ISO images by `xorriso -as mkisofs` (Rock Ridge + Joliet, or plain ISO 9660 level 1). The
damage is done the way real discs have it: patched DICOMDIR bytes, truncated files, lengths
that lie, File IDs that point outside, links, viewers and web pages next to the images.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from tests.peers.data import TEST_FILES_DIR, dataset_bytes

DCMMKDIR = "/usr/bin/dcmmkdir"
DCMDUMP = "/usr/bin/dcmdump"
PASSWORD = "Disc-import-Passw0rd"

# Ten single-frame samples of three patients (CT1, MR1, Lestrade) with distinct SOP Instance
# UIDs, mixing Explicit VR LE, JPEG baseline and JPEG 2000; disc names are 8-char File IDs.
SAMPLES: dict[str, str] = {
    "CT_small.dcm": "CT000001",
    "MR_small.dcm": "MR000001",
    "SC_rgb_dcmtk_+eb+cr.dcm": "SC000001",
    "SC_rgb_dcmtk_+eb+cy+n1.dcm": "SC000002",
    "SC_rgb_dcmtk_+eb+cy+np.dcm": "SC000003",
    "SC_rgb_dcmtk_+eb+cy+s2.dcm": "SC000004",
    "SC_rgb_jpeg_dcmtk.dcm": "SC000005",
    "SC_rgb_jpeg_lossy_gdcm.dcm": "SC000006",
    "SC_rgb_small_odd.dcm": "SC000007",
    "SC_rgb_gdcm_KY.dcm": "SC000008",
}
DUPLICATE_OF_MR = "MR_small_jp2klossless.dcm"
"""Same SOP Instance UID as MR_small.dcm (a re-encoded copy)."""


def sample(name: str) -> Path:
    """A pydicom sample file by name."""
    return TEST_FILES_DIR / name


def sop_uid(path: Path) -> str:
    """SOP Instance UID as pydicom reads it (the reference the tests compare against)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    return str(ds.SOPInstanceUID)


@dataclass(frozen=True)
class FileSet:
    """A folder laid out as a disc: `root/DICOM/<File IDs>` (+ DICOMDIR once indexed)."""

    root: Path
    files: dict[str, Path]
    """Disc path -> the sample it is a copy of."""

    @property
    def dicomdir(self) -> Path:
        return self.root / "DICOMDIR"


def layout(root: Path, *, folder: str = "DICOM", lower: bool = False) -> FileSet:
    """Copy the ten samples to `root/folder/NAME` (lower-case names when `lower`)."""
    target = root / (folder.lower() if lower else folder)
    target.mkdir(parents=True, exist_ok=True)
    files = {}
    for source, name in SAMPLES.items():
        disc_name = name.lower() if lower else name
        shutil.copyfile(sample(source), target / disc_name)
        files[f"{target.name}/{disc_name}"] = sample(source)
    return FileSet(root, files)


def run_dcmmkdir(root: Path, folder: str = "DICOM") -> Path:
    """Index `root/folder` with DCMTK into `root/DICOMDIR` (General Purpose, tolerant)."""
    result = subprocess.run(
        [
            DCMMKDIR,
            "+r",
            "+I",
            "-Nxc",
            "-Nec",
            "-Nrc",
            "+id",
            str(root),
            "+D",
            str(root / "DICOMDIR"),
            folder,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"dcmmkdir failed: {result.stderr[-800:]}")
    return root / "DICOMDIR"


def make_iso(folder: Path, image: Path, *, rock_ridge: bool = True, volid: str = "IMPORT") -> Path:
    """`xorriso -as mkisofs` of `folder`: Rock Ridge + Joliet, or plain ISO 9660 level 1."""
    extensions = ["-R", "-J"] if rock_ridge else ["-iso-level", "1"]
    subprocess.run(
        ["xorriso", "-as", "mkisofs", *extensions, "-V", volid, "-o", str(image), str(folder)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return image


def dicomdir_file_ids(dicomdir: Path) -> list[str]:
    """Referenced File IDs as DCMTK's dcmdump prints them (backslash-separated)."""
    out = subprocess.run(
        [DCMDUMP, "-q", "+P", "0004,1500", str(dicomdir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [line.split("[", 1)[1].split("]", 1)[0] for line in out.splitlines() if "[" in line]


def break_dicomdir_offsets(dicomdir: Path) -> int:
    """Overwrite every record offset in the DICOMDIR bytes with nonsense; how many were hit.

    Hits (0004,1200), (0004,1202), (0004,1400) and (0004,1420), Explicit VR LE `UL` elements.
    """
    data = bytearray(dicomdir.read_bytes())
    hits = 0
    for element in (0x1200, 0x1202, 0x1400, 0x1420):
        marker = b"\x04\x00" + element.to_bytes(2, "little") + b"UL\x04\x00"
        start = 0
        while (pos := data.find(marker, start)) >= 0:
            data[pos + 8 : pos + 12] = (0x7FFFFF00 + hits % 7).to_bytes(4, "little")
            hits += 1
            start = pos + 12
    dicomdir.write_bytes(bytes(data))
    return hits


def rewrite_file_ids(dicomdir: Path, changes: dict[int, list[str]]) -> None:
    """Replace the Referenced File IDs of the IMAGE records at the given indexes."""
    ds = pydicom.dcmread(dicomdir)
    images = [r for r in ds.DirectoryRecordSequence if "ReferencedFileID" in r]
    for index, value in changes.items():
        images[index].ReferencedFileID = value
    ds.save_as(dicomdir)


def truncated_copy(source: Path, target: Path, keep: int) -> Path:
    """The first `keep` bytes of `source`."""
    target.write_bytes(source.read_bytes()[:keep])
    return target


def patch_length(source: Path, target: Path, tag: int, vr: bytes, length: int) -> Path:
    """Copy with the declared length of an Explicit VR LE element patched (value unchanged)."""
    data = bytearray(source.read_bytes())
    marker = (tag >> 16).to_bytes(2, "little") + (tag & 0xFFFF).to_bytes(2, "little") + vr
    pos = data.find(marker, 132)
    if pos < 0:
        raise ValueError(f"element {tag:08X} not found in {source.name}")
    if vr in (b"OB", b"OW", b"UN", b"UT", b"SQ"):
        data[pos + 8 : pos + 12] = length.to_bytes(4, "little")
    else:
        data[pos + 6 : pos + 8] = length.to_bytes(2, "little")
    target.write_bytes(bytes(data))
    return target


def bare_dataset(source: Path, target: Path) -> Path:
    """The data set of a PS3.10 file without preamble and File Meta."""
    target.write_bytes(dataset_bytes(source))
    return target


def decompression_bomb(target: Path) -> Path:
    """A JPEG baseline image whose Rows/Columns/Frames claim terabytes (new UIDs)."""
    ds = pydicom.dcmread(sample("SC_rgb_jpeg_dcmtk.dcm"))
    ds.Rows = 65535
    ds.Columns = 65535
    ds.NumberOfFrames = 1000
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(target)
    return target


def new_uid_copy(source: Path, target: Path) -> Path:
    """A copy of a sample with a fresh SOP Instance UID (same patient and study)."""
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(target)
    return target


def openssl_encrypt(plain: Path, target: Path, password: str = PASSWORD) -> Path:
    """A Secure DICOM File (CMS EnvelopedData, password recipient) made by `openssl cms`."""
    subprocess.run(
        [
            "openssl",
            "cms",
            "-encrypt",
            "-binary",
            "-aes256",
            "-pwri_password",
            password,
            "-in",
            str(plain),
            "-outform",
            "DER",
            "-out",
            str(target),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return target


def add_non_dicom(folder: Path) -> list[str]:
    """A viewer's autorun.inf, a program and a web page, as discs carry them; their names."""
    (folder / "AUTORUN.INF").write_text("[autorun]\nopen=VIEWER.EXE\nicon=VIEWER.EXE,0\n")
    (folder / "VIEWER.EXE").write_bytes(b"MZ\x90\x00" + os.urandom(4096))
    (folder / "INDEX.HTM").write_text("<html><body><a href='DICOM'>Images</a></body></html>\n")
    return ["AUTORUN.INF", "VIEWER.EXE", "INDEX.HTM"]
