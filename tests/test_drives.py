"""Drives: xorriso on stdio: pseudo-drives (real runs, no mocks), the pseudo directory, the fake."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from appliance.drives.base import MediaInfo, MediaState, OpticalDrive
from appliance.drives.disabled import DisabledDrive
from appliance.drives.errors import (
    DriveUnavailableError,
    MediaNotBlankError,
    MediaTooSmallError,
    NoMediaError,
    ReadBackError,
    TrayOpenError,
    WriteError,
)
from appliance.drives.factory import make_drive
from appliance.drives.fake import FakeDrive, FakeDriveFaults
from appliance.drives.pseudo import PseudoDriveDirectory, image_volume_label
from appliance.drives.xorriso import XorrisoDrive
from appliance.drives.xorriso_output import error_for, parse_media_info, progress_bytes
from appliance.drives.xorriso_run import run_xorriso
from appliance.errors import ConfigError
from appliance.media.iso import IsoResult, build_iso
from appliance.media.manifest import Manifest, ManifestEntry, sha256_file
from appliance.media.verify import verify_image
from tests.peers.data import make_instance

XORRISO = "/usr/bin/xorriso"


def _xorriso(*args: str) -> str:
    if not Path(XORRISO).exists():
        pytest.fail("xorriso is missing: install the peers (see PEERS.md)")
    done = subprocess.run([XORRISO, *args], check=False, capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


class Recorder:
    """A progress callback that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[IsoResult, Manifest]:
    """A small disc image with a Level-1 DICOM part and a long-named web page."""
    base = tmp_path_factory.mktemp("img")
    root = base / "content"
    manifest = Manifest()
    for number in range(1, 4):
        made = make_instance(base, instance_number=number, rows=64, columns=64)
        target = root / "DICOM" / "P1" / "S1" / f"IMG{number:05d}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(made, target)
        uid = str(pydicom.dcmread(target, stop_before_pixels=True).SOPInstanceUID)
        rel = target.relative_to(root).as_posix()
        manifest.add(ManifestEntry(rel, sha256_file(target), target.stat().st_size, uid))
    page = root / "IHE_PDI" / "a-long-page-name.html"
    page.parent.mkdir()
    page.write_text("<html></html>")
    manifest.add(ManifestEntry("IHE_PDI/a-long-page-name.html", sha256_file(page), 13))
    return build_iso(root, base / "disc.iso", volume_label="DRIVE_TEST", joliet=True), manifest


# --- XorrisoDrive on stdio: pseudo-drives -------------------------------------------------------


def test_blank_stdio_drive_reports_blank_media(tmp_path: Path) -> None:
    info = XorrisoDrive(f"stdio:{tmp_path / 'disc.iso'}").media_info()
    assert info.state == MediaState.BLANK
    assert info.media_type == "stdio file"
    assert info.overwriteable and info.writable
    assert info.capacity > 0


def test_burn_to_stdio_and_verify_with_xorriso_and_us(
    image: tuple[IsoResult, Manifest], tmp_path: Path
) -> None:
    result, manifest = image
    disc = tmp_path / "disc.iso"
    drive = XorrisoDrive(str(disc))  # a plain path means stdio:
    assert drive.xorriso_device == f"stdio:{disc}"
    progress = Recorder()
    drive.write(result.path, progress)
    assert progress.calls[0] == (0, result.size)
    assert progress.calls[-1] == (result.size, result.size)

    # The drive pads the track; the image is its first `size` bytes.
    assert disc.stat().st_size >= result.size
    assert drive.media_info().state == MediaState.APPENDABLE
    out = _xorriso("-md5", "on", "-indev", f"stdio:{disc}", "-check_media", "--")
    assert re.search(r"Media region :\s+0 ,\s+\d+ , \+ good", out), out
    # MD5 tags exist only in images xorriso masters itself; ours carry none, so none can mismatch.
    assert "md5_mismatch" not in out
    assert "Volume id    : 'DRIVE_TEST'" in out

    readback = Recorder()
    drive.verify_read_back(result.size, result.sha256, readback)
    assert readback.calls[-1] == (result.size, result.size)
    drive.verify_read_back(result.size, result.sha256, image=result.path)
    report = verify_image(disc, manifest, expected_sha256=None)
    assert report.ok, report.summary()


def test_rewriting_an_overwriteable_stdio_drive_starts_at_block_zero(
    image: tuple[IsoResult, Manifest], tmp_path: Path
) -> None:
    result, _ = image
    disc = tmp_path / "disc.iso"
    disc.write_bytes(b"old junk" * 100_000)
    drive = XorrisoDrive(f"stdio:{disc}")
    info = drive.media_info()  # xorriso calls a file without an ISO session "closed"
    assert info.state == MediaState.CLOSED
    assert info.writable and info.capacity > 800_000
    drive.write(result.path)
    assert drive.read_back_sha256(result.size) == result.sha256


