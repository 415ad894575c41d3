"""Streamed file sets: instances copied unchanged go from their source straight into the image.

Each streamed disc is compared with the same disc built through staged copies (the File IDs and
every DICOM file must be byte for byte the same), and checked on the extracted image with tools
we did not write: xorriso (extraction), dciodvfy, dcmdump and pydicom's FileSet. Sources that
vanish, are replaced or shrink between the file set and the image must fail the image build
with a clear error and leave no image behind.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from appliance.media.errors import SourceFileError
from appliance.media.fileset import FileSetResult, build_fileset
from appliance.media.iso import build_iso
from appliance.media.labels import DiscLabel
from appliance.media.manifest import Manifest
from appliance.media.pdi import WEB_DIR, write_pdi_content
from appliance.media.pdi_catalog import catalog_from_plan, read_catalog
from appliance.media.pdi_options import PdiOptions
from appliance.media.profiles import get_profile
from appliance.media.streamed import SourceIdentity, StreamedFile, StreamedReader, with_digests
from appliance.media.verify import verify_image
from tests.peers.data import make_instance, pydicom_sample_files
from tests.peers.discs import dciodvfy_errors, dcmdump_ok, extract_iso, fileset_sop_uids

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on odd sample values

# Samples no FSC can carry as they are (see test_media_fileset).
UNUSABLE_SAMPLES = {"JPEG-lossy.dcm", "SC_rgb_jpeg.dcm"}


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """pydicom's samples (every syntax: some are copied, some transcoded on STD-GEN-CD), each
    with a SOP Instance UID of its own."""
    directory = tmp_path_factory.mktemp("samples")
    seen: set[str] = set()
    chosen = []
    for path in pydicom_sample_files():
        if path.name in UNUSABLE_SAMPLES:
            continue
        ds = pydicom.dcmread(path)
        if str(ds.SOPInstanceUID) in seen:
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        seen.add(str(ds.SOPInstanceUID))
        copied = directory / path.name
        ds.save_as(copied)
        chosen.append(copied)
    return chosen


def _study(directory: Path, count: int = 4) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    return [
        make_instance(
            directory,
            study_uid=study,
            series_uid=series,
            instance_number=n + 1,
            rows=32,
            columns=32,
        )
        for n in range(count)
    ]


def _image(root: Path, result: FileSetResult, out: Path, *, joliet: bool = False) -> Path:
    return build_iso(
        root, out, volume_label="STREAM_TEST", joliet=joliet, extra_files=result.streamed
    ).path


def test_streamed_disc_holds_the_same_files_as_a_staged_one(
    samples: list[Path], tmp_path: Path
) -> None:
    profile = get_profile("STD-GEN-CD")
    staged = build_fileset(samples, tmp_path / "staged", profile, fileset_id="T")
    streamed = build_fileset(
        samples, tmp_path / "streamed", profile, fileset_id="T", stream_copies=True
    )
    assert streamed.transcoded and streamed.streamed, "the samples need both paths"
    assert streamed.copied == staged.copied == len(streamed.streamed)

    # Only re-encoded instances were written; the copies exist as descriptions only.
    written = {
        p.relative_to(tmp_path / "streamed").as_posix()
        for p in (tmp_path / "streamed" / "DICOM").rglob("*")
        if p.is_file()
    }
    described = {f.rel for f in streamed.streamed}
    instance_paths = {e.path for e in streamed.manifest.entries if e.sop_instance_uid}
    assert written.isdisjoint(described) and written | described == instance_paths
    assert len(written) == len(streamed.transcoded)

    # The same File IDs, sizes and digests as the staged build.
    by_path = {e.path: e for e in staged.manifest.entries if e.sop_instance_uid}
    for entry in streamed.manifest.entries:
        if entry.sop_instance_uid:
            assert (entry.size, entry.sha256) == (
                by_path[entry.path].size,
                by_path[entry.path].sha256,
            ), entry.path

    image = _image(tmp_path / "streamed", streamed, tmp_path / "streamed.iso")
    report = verify_image(image, streamed.manifest, expected_sha256=None)
    assert report.ok, report.summary()

    disc = extract_iso(image, tmp_path / "disc")
    assert dciodvfy_errors(disc / "DICOMDIR") == []
    assert fileset_sop_uids(disc) == {
        e.sop_instance_uid for e in streamed.manifest.entries if e.sop_instance_uid
    }
    for rel in sorted(instance_paths):
        on_disc = disc / rel
        assert dcmdump_ok(on_disc), rel
        assert on_disc.read_bytes() == (tmp_path / "staged" / rel).read_bytes(), rel
        digest = hashlib.sha256(on_disc.read_bytes()).hexdigest()
        assert digest == by_path[rel].sha256


def test_web_content_renders_streamed_instances(tmp_path: Path) -> None:
    sources = _study(tmp_path / "src", 3)
    root = tmp_path / "root"
    result = build_fileset(
        sources, root, get_profile("STD-GEN-CD"), fileset_id="T", stream_copies=True
    )
    assert len(result.streamed) == 3
    manifest = write_pdi_content(
        root,
        PdiOptions(
            institution_name="Test Hospital",
            institution_contact="Radiology",
            application_version="1",
            web_content=True,
        ),
        external_files={f.rel: f.source for f in result.streamed},
    )
    jpegs = sorted((root / WEB_DIR).rglob("*.JPG"))
    assert len(jpegs) == 3
    for jpeg in jpegs:
        with Image.open(jpeg) as picture:
            assert picture.format == "JPEG" and picture.size == (32, 32)
    everything = Manifest([*result.manifest.entries, *manifest.entries])
    build = build_iso(
        root,
        tmp_path / "web.iso",
        volume_label="WEB",
        joliet=True,
        extra_files=result.streamed,
    )
    report = verify_image(build.path, everything, expected_sha256=build.sha256)
    assert report.ok, report.summary()


def _streamed_set(tmp_path: Path) -> tuple[Path, FileSetResult]:
    sources = _study(tmp_path / "store", 4)
    root = tmp_path / "root"
    result = build_fileset(
        sources, root, get_profile("STD-GEN-CD"), fileset_id="T", stream_copies=True
    )
    assert len(result.streamed) == 4
    return root, result


def _no_image_left(out: Path) -> bool:
    return not out.exists() and not out.with_name(out.name + ".part").exists()


def test_source_vanishing_before_the_image_fails_clearly(tmp_path: Path) -> None:
    root, result = _streamed_set(tmp_path)
    victim = result.streamed[2].source
    victim.unlink()
    out = tmp_path / "disc.iso"
    with pytest.raises(SourceFileError, match="missing") as caught:
        _image(root, result, out)
    assert victim.name in str(caught.value)
    assert _no_image_left(out)


@pytest.mark.parametrize("change", ["replaced", "truncated", "rewritten"])
def test_changed_source_fails_the_image(change: str, tmp_path: Path) -> None:
    root, result = _streamed_set(tmp_path)
    victim = result.streamed[1].source
    data = victim.read_bytes()
    if change == "replaced":  # same bytes, another file (the store replaces, never edits)
        other = victim.with_suffix(".new")
        other.write_bytes(data)
        os.replace(other, victim)
    elif change == "truncated":
        with victim.open("r+b") as fh:
            fh.truncate(len(data) - 100)
    else:  # same size and inode, other content, later modification time
        st = victim.stat()
        with victim.open("r+b") as fh:
            fh.seek(len(data) - 10)
            fh.write(b"\xff" * 10)
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    out = tmp_path / "disc.iso"
    with pytest.raises(SourceFileError, match="changed"):
        _image(root, result, out)
    assert _no_image_left(out)


def _described(tmp_path: Path, head: bytes, body: bytes, offset: int) -> StreamedFile:
    source = tmp_path / "source.bin"
    source.write_bytes(body)
    return StreamedFile(
        "DICOM/I0",
        source,
        head,
        offset,
        len(body) - offset,
        SourceIdentity.of(source.stat()),
        hashlib.sha256(head + body[offset:]).hexdigest(),
    )


def test_reader_serves_head_then_range(tmp_path: Path) -> None:
    body = bytes(range(256)) * 40
    file = _described(tmp_path, b"HEADER-BYTES", body, 100)
    expected = b"HEADER-BYTES" + body[100:]
    assert file.size == len(expected)
    with file.open() as reader:
        got = bytearray()
        for size in (5, 7, 1, 1000, 3, 1 << 20):  # crosses the head boundary and the end
            got += reader.read(size)
        assert bytes(got) == expected and reader.read(10) == b""
        assert reader.seek(-20, io.SEEK_END) == len(expected) - 20
        assert reader.read() == expected[-20:]
        reader.seek(3)
        buffer = bytearray(15)
        assert reader.readinto(buffer) == 15 and bytes(buffer) == expected[3:18]
        reader.seek(0)
        assert io.BufferedReader(reader).read() == expected


def test_reader_refuses_a_source_shorter_than_described(tmp_path: Path) -> None:
    body = b"x" * 5000
    file = _described(tmp_path, b"H", body, 0)
    # Described longer than the file is (same identity): the reader must not pad with zeros.
    longer = StreamedFile(file.rel, file.source, file.head, 0, 6000, file.identity, file.sha256)
    with StreamedReader(longer) as reader, pytest.raises(SourceFileError, match="shrank"):
        reader.read(10_000)


def test_digests_taken_later_match_and_prove_the_image(tmp_path: Path) -> None:
    sources = _study(tmp_path / "store", 4)
    profile = get_profile("STD-GEN-CD")
    now = build_fileset(sources, tmp_path / "now", profile, fileset_id="T", stream_copies=True)
    later = build_fileset(
        sources,
        tmp_path / "later",
        profile,
        fileset_id="T",
        stream_copies=True,
        hash_streamed=False,
    )
    pending = [e for e in later.manifest.entries if e.sop_instance_uid]
    assert len(pending) == 4 and all(e.sha256 == "" for e in pending)
    image = _image(tmp_path / "later", later, tmp_path / "later.iso")
    filled = with_digests(later.manifest, later.streamed)
    expected = {e.path: e.sha256 for e in now.manifest.entries if e.sop_instance_uid}
    assert {e.path: e.sha256 for e in filled.entries if e.sop_instance_uid} == expected
    report = verify_image(image, filled, expected_sha256=None)
    assert report.ok, report.summary()

    # A source replaced after the image was made cannot prove it any more: refused by name.
    victim = later.streamed[0].source
    other = victim.with_suffix(".new")
    other.write_bytes(victim.read_bytes())
    os.replace(other, victim)
    with pytest.raises(SourceFileError, match="changed") as caught:
        with_digests(later.manifest, later.streamed)
    assert victim.name in str(caught.value)


def test_catalog_from_the_plan_is_the_catalog_read_back(tmp_path: Path) -> None:
    """PDI and the label use the tree the DICOMDIR was encoded from; it must be exactly what
    reading the DICOMDIR back gives (both streamed and staged instances)."""
    sources = []
    (tmp_path / "src").mkdir()
    for p in range(2):
        for s in range(2):
            study = generate_uid()
            for series_number in (2, 1):
                series = generate_uid()
                for i in (3, 1, 2):
                    path = make_instance(
                        tmp_path / "src",
                        patient_name=f"PATIENT^{p}",
                        patient_id=f"PID{p}",
                        birth_date=f"19{60 + p}0101",
                        study_uid=study,
                        series_uid=series,
                        instance_number=i,
                        rows=8,
                        columns=8,
                    )
                    ds = pydicom.dcmread(path)
                    ds.SeriesNumber = series_number
                    ds.StudyDate = f"2024010{s + 1}"
                    ds.StudyDescription = f"STUDY {p}-{s}"
                    ds.save_as(path, enforce_file_format=True)
                    sources.append(path)
    for stream in (False, True):
        root = (tmp_path / f"root-{stream}").resolve()
        result = build_fileset(
            sources, root, get_profile("STD-GEN-CD"), fileset_id="T", stream_copies=stream
        )
        assert result.directory is not None
        external = {f.rel: f.source for f in result.streamed}
        planned = catalog_from_plan(result.directory, root, external)
        assert planned == read_catalog(root, external)
        assert planned.summary().instances == len(sources)
        options = {"institution": "X", "web": False, "disc": 1, "discs": 1, "with_patient": True}
        label = DiscLabel.from_catalog(planned, **options)  # type: ignore[arg-type]
        assert label == DiscLabel.from_fileset(root, **options)  # type: ignore[arg-type]
        assert label.patient_name == "PATIENT 0; PATIENT 1" and len(label.descriptions) == 4
