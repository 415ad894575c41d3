"""The fast paths of disc reading give exactly what the plain paths give.

Kernel copies (copy_file_range, sendfile, pread/write) stage the same bytes as reading through
pycdlib, a truncated image is reported the same way, the overlapped scan builds the same
catalog as the sequential one (on the hostile disc of test_importer_reader), and the
prefix-reading header file serves the same bytes as the file.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pydicom
import pytest

from appliance.importer.catalog import scan
from appliance.importer.header import inspect_header
from appliance.importer.headfile import HeadFile
from appliance.importer.kernel_copy import ExtentCopier, Method
from appliance.importer.limits import ReadLimits
from appliance.importer.model import Catalog
from appliance.importer.reading import scan_source
from appliance.importer.source import Extent, ImageSource, SourceEntry, open_source
from appliance.importer.staging import StagingReport, stage
from appliance.media.secure import SecureFileReader
from tests.peers import import_discs as discs
from tests.test_importer_reader import clean_fileset, hostile  # noqa: F401  (fixtures)

LIMITS = ReadLimits()


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root by relative path, with its content."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


class _StreamOnly(ImageSource):
    """The same image read only through pycdlib streams (no extents: the plain path)."""

    def extent(self, entry: SourceEntry) -> Extent | None:
        return None


def _stage_plain(image: Path, target: Path) -> StagingReport:
    with _StreamOnly(image, open_source(image).kind) as source:
        return stage(source, target, limits=LIMITS)


def _report_fields(report: StagingReport) -> tuple[object, ...]:
    return (
        report.files_total,
        report.bytes_total,
        report.staged_files,
        report.staged_bytes,
        report.non_dicom,
        report.non_dicom_paths,
        report.skipped,
    )


@pytest.mark.parametrize("method", list(Method), ids=[m.name.lower() for m in Method])
def test_kernel_copies_stage_the_same_bytes_as_streams(
    hostile: dict[str, object],  # noqa: F811
    tmp_path: Path,
    method: Method,
) -> None:
    image = hostile["image"]
    assert isinstance(image, Path)
    plain = _stage_plain(image, tmp_path / "plain")
    with open_source(image) as source:
        assert source.extent(next(e for e in source.entries() if e.size)) is not None
        fast = stage(source, tmp_path / "fast", limits=LIMITS, copy_method=method)
    assert _report_fields(fast) == _report_fields(plain)
    assert fast.staged_files > 10
    assert _tree(tmp_path / "fast") == _tree(tmp_path / "plain")


def test_truncated_image_is_reported_like_the_plain_path(
    clean_fileset: discs.FileSet,  # noqa: F811
    tmp_path: Path,
) -> None:
    image = discs.make_iso(clean_fileset.root, tmp_path / "disc.iso")
    with open_source(image) as source:
        last = max((e for e in source.entries() if e.size), key=lambda e: e.location)
    # Cut the image in the middle of the data of the file stored last.
    with image.open("r+b") as fh:
        fh.truncate(last.location + last.size // 2)
    plain = _stage_plain(image, tmp_path / "plain")
    with open_source(image) as source:
        fast = stage(source, tmp_path / "fast", limits=LIMITS)
    assert _report_fields(fast) == _report_fields(plain)
    staged = _tree(tmp_path / "fast")
    assert staged == _tree(tmp_path / "plain")
    # pycdlib clamps the length of a file cut by the end of the image: both paths stage the
    # part that is there (the scan then judges it), neither reads past the end.
    assert 0 < len(staged[last.path]) < last.size
    assert not any(".partial" in name for name in staged)


def test_kernel_copy_falls_back_when_the_source_is_a_device(tmp_path: Path) -> None:
    # copy_file_range refuses character and block devices: the copier must degrade, not fail.
    target = tmp_path / "zeros"
    src = os.open("/dev/zero", os.O_RDONLY)
    dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    copier = ExtentCopier()
    try:
        copied = copier.copy(src, 4096, 3 * 1024 * 1024 + 5, dst)
    finally:
        os.close(src)
        os.close(dst)
    assert copier.method is not Method.COPY_FILE_RANGE
    assert copied == 3 * 1024 * 1024 + 5
    assert target.read_bytes() == bytes(copied)


def _portable(catalog: Catalog, work: Path) -> dict[str, object]:
    """The catalog as a dict with the work folder's own paths made relative."""
    text = repr(dataclasses.asdict(catalog))
    return {"catalog": text.replace(str(work), "<work>")}