@pytest.mark.parametrize(
    ("target", "error", "reason"),
    [
        ("a_directory", WriteError, "Is a directory"),
        ("a_file/disc.iso", WriteError, "Not a directory"),
        ("missing_dir/sub/disc.iso", DriveUnavailableError, "Neither stdio-path nor its directory"),
    ],
)
def test_xorriso_failures_become_typed_errors(
    image: tuple[IsoResult, Manifest],
    tmp_path: Path,
    target: str,
    error: type[Exception],
    reason: str,
) -> None:
    (tmp_path / "a_directory").mkdir()
    (tmp_path / "a_file").write_text("x")
    drive = XorrisoDrive(f"stdio:{tmp_path / target}")
    with pytest.raises(error, match=re.escape(reason)) as caught:
        drive.write(image[0].path)
    assert str(caught.value).startswith(("Writing the disc in drive", "Drive "))


def test_device_that_is_full_means_media_too_small(image: tuple[IsoResult, Manifest]) -> None:
    # /dev/full takes the open but every write fails with ENOSPC, as a too-small disc would.
    with pytest.raises(MediaTooSmallError, match="No space left on device"):
        XorrisoDrive("stdio:/dev/full").write(image[0].path)


def test_missing_device_and_missing_program_mean_unavailable(tmp_path: Path) -> None:
    if not Path("/dev/sr9").exists():
        with pytest.raises(DriveUnavailableError, match="sr9"):
            XorrisoDrive("/dev/sr9").media_info()
    with pytest.raises(DriveUnavailableError, match="cannot be started"):
        XorrisoDrive(str(tmp_path / "d.iso"), xorriso=str(tmp_path / "no-xorriso")).media_info()


def test_missing_image_is_a_write_error(tmp_path: Path) -> None:
    with pytest.raises(WriteError, match="cannot be read"):
        XorrisoDrive(str(tmp_path / "d.iso")).write(tmp_path / "nope.iso")


def test_short_disc_is_a_read_back_error(tmp_path: Path) -> None:
    disc = tmp_path / "d.iso"
    disc.write_bytes(b"\0" * 4096)
    with pytest.raises(ReadBackError, match="holds only 4096 of the 8192 bytes"):
        XorrisoDrive(str(disc)).read_back_sha256(8192)
    with pytest.raises(ReadBackError, match="checksum differs"):
        XorrisoDrive(str(disc)).verify_read_back(4096, "0" * 64)


def test_progress_callback_can_cancel_a_running_xorriso(tmp_path: Path) -> None:
    # An endless real burn (/dev/zero onto /dev/null) prints a progress line every second.
    class CancelledError(Exception):
        pass

    def on_line(line: str) -> None:
        if progress_bytes(line):
            raise CancelledError

    argv = [XORRISO, "-as", "cdrecord", "-v", "dev=stdio:/dev/null", "/dev/zero"]
    with pytest.raises(CancelledError):
        run_xorriso(argv, on_line=on_line, stall_timeout=30)
    stalled = run_xorriso(argv, stall_timeout=0.3)  # stopped before the first progress line
    assert stalled.timed_out
    assert stalled.returncode != 0


# --- parsing xorriso's words ---------------------------------------------------------------------


def test_media_report_of_real_xorriso_runs(
    image: tuple[IsoResult, Manifest], tmp_path: Path
) -> None:
    disc = tmp_path / "d.iso"
    blank = parse_media_info(_xorriso("-outdev", f"stdio:{disc}", "-toc"))
    assert (blank.state, blank.media_type, blank.overwriteable) == (
        MediaState.BLANK,
        "stdio file",
        True,
    )
    _xorriso("-as", "cdrecord", f"dev=stdio:{disc}", str(image[0].path))
    written = parse_media_info(_xorriso("-outdev", f"stdio:{disc}", "-toc"))
    assert written.state == MediaState.APPENDABLE
    assert written.capacity < blank.capacity


def test_media_reports_of_real_drives() -> None:
    # Lines as xorriso prints them for a burner (format of xorriso 1.5's -toc).
    empty = "Media current: is not recognizable\nMedia status : is not present\n"
    assert parse_media_info(empty) == MediaInfo(MediaState.NO_MEDIA, 0, "")
    closed = (
        "Media current: CD-R\nMedia status : is written , is closed\n"
        "Media blocks : 300 readable , 0 writable , 300 overall\n"
    )
    info = parse_media_info(closed)
    assert (info.state, info.media_type, info.capacity, info.writable) == (
        MediaState.CLOSED,
        "CD-R",
        0,
        False,
    )
    blank = (
        "Media current: DVD+R\nMedia status : is blank\n"
        "Media blocks : 0 readable , 2295104 writable , 2295104 overall\n"
    )
    assert parse_media_info(blank).capacity == 2295104 * 2048


