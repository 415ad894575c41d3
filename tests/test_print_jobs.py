"""Film printing end to end: a real kioskd receives images, `kioskctl print` queues jobs that its
printer runners send to DCMTK dcmprscp (grayscale) or to a scripted pynetdicom Print SCP
(colour, and every status the queue must react to). What the SCPs received is checked against
the test pattern and against the preview PNGs of the same request."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from tests.peers.data import TEST_FILES_DIR
from tests.peers.dcmprscp import Dcmprscp
from tests.peers.dcmtk import storescu
from tests.peers.kioskd import KioskdProcess
from tests.peers.lifecycle import start_without_probe
from tests.peers.print_data import pattern, write_pattern
from tests.peers.print_scp import Script, ScriptedPrintScp

pytestmark = pytest.mark.timeout(120)

FILM = [192, 256]
"""Printer pixel matrix of 8INX10IN in these tests: 2x2 boxes of 96 x 128, the pattern's 96 x 64
fits a box width exactly (no resampling), so its levels must arrive unchanged."""


def _printer(port: int, ae_title: str, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "ae_title": ae_title,
        "host": "127.0.0.1",
        "port": port,
        "film_sizes": ["8INX10IN", "14INX17IN"],
        "default_film_size": "8INX10IN",
        "pixel_matrix": {"8INX10IN": FILM, "14INX17IN": [280, 340]},
        "display_formats": ["STANDARD\\1,1", "STANDARD\\2,2", "STANDARD\\3,4", "ROW\\2,1"],
        "default_display_format": "STANDARD\\2,2",
        "max_attempts": 3,
        "retry_backoff_seconds": 0.2,
    }
    settings.update(extra)
    return settings


class Images:
    """The instances the kiosk holds for these tests, by role."""

    def __init__(self, directory: Path) -> None:
        self.study = generate_uid()
        self.plain = write_pattern(directory, self.study, number=1)
        self.cr = write_pattern(directory, self.study, monochrome1=True, number=2)
        self.multiframe = write_pattern(directory, self.study, frames=3, number=3)
        self.ct = TEST_FILES_DIR / "CT_small.dcm"
        self.color = TEST_FILES_DIR / "examples_rgb_color.dcm"

    def files(self) -> list[Path]:
        """Everything to send to the kiosk."""
        return [self.plain, self.cr, self.multiframe, self.ct, self.color]

    @staticmethod
    def uid(path: Path) -> str:
        """SOP Instance UID of a file."""
        return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


@pytest.fixture(scope="module")
def dcmprscp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dcmprscp]:
    """DCMTK's grayscale Print SCP."""
    scp = Dcmprscp(tmp_path_factory.mktemp("dcmprscp"))
    scp.start()
    yield scp
    scp.stop()


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedPrintScp]:
    """The scripted colour/grayscale Print SCP (script reset by each test that uses it)."""
    scp = ScriptedPrintScp()
    scp.start()
    yield scp
    scp.stop()


@pytest.fixture(scope="module")
def kiosk(
    tmp_path_factory: pytest.TempPathFactory, dcmprscp: Dcmprscp, scripted: ScriptedPrintScp
) -> Iterator[tuple[KioskdProcess, Images]]:
    """One kioskd with every test printer, holding the test images."""
    root = tmp_path_factory.mktemp("kiosk")
    settings = {
        "printers": {
            "dry": _printer(dcmprscp.port, dcmprscp.ae_title),
            "dry12": _printer(dcmprscp.port, dcmprscp.ae_title, bits=12),
            "drycolor": _printer(dcmprscp.port, dcmprscp.ae_title, color=True),
            "scripted": _printer(scripted.port, scripted.ae_title, color=True),
            "scripted_gray": _printer(scripted.port, scripted.ae_title),
            "scripted_session": _printer(scripted.port, scripted.ae_title, print_on="film_session"),
            "nowhere": _printer(1, "NOWHERE"),
        }
    }
    daemon = KioskdProcess(root / "kioskd", settings)
    start_without_probe(daemon)
    images = Images(root)
    sent = storescu(daemon.port, images.files())
    assert sent.returncode == 0, sent.stderr
    yield daemon, images
    daemon.stop()
    log = daemon.log()
    assert "Traceback" not in log, log[-3000:]
    # Patient data never reaches the log (the pattern's name and ID, CT_small's name).
    for phi in ("PRINT^PATTERN", "PRT-1", "CompressedSamples"):
        assert phi not in log