@pytest.mark.parametrize("password", [None, discs.PASSWORD], ids=["locked", "unlocked"])
def test_overlapped_read_builds_the_same_catalog(
    hostile: dict[str, object],  # noqa: F811
    tmp_path: Path,
    password: str | None,
) -> None:
    image = hostile["image"]
    assert isinstance(image, Path)
    catalogs = []
    for overlap in (False, True):
        work = tmp_path / f"overlap-{overlap}"
        credentials = SecureFileReader(passwords=[password]) if password else None
        catalog = scan_source(image, work, LIMITS, credentials, overlap=overlap)
        assert catalog.source.pop("staging_seconds") >= 0
        catalogs.append(_portable(catalog, work))
    assert catalogs[0] == catalogs[1]
    assert "DICOM/TRUNC001" in catalogs[1]["catalog"]  # type: ignore[operator]


def test_scan_ignores_an_examination_of_another_file(
    clean_fileset: discs.FileSet,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A result for a path whose file changed since it was examined is not trusted."""
    staged = tmp_path / "work"
    first = scan_source(clean_fileset.root, staged, LIMITS)
    victim = first.instances[0]
    from appliance.importer.catalog import examine

    stale = examine(Path(victim.path), victim.disc_path, LIMITS, encrypted=False)
    Path(victim.path).write_bytes(b"not DICOM any more" * 10)
    again = scan(staged / "disc", limits=LIMITS, examined={victim.disc_path: stale})
    assert victim.sop_instance_uid not in {i.sop_instance_uid for i in again.instances}
    assert again.non_dicom == first.non_dicom + 1


def test_head_file_serves_the_file_bytes_across_its_prefix(tmp_path: Path) -> None:
    path = tmp_path / "data"
    content = os.urandom(10_000)
    path.write_bytes(content)
    with HeadFile(path, prefix=1000) as fh:
        assert fh.size == len(content) and fh.prefix == content[:1000]
        assert fh.read(10) == content[:10] and fh.tell() == 10
        fh.seek(990)
        assert fh.read(20) == content[990:1010]  # half prefix, half file
        assert fh.read(5000) == content[1010:6010]
        fh.seek(-10, os.SEEK_END)
        assert fh.read(100) == content[-10:]  # short at the end, like a file
        assert fh.read(8) == b""
        fh.seek(20_000)
        assert fh.tell() == 20_000 and fh.read(4) == b""
        fh.seek(0)
        assert fh.read() == content


def test_header_beyond_the_prefix_reads_like_pydicom(tmp_path: Path) -> None:
    """A header far larger than the prefix (a big private value) is read through the file."""
    ds = pydicom.dcmread(discs.sample("CT_small.dcm"))
    ds.add_new(0x00091010, "OB", os.urandom(200_000))  # below the defer size: read in full
    path = tmp_path / "big-header.dcm"
    ds.save_as(path, enforce_file_format=True)
    header = inspect_header(path)
    assert header.pixel_data is not None and header.pixel_data.offset > 200_000
    expected = pydicom.dcmread(path, stop_before_pixels=True)
    assert header.dataset[0x00091010].value == ds[0x00091010].value
    assert header.dataset.SOPInstanceUID == expected.SOPInstanceUID
    assert header.file_size == path.stat().st_size


def test_prescanner_examines_every_staged_file(
    clean_fileset: discs.FileSet,  # noqa: F811
    tmp_path: Path,
) -> None:
    from appliance.importer.prescan import Prescanner

    image = discs.make_iso(clean_fileset.root, tmp_path / "disc.iso")
    with Prescanner(LIMITS) as prescanner, open_source(image) as source:
        report = stage(source, tmp_path / "disc", limits=LIMITS, on_staged=prescanner.submit)
        examined = prescanner.results()
    assert set(examined) == set(_tree(tmp_path / "disc")) == {*clean_fileset.files, "DICOMDIR"}
    assert report.staged_files == len(examined)
    catalog = scan(tmp_path / "disc", limits=LIMITS, examined=examined)
    assert {i.disc_path for i in catalog.instances} == set(clean_fileset.files)