def test_progress_and_error_lines() -> None:
    line = "xorriso : UPDATE :   10 of   29 MB written (fifo  0%) [buf  50%]"
    assert progress_bytes(line) == 10 * 1024 * 1024
    assert progress_bytes("xorriso : UPDATE :  165 MB written (fifo  0%) [buf  50%]  62.3x.") == (
        165 * 1024 * 1024
    )
    assert progress_bytes("Beginning to write data track.") is None
    closed = error_for(
        ["No suitable media detected", "MEDIA: closed or not recordable"],
        action="write",
        drive="sr0",
        returncode=5,
    )
    assert isinstance(closed, MediaNotBlankError)
    too_big = error_for(
        ["Image size 5761080s exceeds free space on media 2919686s"],
        action="write",
        drive="sr0",
        returncode=5,
    )
    assert isinstance(too_big, MediaTooSmallError)
    assert "exceeds free space" in str(too_big)


# --- PseudoDriveDirectory -------------------------------------------------------------------------


def test_pseudo_directory_writes_numbered_images(
    image: tuple[IsoResult, Manifest], tmp_path: Path
) -> None:
    result, _ = image
    drive = PseudoDriveDirectory(tmp_path / "discs")
    assert image_volume_label(result.path) == "DRIVE_TEST"
    for number in (1, 2):
        assert drive.media_info().state == MediaState.BLANK
        drive.write(result.path)
        assert drive.last_disc == tmp_path / "discs" / f"DRIVE_TEST-{number}.iso"
        drive.verify_read_back(result.size, result.sha256)
        drive.eject()
    assert sorted(p.name for p in (tmp_path / "discs").iterdir()) == [
        "DRIVE_TEST-1.iso",
        "DRIVE_TEST-2.iso",
    ]
    with pytest.raises(NoMediaError):
        drive.read_back_sha256(result.size)


def test_pseudo_directory_capacity_and_failures_leave_no_file(
    image: tuple[IsoResult, Manifest], tmp_path: Path
) -> None:
    result, _ = image
    small = PseudoDriveDirectory(tmp_path / "discs", capacity=result.size - 2048)
    with pytest.raises(MediaTooSmallError, match="does not fit"):
        small.write(result.path)
    broken = PseudoDriveDirectory(tmp_path / "discs", xorriso=str(tmp_path / "no-xorriso"))
    with pytest.raises(DriveUnavailableError):
        broken.write(result.path)
    assert list((tmp_path / "discs").iterdir()) == []


# --- FakeDrive, DisabledDrive, factory ------------------------------------------------------------


def test_fake_drive_healthy_cycle(image: tuple[IsoResult, Manifest], tmp_path: Path) -> None:
    result, manifest = image
    drive = FakeDrive(tmp_path)
    progress = Recorder()
    drive.write(result.path, progress)
    assert progress.calls[-1] == (result.size, result.size)
    drive.verify_read_back(result.size, result.sha256)
    assert verify_image(drive.current_disc, manifest, expected_sha256=result.sha256).ok
    assert drive.media_info().state == MediaState.CLOSED
    with pytest.raises(MediaNotBlankError, match="not blank"):
        drive.write(result.path)
    drive.eject()
    assert drive.media_info().state == MediaState.BLANK
    drive.write(result.path)
    assert [p.name for p in drive.discs] == ["fake-disc-1.iso", "fake-disc-2.iso"]


@pytest.mark.parametrize(
    ("faults", "state", "error", "words"),
    [
        (FakeDriveFaults(no_media=True), MediaState.NO_MEDIA, NoMediaError, "no disc"),
        (FakeDriveFaults(tray_open=True), MediaState.TRAY_OPEN, TrayOpenError, "tray"),
        (FakeDriveFaults(capacity=2048), MediaState.BLANK, MediaTooSmallError, "does not fit"),
    ],
)
def test_fake_drive_media_faults(
    image: tuple[IsoResult, Manifest],
    tmp_path: Path,
    faults: FakeDriveFaults,
    state: MediaState,
    error: type[Exception],
    words: str,
) -> None:
    drive = FakeDrive(tmp_path, faults)
    assert drive.media_info().state == state
    with pytest.raises(error, match=words):
        drive.write(image[0].path)
    assert drive.discs == []