def _ctl(daemon: KioskdProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return daemon.kioskctl("--json", *args)


def _print(daemon: KioskdProcess, printer: str, *args: str) -> dict[str, Any]:
    """`kioskctl print ... --wait` and the final job."""
    done = _ctl(daemon, "print", printer, *args, "--wait", "--timeout", "60")
    assert done.stdout, done.stderr
    job: dict[str, Any] = json.loads(done.stdout)
    return job


def _preview(daemon: KioskdProcess, out: Path, printer: str, *args: str) -> dict[str, Any]:
    done = _ctl(daemon, "print", printer, *args, "--preview", str(out))
    assert done.returncode == 0, done.stderr
    preview: dict[str, Any] = json.loads(done.stdout)
    return preview


def _centred_crop(
    film: np.ndarray[Any, Any], box: tuple[int, int, int, int], shape: tuple[int, ...]
) -> np.ndarray[Any, Any]:
    """The part of a preview where an image of `shape` sits, centred in `box` (x, y, w, h)."""
    x, y, width, height = box
    rows, columns = shape[0], shape[1]
    top, left = y + (height - rows) // 2, x + (width - columns) // 2
    return film[top : top + rows, left : left + columns]


def _grid(columns: int, rows: int, across: int, down: int) -> list[tuple[int, int, int, int]]:
    """Image box rectangles of STANDARD\\across,down, row by row (the test's own arithmetic)."""
    xs = [columns * i // across for i in range(across + 1)]
    ys = [rows * j // down for j in range(down + 1)]
    return [
        (xs[i], ys[j], xs[i + 1] - xs[i], ys[j + 1] - ys[j])
        for j in range(down)
        for i in range(across)
    ]


# -- DCMTK dcmprscp -------------------------------------------------------------------------------


def test_ct_cr_and_multiframe_on_two_films_match_pattern_and_preview(
    kiosk: tuple[KioskdProcess, Images], dcmprscp: Dcmprscp, tmp_path: Path
) -> None:
    daemon, images = kiosk
    dcmprscp.new_films()
    uids = [images.uid(p) for p in (images.plain, images.cr, images.multiframe, images.ct)]
    job = _print(daemon, "dry", *uids, "--format", "STANDARD\\2,2")
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert (result["films"], result["films_done"], result["images"]) == (2, 2, 6)
    assert result["warnings"] == []
    assert result["printer_status"]["status"] == "NORMAL"

    films = dcmprscp.new_films()
    assert [f.display_format for f in films] == ["STANDARD\\2,2", "STANDARD\\2,2"]
    assert [sorted(f.boxes) for f in films] == [[1, 2, 3, 4], [1, 2]]
    assert {f.originator for f in films} == {daemon.ae_title}
    assert {f.film_size for f in films} == {"8INX10IN"}
    for film in films:
        for hardcopy in film.boxes.values():
            assert hardcopy.PhotometricInterpretation == "MONOCHROME2"
            assert (hardcopy.BitsStored, hardcopy.SamplesPerPixel) == (8, 1)

    first, second = films
    expected = pattern()
    # The pattern fits its 96-pixel-wide box exactly: geometry and levels unchanged.
    assert np.array_equal(first.pixels(1), expected)
    # MONOCHROME1 (CR): its minimum prints white, sent as MONOCHROME2.
    assert np.array_equal(first.pixels(2), 255 - expected)
    # The three frames of the multi-frame image, in order, fill boxes 3, 4 and film 2 box 1.
    assert np.array_equal(first.pixels(3), pattern(shift=0))
    assert np.array_equal(first.pixels(4), pattern(shift=10))
    assert np.array_equal(second.pixels(1), pattern(shift=20))
    # CT_small (128 x 128, signed 16-bit) shrinks to the box width, square.
    assert second.pixels(2).shape == (96, 96)

    preview = _preview(daemon, tmp_path, "dry", *uids, "--format", "STANDARD\\2,2")
    assert preview["films"] == 2 and preview["film_pixels"] == FILM
    boxes = _grid(FILM[0], FILM[1], 2, 2)
    for path, film in zip(preview["previews"], films, strict=True):
        picture = Image.open(path)
        assert picture.size == tuple(FILM) and picture.mode == "L"
        pixels = np.asarray(picture)
        for position, hardcopy in film.boxes.items():
            received = np.asarray(hardcopy.pixel_array)
            crop = _centred_crop(pixels, boxes[position - 1], received.shape)
            assert np.array_equal(crop, received), f"{path} box {position}"
    # An empty box of the last film stays the film's blank (black without configured density).
    empty = np.asarray(Image.open(preview["previews"][1]))
    x, y, width, height = boxes[3]
    assert int(empty[y : y + height, x : x + width].max()) == 0


def test_one_by_one_landscape_twelve_bit_and_three_by_four(
    kiosk: tuple[KioskdProcess, Images], dcmprscp: Dcmprscp
) -> None:
    daemon, images = kiosk
    dcmprscp.new_films()
    plain = images.uid(images.plain)
    job = _print(daemon, "dry12", plain, "--format", "STANDARD\\1,1", "--orientation", "LANDSCAPE")
    assert job["state"] == "succeeded", job
    (film,) = dcmprscp.new_films()
    assert (film.display_format, film.orientation) == ("STANDARD\\1,1", "LANDSCAPE")
    hardcopy = film.boxes[1]
    assert (hardcopy.BitsStored, hardcopy.BitsAllocated) == (12, 16)
    # Landscape 256 x 192 box: 96 x 64 scaled by 8/3 to 256 x 171 (aspect ratio kept).
    assert film.pixels(1).shape == (171, 256)
    assert int(film.pixels(1).max()) == 4095 and int(film.pixels(1).min()) == 0

    # A study (its three objects, the multi-frame one by its first frame) and two instances.
    others = [images.uid(images.ct), images.uid(images.color)]
    job = _print(
        daemon, "dry", images.study, *others, "--format", "STANDARD\\3,4", "--frames", "first"
    )
    assert job["state"] == "succeeded", job
    assert job["result"]["images"] == 5  # plain, CR, first frame, CT, the colour US as gray
    (film,) = dcmprscp.new_films()
    assert film.display_format == "STANDARD\\3,4"
    assert sorted(film.boxes) == [1, 2, 3, 4, 5]


def test_basic_color_is_refused_by_dcmprscp_with_a_clear_message(
    kiosk: tuple[KioskdProcess, Images],
) -> None:
    daemon, images = kiosk
    job = _print(daemon, "drycolor", images.uid(images.plain))
    assert job["state"] == "failed"
    assert job["attempts"] == 1, "a refused meta SOP class is not retried"
    assert "does not accept Basic Color Print Management" in job["error"]
    assert "printers.drycolor.color" in job["error"]


def test_refused_layout_fails_with_the_status_in_words(
    kiosk: tuple[KioskdProcess, Images], dcmprscp: Dcmprscp
) -> None:
    daemon, images = kiosk
    job = _print(daemon, "dry", images.uid(images.plain), "--format", "ROW\\2,1")
    assert job["state"] == "failed"
    assert job["attempts"] == 1
    assert "film box N-CREATE failed" in job["error"]
    assert "invalid attribute value" in job["error"] and "0x0106" in job["error"]
    assert dcmprscp.new_films() == []


def test_printer_status_command(kiosk: tuple[KioskdProcess, Images]) -> None:
    daemon, _ = kiosk
    done = _ctl(daemon, "printer", "dry", "status")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["reachable"] and status["status"]["status"] == "NORMAL"
    assert status["queued_jobs"] == []
    human = daemon.kioskctl("printer", "dry", "status")
    assert "status: NORMAL" in human.stdout
    down = _ctl(daemon, "printer", "nowhere", "status")
    assert down.returncode == 1
    assert "no association with printer nowhere" in json.loads(down.stdout)["error"]
    unknown = daemon.kioskctl("printer", "nosuch", "status")
    assert unknown.returncode == 1 and "unknown printer 'nosuch'" in unknown.stderr


def test_bad_requests_are_refused_at_submission(kiosk: tuple[KioskdProcess, Images]) -> None:
    daemon, images = kiosk
    plain = images.uid(images.plain)
    cases = {
        ("--format", "STANDARD\\5,5"): "offers no image display format",
        ("--size", "A4"): "offers no film size",
        ("--copies", "100"): "copies must be between 1 and 99",
        ("--window", "nonsense"): "window 'nonsense'",
    }
    for args, words in cases.items():
        done = daemon.kioskctl("print", "dry", plain, *args)
        assert done.returncode == 1 and words in done.stderr, (args, done.stderr)
    done = daemon.kioskctl("print", "dry", "1.2.3.4.5")
    assert "1.2.3.4.5 is not a study, series or instance in the store" in done.stderr


# -- the scripted SCP: colour and statuses ----------------------------------------------------


def test_color_printer_gets_rgb_by_plane(
    kiosk: tuple[KioskdProcess, Images], scripted: ScriptedPrintScp, tmp_path: Path
) -> None:
    daemon, images = kiosk
    scripted.reset()
    uids = [images.uid(images.color), images.uid(images.plain)]
    job = _print(daemon, "scripted", *uids, "--format", "STANDARD\\2,2", "--window", "auto")
    assert job["state"] == "succeeded", job
    assert [op for op in scripted.operations() if op.endswith("print")] == ["film_box_print"]
    color, gray = sorted(scripted.boxes, key=lambda b: b.position)
    assert (color.photometric, color.planar, color.bits_stored) == ("RGB", 1, 8)
    assert [b.slot for b in (color, gray)] == [1, 2]
    # The US (320 x 240) fits the 96 x 128 box at 96 x 72; compare with our own resize.
    source = Image.fromarray(pydicom.dcmread(images.color).pixel_array)
    reference = np.asarray(source.resize((96, 72), Image.Resampling.LANCZOS), dtype=np.int16)
    assert color.pixels.shape == (72, 96, 3)
    assert float(np.abs(color.pixels.astype(np.int16) - reference).mean()) < 2.0
    # A grayscale image on a colour printer: the same levels in R, G and B.
    assert gray.pixels.shape == (64, 96, 3)
    for channel in range(3):
        assert np.array_equal(gray.pixels[..., channel], pattern())
    preview = _preview(daemon, tmp_path, "scripted", *uids, "--format", "STANDARD\\2,2")
    picture = np.asarray(Image.open(preview["previews"][0]))
    assert picture.shape == (FILM[1], FILM[0], 3)
    boxes = _grid(FILM[0], FILM[1], 2, 2)
    for received in (color, gray):
        crop = _centred_crop(picture, boxes[received.position - 1], received.pixels.shape)
        assert np.array_equal(crop, received.pixels)


def test_warnings_succeed_and_are_recorded_with_printer_events(
    kiosk: tuple[KioskdProcess, Images], scripted: ScriptedPrintScp
) -> None:
    daemon, images = kiosk
    scripted.reset(
        Script(
            statuses={"film_box_create": [0xB605], "film_box_print": [0xB604]},
            printer_status=("WARNING", "SUPPLY LOW"),
            event_on_print=(2, "FILM TRANSP NRDY"),
        )
    )
    job = _print(daemon, "scripted_gray", images.uid(images.plain))
    assert job["state"] == "succeeded", job
    warnings = " | ".join(job["result"]["warnings"])
    assert "0xB605" in warnings and "density" in warnings
    assert "0xB604" in warnings and "shrank it" in warnings
    assert "printer status WARNING (SUPPLY LOW)" in warnings
    assert "printer reported WARNING (FILM TRANSP NRDY)" in warnings
    assert job["result"]["events"][0]["event"] == "WARNING"
    assert job["attempts"] == 1


def test_failure_status_fails_the_job_in_words(
    kiosk: tuple[KioskdProcess, Images], scripted: ScriptedPrintScp
) -> None:
    daemon, images = kiosk
    scripted.reset(Script(statuses={"film_box_create": [0xC616]}))
    job = _print(daemon, "scripted_gray", images.uid(images.plain))
    assert job["state"] == "failed"
    assert job["attempts"] == 1, "a refused film box is not retried"
    assert "0xC616" in job["error"]
    assert "earlier film box has not been printed" in job["error"]
    # The film session was deleted after the failure.
    assert scripted.operations()[-1] == "session_delete"


def test_busy_printer_is_retried_and_printed_films_are_not_repeated(
    kiosk: tuple[KioskdProcess, Images], scripted: ScriptedPrintScp
) -> None:
    daemon, images = kiosk
    scripted.reset(Script(statuses={"film_box_print": [0x0000, 0xC602]}))
    uids = [images.uid(images.plain), images.uid(images.cr)]
    job = _print(daemon, "scripted_gray", *uids, "--format", "STANDARD\\1,1")
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2
    ops = scripted.operations()
    assert ops.count("film_box_print") == 3  # film 1; film 2 refused; film 2 again
    assert len(scripted.printed) == 2
    assert [b.pixels.shape for b in scripted.boxes].count((128, 192)) == 3


def test_abort_mid_session_is_retried(
    kiosk: tuple[KioskdProcess, Images], scripted: ScriptedPrintScp
) -> None:
    daemon, images = kiosk
    scripted.reset(Script(abort_at={"image_box_set": 2}))
    uids = [images.uid(images.plain), images.uid(images.cr)]
    job = _print(daemon, "scripted_gray", *uids)
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2
    assert scripted.operations().count("session_create") == 2
    assert len(scripted.printed) == 1


def test_retries_end_after_max_attempts(
    kiosk: tuple[KioskdProcess, Images], scripted: ScriptedPrintScp
) -> None:
    daemon, images = kiosk
    scripted.reset(Script(statuses={"printer_get": [0x0213] * 5}))
    job = _print(daemon, "scripted_gray", images.uid(images.plain))
    assert job["state"] == "failed"
    assert job["attempts"] == 3
    assert "resource limitation" in job["error"] and "0x0213" in job["error"]
    assert scripted.operations() == ["printer_get"] * 3


def test_cancel_stops_at_a_safe_point_and_deletes_the_session(
    kiosk: tuple[KioskdProcess, Images], scripted: ScriptedPrintScp
) -> None:
    daemon, images = kiosk
    scripted.reset(Script(delay={"image_box_set": 0.5}))
    uids = [images.uid(p) for p in (images.plain, images.cr, images.multiframe)]
    queued = json.loads(
        _ctl(daemon, "print", "scripted_gray", *uids, "--format", "STANDARD\\1,1").stdout
    )
    deadline = time.monotonic() + 20
    while "image_box_set" not in scripted.operations() and time.monotonic() < deadline:
        time.sleep(0.05)
    _ctl(daemon, "cancel", str(queued["id"]))
    job = json.loads(_ctl(daemon, "job", str(queued["id"]), "--wait", "--timeout", "30").stdout)
    assert job["state"] == "cancelled", job
    assert len(scripted.printed) < 5
    assert scripted.operations()[-1] == "session_delete"


def test_restart_goes_on_after_the_films_already_printed(
    make_kioskd: Callable[..., KioskdProcess], tmp_path: Path
) -> None:
    scp = ScriptedPrintScp()
    scp.start()
    try:
        # Film 2's image box hangs long enough to kill the daemon while it waits.
        scp.reset(Script(stall_at={"image_box_set": 2}, stall_seconds=4))
        daemon = make_kioskd({"printers": {"film": _printer(scp.port, scp.ae_title)}}, start=False)
        start_without_probe(daemon)
        study = generate_uid()
        files = [write_pattern(tmp_path, study, number=n) for n in (1, 2)]
        assert storescu(daemon.port, files).returncode == 0
        queued = json.loads(
            _ctl(daemon, "print", "film", study, "--format", "STANDARD\\1,1").stdout
        )
        deadline = time.monotonic() + 20
        while scp.operations().count("image_box_set") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(scp.printed) == 1
        daemon.kill9()
        start_without_probe(daemon)
        done = _ctl(daemon, "job", str(queued["id"]), "--wait", "--timeout", "60")
        job = json.loads(done.stdout)
        assert job["state"] == "succeeded", job
        assert job["result"]["films_done"] == 2
        assert len(scp.printed) == 2, "film 1 was printed again"
        assert scp.operations().count("film_box_create") == 3
        assert job["result"]["warnings"] == []
    finally:
        scp.stop()


def test_film_session_printing_and_its_refusal(
    kiosk: tuple[KioskdProcess, Images], scripted: ScriptedPrintScp
) -> None:
    daemon, images = kiosk
    uids = [images.uid(images.plain), images.uid(images.cr)]
    scripted.reset()
    job = _print(daemon, "scripted_session", *uids, "--format", "STANDARD\\1,1")
    assert job["state"] == "succeeded", job
    ops = scripted.operations()
    assert ops.count("film_box_create") == 2 and ops.count("session_print") == 1
    assert "film_box_print" not in ops and len(scripted.printed) == 2
    # 0xB601 is not among the warnings that count as success: the job fails and says why.
    scripted.reset(Script(statuses={"session_print": [0xB601]}))
    job = _print(daemon, "scripted_session", *uids, "--format", "STANDARD\\1,1")
    assert job["state"] == "failed" and job["attempts"] == 1
    assert "0xB601" in job["error"] and 'print_on = "film_box"' in job["error"]
