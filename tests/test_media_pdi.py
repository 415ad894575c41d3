"""IHE PDI content: README, web pages, JPEG previews, checksums, hostile DICOMDIRs.

File sets are real: instances (generated ones and pydicom's samples) are copied to Level-1 File
IDs under DICOM/ and DCMTK's dcmmkdir writes the DICOMDIR, as the file-set writer's output would
look. The checksum list is checked with the real sha256sum.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from appliance import __version__
from appliance.media.errors import MediaError
from appliance.media.manifest import Manifest, sha256_file
from appliance.media.pdi import (
    CHECKSUMS_NAME,
    INDEX_NAME,
    README_NAME,
    WEB_DIR,
    PdiError,
    PdiOptions,
    write_pdi_content,
)
from appliance.media.render import render_preview, to_display
from tests.peers.data import TEST_FILES_DIR, make_instance

DCMMKDIR = "/usr/bin/dcmmkdir"
SHA256SUM = "/usr/bin/sha256sum"
XHTML = "{http://www.w3.org/1999/xhtml}"
PROFILE = "STD-GEN-DVD"
CREATED = date(2025, 3, 4)
HOSTILE_NAME = "<script>alert(1)</script>^X"
OPTIONS = PdiOptions(
    institution_name="St. Example Hospital",
    institution_contact="1 Example Road, Exampletown\nPhone +1 555 0100",
    web_content=True,
)


@dataclass(frozen=True)
class Patient:
    name: str
    patient_id: str
    birth_date: str


JANE = Patient("DOE^JANE", "PDIPID7731", "19520317")
RICHARD = Patient("ROE^RICHARD", "PDIPID9920", "19811102")
MALLORY = Patient(HOSTILE_NAME, "PDIPID0666", "19690420")


@dataclass
class FileSetBuilder:
    """Lays instances out under DICOM/PATnnnnn/STUnnnnn/SERnnnnn/IMGnnnnn and runs dcmmkdir."""

    root: Path
    scratch: Path
    counters: dict[str, int] = field(default_factory=dict)

    def _next(self, key: str) -> int:
        self.counters[key] = self.counters.get(key, 0) + 1
        return self.counters[key]

    def add(
        self,
        source: Path | Dataset,
        patient: Patient,
        *,
        study: int,
        series: int,
        study_date: str = "20240119",
        series_description: str = "",
        instance_number: int | None = None,
    ) -> Path:
        ds = source if isinstance(source, Dataset) else pydicom.dcmread(source)
        ds.PatientName = patient.name
        ds.PatientID = patient.patient_id
        ds.PatientBirthDate = patient.birth_date
        # Group by the test's own keys, and fill what dcmmkdir requires (Type 1 record keys).
        ds.StudyInstanceUID = generate_uid(entropy_srcs=[patient.patient_id, str(study)])
        ds.SeriesInstanceUID = generate_uid(
            entropy_srcs=[patient.patient_id, str(study), str(series)]
        )
        ds.StudyDate = study_date
        ds.StudyTime = "101500"
        ds.StudyID = str(study)
        ds.SeriesNumber = series
        ds.InstanceNumber = instance_number or self._next(f"i{patient.patient_id}{study}{series}")
        if series_description:
            ds.SeriesDescription = series_description
        pat = [JANE, RICHARD, MALLORY].index(patient) + 1
        directory = self.root / "DICOM" / f"PAT{pat:05d}" / f"STU{study:05d}" / f"SER{series:05d}"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"IMG{len(list(directory.iterdir())) + 1:05d}"
        ds.save_as(path, enforce_file_format=True)
        return path

    def instance(self, **kwargs: object) -> Dataset:
        """A generated CT instance (tests.peers.data.make_instance) as a dataset."""
        return pydicom.dcmread(make_instance(self.scratch, **kwargs))  # type: ignore[arg-type]

    def dicomdir(self) -> None:
        result = subprocess.run(
            [DCMMKDIR, "--recurse", "DICOM"],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "cannot be added" not in result.stderr, result.stderr


def _builder(tmp: Path) -> FileSetBuilder:
    if shutil.which(DCMMKDIR) is None:
        pytest.fail("dcmmkdir is missing: run scripts/test (it installs DCMTK)")
    root, scratch = tmp / "root", tmp / "scratch"
    root.mkdir()
    scratch.mkdir()
    return FileSetBuilder(root, scratch)


def _skewed(ds: Dataset, photometric: str) -> Dataset:
    """Mostly dark pixels (3/4 at 0, 1/4 at 4095): inverting moves the mean a lot."""
    pixels = np.zeros((64, 64), dtype=np.uint16)
    pixels[:16, :] = 4095
    ds.PixelData = pixels.tobytes()
    ds.PhotometricInterpretation = photometric
    return ds


@dataclass(frozen=True)
class Disc:
    root: Path
    manifest: Manifest
    images: int
    non_images: int


@pytest.fixture(scope="module")
def disc(tmp_path_factory: pytest.TempPathFactory) -> Disc:
    """One file set with 3 patients, 4 studies, CT/MR/US(RGB)/SR, published with web content."""
    b = _builder(tmp_path_factory.mktemp("pdi"))
    windowed = b.instance(modality="CT")
    windowed.RescaleSlope, windowed.RescaleIntercept = 1, -1024
    windowed.WindowCenter, windowed.WindowWidth = [40, 400], [400, 1500]
    b.add(windowed, JANE, study=1, series=1)
    b.add(b.instance(modality="CT", rows=768, columns=1024), JANE, study=1, series=1)
    for number, photometric in [(1, "MONOCHROME2"), (2, "MONOCHROME1")]:
        twin = _skewed(b.instance(), photometric)
        b.add(twin, JANE, study=1, series=2, series_description="TWINS", instance_number=number)
    b.add(TEST_FILES_DIR / "MR_small.dcm", JANE, study=2, series=1, study_date="20230611")
    b.add(
        TEST_FILES_DIR / "examples_rgb_color.dcm",
        RICHARD,
        study=1,
        series=1,
        series_description="COLOUR",
    )
    b.add(TEST_FILES_DIR / "test-SR.dcm", RICHARD, study=1, series=2, series_description="REPORT")
    b.add(b.instance(), MALLORY, study=1, series=1)
    b.dicomdir()
    manifest = write_pdi_content(b.root, OPTIONS, profile_name=PROFILE, created=CREATED)
    return Disc(b.root, manifest, images=7, non_images=1)


def _pages(root: Path) -> list[Path]:
    return [root / INDEX_NAME, *sorted((root / WEB_DIR).glob("*.HTM"))]


def _parse(page: Path) -> ET.Element:
    return ET.fromstring(page.read_bytes())


def _page_text(page: Path) -> str:
    return "".join(_parse(page).itertext())


# ---- README ----


def test_readme_has_counts_application_profile_and_crlf(disc: Disc) -> None:
    data = (disc.root / README_NAME).read_bytes()
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b""), "every line ends in CRLF"
    assert b"\r" not in data.replace(b"\r\n", b"")
    text = data.decode("latin-1")
    assert all(line == line.rstrip() and len(line) <= 80 for line in text.split("\r\n"))
    for label, count in [("Patients", 3), ("Studies", 4), ("Series", 6), ("Objects", 8)]:
        assert re.search(rf"^  {label}:\s+{count}\r$", text, re.M), label
    assert re.search(r"Modalities:\s+CT, MR, SR, US", text)
    assert re.search(r"Study years:\s+2023, 2024", text)
    assert f"Disc Kiosk version {__version__}" in text
    assert "St. Example Hospital" in text and "Phone +1 555 0100" in text
    assert "IHE Radiology Portable Data for Imaging (PDI)" in text
    assert "DICOM PLUS WEB" in text
    assert f"media application profile {PROFILE}" in text
    assert "DICOMDIR" in text and INDEX_NAME in text
    assert "no autorun file" in text
    assert f"sha256sum -c {CHECKSUMS_NAME}" in text


def test_readme_names_no_patient(disc: Disc) -> None:
    text = (disc.root / README_NAME).read_text("latin-1").upper()
    for patient in (JANE, RICHARD, MALLORY):
        birth = patient.birth_date
        forbidden = [patient.patient_id, birth, f"{birth[:4]}-{birth[4:6]}-{birth[6:]}"]
        forbidden += [part for part in re.split(r"[\^<>()/]", patient.name) if len(part) > 2]
        for value in forbidden:
            assert value.upper() not in text, value
    # Full study dates are patient data too: only years are printed.
    assert "20240119" not in text and "2024-01-19" not in text


def test_no_autorun_anywhere(disc: Disc) -> None:
    names = [p.name.lower() for p in disc.root.rglob("*")]
    assert "autorun.inf" not in names


# ---- web pages ----


def test_web_names_are_iso_level1(disc: Disc) -> None:
    for path in (disc.root / WEB_DIR).rglob("*"):
        pattern = r"[A-Z0-9_]{1,8}" if path.is_dir() else r"[A-Z0-9_]{1,8}\.(HTM|JPG)"
        assert re.fullmatch(pattern, path.name), path


def test_pages_are_xhtml_and_links_stay_on_disc(disc: Disc) -> None:
    pages = _pages(disc.root)
    assert len(pages) == 1 + 3 + 4 + 6  # index, patients, studies, series
    root = disc.root.resolve()
    for page in pages:
        raw = page.read_bytes()
        assert raw.startswith(b'<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN"')
        tree = _parse(page)  # well-formed XML, or this raises
        assert tree.tag == f"{XHTML}html"
        for node in tree.iter():
            assert node.tag != f"{XHTML}script"
            assert not any(k.lower().startswith("on") for k in node.attrib), page
            for attr in ("href", "src"):
                link = node.get(attr)
                if link is None:
                    continue
                assert not re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", link), link  # no scheme
                assert not link.startswith(("/", "\\")), link
                target = (page.parent / link).resolve()
                assert target.is_relative_to(root), link
                assert target.is_file(), link
            if node.tag == f"{XHTML}img":
                assert node.get("alt"), "XHTML strict needs alt"


def test_every_image_has_a_decodable_jpeg(disc: Disc) -> None:
    jpegs = sorted((disc.root / WEB_DIR).rglob("*.JPG"))
    assert len(jpegs) == disc.images
    sizes = []
    for jpeg in jpegs:
        with Image.open(jpeg) as image:
            assert image.format == "JPEG"
            image.load()
            assert 16 <= max(image.size) <= OPTIONS.max_image_edge
            sizes.append(image.size)
    assert (512, 384) in sizes, "1024x768 is reduced to 512 px keeping its aspect"
    assert (64, 64) in sizes, "small images are not enlarged"
    assert (320, 240) in sizes, "the RGB ultrasound keeps its size"


def _series_page(disc: Disc, description: str) -> Path:
    for page in sorted((disc.root / WEB_DIR).glob("SE*.HTM")):
        heading = _parse(page).find(f".//{XHTML}h1")
        if heading is not None and description in (heading.text or ""):
            return page
    raise AssertionError(f"no series page for {description}")


def _mean(path: Path) -> float:
    with Image.open(path) as image:
        return float(np.asarray(image.convert("L"), dtype=np.float64).mean())


def test_monochrome1_is_inverted(disc: Disc) -> None:
    page = _series_page(disc, "TWINS")
    sources = [img.get("src") for img in _parse(page).iter(f"{XHTML}img")]
    assert len(sources) == 2
    mono2, mono1 = (_mean(page.parent / str(src)) for src in sources)  # instance order
    assert mono2 < 90 and mono1 > 165, (mono2, mono1)
    assert abs((255 - mono1) - mono2) < 10


def test_rgb_preview_keeps_colour(disc: Disc) -> None:
    page = _series_page(disc, "COLOUR")
    (src,) = [img.get("src") for img in _parse(page).iter(f"{XHTML}img")]
    with Image.open(page.parent / str(src)) as image:
        assert image.mode == "RGB"
        pixels = np.asarray(image, dtype=np.int16)
    # A colour Doppler image has pixels whose channels differ a lot (not a grey picture).
    assert (np.abs(pixels[..., 0] - pixels[..., 2]) > 60).any()


def test_structured_report_is_a_text_entry(disc: Disc) -> None:
    page = _series_page(disc, "REPORT")
    assert list(_parse(page).iter(f"{XHTML}img")) == []
    text = _page_text(page)
    assert "Comprehensive SR Storage" in text
    assert "open it with a DICOM viewer" in text


def test_pages_show_patients_and_escape_dicom_strings(disc: Disc) -> None:
    index = disc.root / INDEX_NAME
    text = _page_text(index)
    assert "DOE, JANE" in text and "PDIPID9920" in text and "1952-03-17" in text
    # The hostile name is shown as text, never as markup, on every page that names it.
    assert "<script>alert(1)</script>, X" in text
    for page in _pages(disc.root):
        raw = page.read_text("utf-8")
        assert "<script" not in raw.lower(), page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;, X" in index.read_text("utf-8")


# ---- checksums and manifest ----


def test_sha256sum_verifies_the_checksum_file(disc: Disc) -> None:
    result = subprocess.run(
        [SHA256SUM, "--check", "--strict", CHECKSUMS_NAME],
        check=False,
        cwd=disc.root,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    checked = {line.rsplit(": ", 1)[0] for line in result.stdout.splitlines()}
    outside = {
        p.relative_to(disc.root).as_posix()
        for p in disc.root.rglob("*")
        if p.is_file() and p.relative_to(disc.root).parts[0] not in ("DICOM", "DICOMDIR")
    }
    assert checked == outside - {CHECKSUMS_NAME}


def test_manifest_lists_every_written_file(disc: Disc) -> None:
    by_path = disc.manifest.by_path()
    assert len(by_path) == len(disc.manifest.entries), "paths are unique"
    written = {
        p.relative_to(disc.root).as_posix()
        for p in disc.root.rglob("*")
        if p.is_file() and p.relative_to(disc.root).parts[0] not in ("DICOM", "DICOMDIR")
    }
    assert set(by_path) == written
    assert CHECKSUMS_NAME in by_path and README_NAME in by_path and INDEX_NAME in by_path
    for rel, entry in by_path.items():
        assert entry.sha256 == sha256_file(disc.root / rel)
        assert entry.size == (disc.root / rel).stat().st_size
    assert Manifest.from_json(disc.manifest.to_json()).by_path() == by_path


# ---- options and small file sets ----


@pytest.fixture
def small(tmp_path: Path) -> FileSetBuilder:
    """A one-instance file set with its DICOMDIR."""
    b = _builder(tmp_path)
    b.add(b.instance(), JANE, study=1, series=1)
    b.dicomdir()
    return b


def test_dicom_only_writes_readme_and_checksums(small: FileSetBuilder) -> None:
    options = PdiOptions(institution_name="Clinic", web_content=False)
    manifest = write_pdi_content(small.root, options)
    assert {e.path for e in manifest.entries} == {README_NAME, CHECKSUMS_NAME}
    assert not (small.root / INDEX_NAME).exists() and not (small.root / WEB_DIR).exists()
    text = (small.root / README_NAME).read_text("latin-1")
    assert "DICOM ONLY" in text and INDEX_NAME not in text and "STD-GEN-CD" in text


def test_rerun_replaces_earlier_content(small: FileSetBuilder) -> None:
    write_pdi_content(small.root, PdiOptions(institution_name="Clinic", web_content=True))
    assert (small.root / WEB_DIR).is_dir()
    write_pdi_content(small.root, PdiOptions(institution_name="Clinic", web_content=False))
    assert not (small.root / WEB_DIR).exists() and not (small.root / INDEX_NAME).exists()
    check = subprocess.run([SHA256SUM, "-c", CHECKSUMS_NAME], cwd=small.root, check=False)
    assert check.returncode == 0


def test_secure_readme_says_encrypted_and_holds_counts_only(small: FileSetBuilder) -> None:
    write_pdi_content(small.root, PdiOptions(institution_name="Clinic", secure=True))
    text = (small.root / README_NAME).read_text("latin-1")
    assert "encrypted" in text and "must not carry patient data" in text
    assert "Patients:" in text
    assert "Modalities" not in text and "Study years" not in text


def test_secure_disc_cannot_have_web_content() -> None:
    with pytest.raises(PdiError, match="secure"):
        PdiOptions(institution_name="Clinic", secure=True, web_content=True)


def test_pdi_error_is_a_media_error() -> None:
    assert issubclass(PdiError, MediaError)


def test_non_latin1_institution_is_replaced_not_fatal(small: FileSetBuilder) -> None:
    write_pdi_content(small.root, PdiOptions(institution_name="Krankenhaus Köln \u2013 Süd"))
    text = (small.root / README_NAME).read_text("latin-1")
    assert "Krankenhaus Köln ? Süd" in text


def test_autorun_in_root_is_refused(small: FileSetBuilder) -> None:
    (small.root / "AUTORUN.INF").write_text("[autorun]\r\nopen=evil.exe\r\n")
    with pytest.raises(PdiError, match="autorun"):
        write_pdi_content(small.root, OPTIONS)


@pytest.mark.parametrize(
    "hostile_id",
    [
        "DICOM\\..\\..\\..\\ETC\\PASSWD",
        "..\\OUTSIDE",
        "/ETC\\PASSWD",
        "DICOM\\PAT00001\\\\IMG00001",
        "dicom\\pat00001",
    ],
)
def test_hostile_referenced_file_id_is_rejected(small: FileSetBuilder, hostile_id: str) -> None:
    (small.root.parent / "OUTSIDE").write_bytes(b"not part of the file set")
    dicomdir = small.root / "DICOMDIR"
    original = b"DICOM\\PAT00001\\STU00001\\SER00001\\IMG00001 "  # padded to even length
    data = dicomdir.read_bytes()
    assert data.count(original) == 1
    replacement = hostile_id.encode().ljust(len(original))
    # Same length: the record offsets in the DICOMDIR stay valid, only the ID is hostile.
    dicomdir.write_bytes(data.replace(original, replacement))
    with pytest.raises(PdiError, match="Referenced File ID"):
        write_pdi_content(small.root, OPTIONS)
    assert not (small.root / README_NAME).exists(), "nothing is written for a hostile set"


def test_file_id_through_symlink_out_of_root_is_rejected(small: FileSetBuilder) -> None:
    outside = small.root.parent / "outside.dcm"
    target = small.root / "DICOM" / "PAT00001" / "STU00001" / "SER00001" / "IMG00001"
    shutil.move(target, outside)
    target.symlink_to(outside)
    with pytest.raises(PdiError, match="outside the file set"):
        write_pdi_content(small.root, OPTIONS)


def test_cyclic_dicomdir_is_rejected(small: FileSetBuilder) -> None:
    dicomdir = small.root / "DICOMDIR"
    ds = pydicom.dcmread(dicomdir)
    patient = ds.DirectoryRecordSequence[0]
    assert patient.DirectoryRecordType == "PATIENT"
    # Point the patient record's "next record" offset at itself (an UL: the size is unchanged).
    data = bytearray(dicomdir.read_bytes())
    tag = b"\x04\x00\x00\x14UL\x04\x00"  # (0004,1400) Offset of the Next Directory Record
    at = data.index(tag, patient.seq_item_tell) + len(tag)
    data[at : at + 4] = patient.seq_item_tell.to_bytes(4, "little")
    dicomdir.write_bytes(bytes(data))
    with pytest.raises(PdiError, match="loop"):
        write_pdi_content(small.root, OPTIONS)


def test_truncated_instance_gets_a_text_entry_not_a_failure(small: FileSetBuilder) -> None:
    image = small.root / "DICOM" / "PAT00001" / "STU00001" / "SER00001" / "IMG00001"
    image.write_bytes(image.read_bytes()[:-4000])  # pixel data cut short
    write_pdi_content(small.root, OPTIONS)
    (series_page,) = (small.root / WEB_DIR).glob("SE*.HTM")
    assert "no preview" in _page_text(series_page)
    assert not list((small.root / WEB_DIR).rglob("*.JPG"))


def test_missing_dicomdir_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(PdiError, match="no DICOMDIR"):
        write_pdi_content(tmp_path, OPTIONS)


# ---- rendering ----


def _header(**values: object) -> Dataset:
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


def test_rescale_and_first_window_are_applied() -> None:
    # Stored 0..2000 with intercept -1024 -> HU -1024..976; window C=40 W=400 (first values).
    frame = np.array([[0, 1024 + 40 - 300], [1024 + 40, 2000]], dtype=np.uint16)
    ds = _header(
        RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=[40, 300], WindowWidth=[400, 2000]
    )
    out = np.asarray(to_display(frame, ds))
    assert out[0, 0] == 0 and out[0, 1] == 0  # below the window
    assert out[1, 1] == 255  # above it
    assert 120 <= out[1, 0] <= 135  # the centre is mid grey


def test_min_max_without_window_and_monochrome1() -> None:
    frame = np.array([[100, 200], [300, 100]], dtype=np.uint16)
    mono2 = np.asarray(to_display(frame, _header()))
    mono1 = np.asarray(to_display(frame, _header(PhotometricInterpretation="MONOCHROME1")))
    assert mono2.min() == 0 and mono2.max() == 255
    assert (mono1 == 255 - mono2).all()


def test_pixel_padding_does_not_stretch_min_max() -> None:
    frame = np.array([[-2000, 0], [100, 200]], dtype=np.int16)
    out = np.asarray(to_display(frame, _header(PixelPaddingValue=-2000)))
    assert out[1, 1] == 255 and out[0, 1] == 0


def test_only_the_first_frame_is_rendered(tmp_path: Path) -> None:
    ds = pydicom.dcmread(make_instance(tmp_path, rows=32, columns=32))
    dark = np.zeros((32, 32), dtype=np.uint16)
    dark[0, 0] = 4095  # min/max needs a range: one bright pixel in an otherwise black frame
    bright = np.full((32, 32), 4095, dtype=np.uint16)
    ds.NumberOfFrames = 2
    ds.PixelData = dark.tobytes() + bright.tobytes()
    ds.SOPInstanceUID = generate_uid()
    path = tmp_path / "multiframe.dcm"
    ds.save_as(path, enforce_file_format=True)
    header = pydicom.dcmread(path, defer_size=1024)
    image = render_preview(path, header)
    assert image.size == (32, 32)
    assert np.asarray(image).mean() < 10