def test_fake_drive_write_error_at_percent(
    image: tuple[IsoResult, Manifest], tmp_path: Path
) -> None:
    result, _ = image
    drive = FakeDrive(tmp_path, FakeDriveFaults(write_error_at_percent=50))
    progress = Recorder()
    with pytest.raises(WriteError, match="50 %"):
        drive.write(result.path, progress)
    assert progress.calls[-1][0] == result.size // 2
    assert drive.current_disc.stat().st_size == result.size // 2
    assert drive.media_info().state == MediaState.CLOSED  # a failed burn uses the disc up


def test_fake_drive_read_back_mismatch(image: tuple[IsoResult, Manifest], tmp_path: Path) -> None:
    result, _ = image
    drive = FakeDrive(tmp_path, FakeDriveFaults(read_back_mismatch=True))
    drive.write(result.path)
    with pytest.raises(ReadBackError, match="does not hold the image"):
        drive.verify_read_back(result.size, result.sha256)
    disc = drive.current_disc.read_bytes()
    assert hashlib.sha256(disc).hexdigest() != result.sha256


def test_read_back_compared_with_the_built_image(
    image: tuple[IsoResult, Manifest], tmp_path: Path
) -> None:
    """With the built image at hand the disc is compared byte for byte: a good disc passes
    (whatever digest is given), a damaged one fails naming the first differing byte, a short
    one fails as incomplete; without the image the digest decides."""
    result, _ = image
    good = FakeDrive(tmp_path / "good")
    good.write(result.path)
    progress = Recorder()
    good.verify_read_back(result.size, "0" * 64, progress, image=result.path)
    assert progress.calls[-1] == (result.size, result.size)
    with pytest.raises(ReadBackError, match="checksum differs"):
        good.verify_read_back(result.size, "0" * 64, image=tmp_path / "gone.iso")
    good.verify_read_back(result.size, result.sha256, image=tmp_path / "gone.iso")

    bad = FakeDrive(tmp_path / "bad", FakeDriveFaults(read_back_mismatch=True))
    bad.write(result.path)
    offset = result.size // 2  # where the fake drive flips a byte
    with pytest.raises(
        ReadBackError, match=rf"differs from byte {offset} \(sector {offset // 2048}\)"
    ):
        bad.verify_read_back(result.size, result.sha256, image=result.path)

    longer = tmp_path / "longer.iso"
    longer.write_bytes(result.path.read_bytes() + b"\0" * 4096)
    with pytest.raises(ReadBackError, match="holds only"):
        good.verify_read_back(result.size + 4096, "0" * 64, image=longer)


def test_disabled_drive_refuses_everything(tmp_path: Path) -> None:
    drive = DisabledDrive()
    for call in (
        drive.media_info,
        lambda: drive.write(tmp_path / "x.iso"),
        lambda: drive.read_back_sha256(1),
        drive.eject,
    ):
        with pytest.raises(DriveUnavailableError, match="No disc drive is configured"):
            call()


def test_factory_builds_each_kind(tmp_path: Path) -> None:
    kinds: dict[str, OpticalDrive] = {
        "xorriso": make_drive("xorriso", device=f"stdio:{tmp_path / 'd.iso'}"),
        "pseudo": make_drive("pseudo", directory=str(tmp_path / "discs")),
        "fake": make_drive("fake", directory=str(tmp_path), faults={"tray_open": True}),
        "disabled": make_drive("disabled"),
    }
    assert isinstance(kinds["xorriso"], XorrisoDrive)
    assert isinstance(kinds["pseudo"], PseudoDriveDirectory)
    assert isinstance(kinds["fake"], FakeDrive)
    assert kinds["fake"].media_info().state == MediaState.TRAY_OPEN
    assert isinstance(kinds["disabled"], DisabledDrive)
    with pytest.raises(ConfigError, match="not one of"):
        make_drive("floppy")
    with pytest.raises(ConfigError, match="needs a 'device'"):
        make_drive("xorriso")
    with pytest.raises(ConfigError, match="colour"):
        make_drive("pseudo", colour="red")
    with pytest.raises(ConfigError, match="bad faults"):
        make_drive("fake", directory=str(tmp_path), faults={"smoke": True})


@pytest.mark.hardware
def test_real_drive_burns_and_reads_back(image: tuple[IsoResult, Manifest]) -> None:
    """Needs a blank disc in the drive named by KIOSK_TEST_DRIVE (e.g. /dev/sr0); uses it up."""
    device = os.environ.get("KIOSK_TEST_DRIVE")
    if not device:
        pytest.skip("set KIOSK_TEST_DRIVE=/dev/srN with a blank disc loaded")
    result, _ = image
    drive = XorrisoDrive(device)
    assert drive.media_info().state == MediaState.BLANK
    progress = Recorder()
    drive.write(result.path, progress)
    assert progress.calls[-1] == (result.size, result.size)
    drive.verify_read_back(result.size, result.sha256)
    drive.eject()
