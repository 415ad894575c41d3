"""The printing package on its own: layouts, film sizes, windows, statuses, rendering for print,
request attributes and previews (no network, no daemon)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from appliance.config.schema import PrinterConfig
from appliance.media.render import VoiWindow
from appliance.printing import render as print_render
from appliance.printing.compose import PrintImage, SourceInstance, expand_frames, paginate
from appliance.printing.datasets import image_box_attributes
from appliance.printing.errors import PrintRequestError
from appliance.printing.filmsize import film_pixels, film_size_mm
from appliance.printing.layout import film_geometry, parse_display_format
from appliance.printing.options import PrintChoices, resolve_options
from appliance.printing.preview import preview_film
from appliance.printing.render import (
    PrintPixels,
    RenderSettings,
    fit_size,
    frame_view,
    render_image,
)
from appliance.printing.statuses import Outcome, interpret
from appliance.printing.window import WINDOW_PRESETS, WindowChoice, parse_window
from tests.peers.data import TEST_FILES_DIR
from tests.peers.print_data import pattern, write_pattern

# -- layout ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "boxes"),
    [("STANDARD\\1,1", 1), ("standard\\2,3", 6), ("ROW\\2,1", 3), ("COL\\1,3", 4)],
)
def test_display_formats_parse(text: str, boxes: int) -> None:
    fmt = parse_display_format(text)
    assert fmt.boxes == boxes
    assert fmt.text == text.upper()


@pytest.mark.parametrize(
    "text", ["STANDARD\\1", "STANDARD\\0,2", "SLIDE", "ROW\\", "STANDARD\\11,10"]
)
def test_bad_display_formats_are_refused(text: str) -> None:
    with pytest.raises(PrintRequestError):
        parse_display_format(text)


def test_standard_boxes_are_numbered_row_by_row() -> None:
    geometry = film_geometry(parse_display_format("STANDARD\\2,2"), 192, 256)
    assert [(b.position, b.x, b.y, b.width, b.height) for b in geometry.boxes] == [
        (1, 0, 0, 96, 128),
        (2, 96, 0, 96, 128),
        (3, 0, 128, 96, 128),
        (4, 96, 128, 96, 128),
    ]


def test_row_and_col_layouts() -> None:
    rows = film_geometry(parse_display_format("ROW\\2,1"), 200, 100)
    assert [(b.x, b.y, b.width, b.height) for b in rows.boxes] == [
        (0, 0, 100, 50),
        (100, 0, 100, 50),
        (0, 50, 200, 50),
    ]
    # COL: column by column, top to bottom (PS3.3 C.13.5.1).
    cols = film_geometry(parse_display_format("COL\\1,2"), 200, 100)
    assert [(b.position, b.x, b.y, b.width, b.height) for b in cols.boxes] == [
        (1, 0, 0, 100, 100),
        (2, 100, 0, 100, 50),
        (3, 100, 50, 100, 50),
    ]


def test_uneven_films_split_without_gaps() -> None:
    geometry = film_geometry(parse_display_format("STANDARD\\3,1"), 100, 10)
    assert [b.width for b in geometry.boxes] == [33, 33, 34]
    assert sum(b.width for b in geometry.boxes) == 100


def test_pagination_fills_films_in_order() -> None:
    images = [PrintImage(Path(f"{n}.dcm"), str(n)) for n in range(7)]
    films = paginate(images, 3)
    assert [f.number for f in films] == [1, 2, 3]
    assert [[i.sop_instance_uid for i in f.images] for f in films] == [
        ["0", "1", "2"],
        ["3", "4", "5"],
        ["6"],
    ]


def test_frames_are_expanded_and_non_images_skipped(tmp_path: Path) -> None:
    study = generate_uid()
    multi = write_pattern(tmp_path, study, frames=3)
    single = write_pattern(tmp_path, study)
    report = TEST_FILES_DIR / "test-SR.dcm"
    sources = [SourceInstance(p, p.name) for p in (multi, report, single)]
    images, skipped = expand_frames(sources, "all")
    assert [(i.sop_instance_uid, i.frame) for i in images] == [
        (multi.name, 0),
        (multi.name, 1),
        (multi.name, 2),
        (single.name, 0),
    ]
    assert skipped == [report.name]
    first, _ = expand_frames(sources, "first")
    assert len(first) == 2


# -- film sizes ---------------------------------------------------------------------------------


def test_film_sizes_in_mm() -> None:
    assert film_size_mm("14INX17IN") == pytest.approx((355.6, 431.8))
    assert film_size_mm("8_5INX11IN") == pytest.approx((215.9, 279.4))
    assert film_size_mm("24CMX30CM") == pytest.approx((240.0, 300.0))
    assert film_size_mm("A4") == (210.0, 297.0)
    with pytest.raises(PrintRequestError, match="pixel_matrix"):
        film_size_mm("LETTER")


def test_film_pixels_from_matrix_or_dpi() -> None:
    assert film_pixels("14INX17IN", "PORTRAIT", {}, 100) == (1400, 1700)
    assert film_pixels("14INX17IN", "LANDSCAPE", {}, 100) == (1700, 1400)
    assert film_pixels("14INX17IN", "PORTRAIT", {"14INX17IN": (4096, 4976)}, 100) == (4096, 4976)


# -- windows and statuses ----------------------------------------------------------------------


def test_window_choices() -> None:
    assert parse_window(None) == parse_window("auto") == WindowChoice()
    assert parse_window("object:2") == WindowChoice(index=1)
    assert parse_window("LUNG") == WindowChoice(WINDOW_PRESETS["lung"])
    assert parse_window("40,400") == parse_window("40/400") == WindowChoice(VoiWindow(40, 400))
    for bad in ("object:0", "40", "40,0", "lungs", "nan,5"):
        with pytest.raises(PrintRequestError):
            parse_window(bad)


SPEC_WARNINGS = [0x0116, 0x0107, 0xB600, *range(0xB602, 0xB60B)]
SPEC_FAILURES = [0x0106, 0x0110, 0x0112, 0x0117, 0x0120, 0x0121, 0x0211, 0x0213, 0xC600, 0xC6FF]


@pytest.mark.parametrize("code", SPEC_WARNINGS)
def test_listed_warnings_count_as_success(code: int) -> None:
    assert interpret(code).outcome is Outcome.WARNING


@pytest.mark.parametrize("code", [*SPEC_FAILURES, 0xB601, 0xA700, 0x0001])
def test_everything_else_fails_in_words(code: int) -> None:
    meaning = interpret(code)
    assert meaning.outcome is Outcome.FAILURE
    assert meaning.text and meaning.hex == f"0x{code:04X}"


def test_only_printer_side_shortages_are_retried() -> None:
    retried = {c for c in range(0x10000) if interpret(c).retryable}
    assert retried == {0x0110, 0x0213, 0xC601, 0xC602, 0xC605}


# -- rendering --------------------------------------------------------------------------------


def _image(path: Path, frame: int = 0) -> PrintImage:
    uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    return PrintImage(path, uid, frame)


def test_ct_with_a_preset_window_matches_the_standard_formula() -> None:
    path = TEST_FILES_DIR / "CT_small.dcm"
    ds = pydicom.dcmread(path)
    window = WINDOW_PRESETS["abdomen"]
    pixels = render_image(_image(path), (128, 128), RenderSettings(window=WindowChoice(window)))
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    low = window.center - 0.5 - (window.width - 1) / 2
    high = window.center - 0.5 + (window.width - 1) / 2
    expected = np.clip((hu - low) / (high - low), 0, 1) * 255 + 0.5
    assert pixels.array.dtype == np.uint8 and pixels.bits == 8
    assert np.array_equal(pixels.array, np.clip(expected, 0, 255).astype(np.uint8))


def test_monochrome1_prints_inverted_and_twelve_bit_keeps_levels(tmp_path: Path) -> None:
    cr = write_pattern(tmp_path, generate_uid(), monochrome1=True)
    eight = render_image(_image(cr), (96, 64), RenderSettings())
    assert np.array_equal(eight.array, 255 - pattern())
    twelve = render_image(_image(cr), (96, 64), RenderSettings(bits=12))
    expected = np.floor((1 - pattern() / 255.0) * 4095 + 0.5).astype(np.uint16)
    assert twelve.array.dtype == np.uint16 and twelve.bits == 12
    assert np.array_equal(twelve.array, expected)


def test_frames_of_a_multiframe_image(tmp_path: Path) -> None:
    multi = write_pattern(tmp_path, generate_uid(), frames=3)
    for frame in range(3):
        pixels = render_image(_image(multi, frame), (96, 64), RenderSettings())
        assert np.array_equal(pixels.array, pattern(shift=10 * frame))


def test_aspect_ratio_is_kept_with_square_pixels() -> None:
    assert fit_size(96, 64, 1.0, (200, 200)) == (200, 133)
    # Rows twice as far apart as columns: the picture is twice as tall as its pixel count.
    assert fit_size(96, 64, 2.0, (200, 200)) == (150, 200)
    assert fit_size(320, 240, 1.0, (96, 128)) == (96, 72)


def test_colour_image_on_a_grayscale_printer_becomes_luminance() -> None:
    path = TEST_FILES_DIR / "examples_rgb_color.dcm"
    rgb = pydicom.dcmread(path).pixel_array.astype(np.float64)
    pixels = render_image(_image(path), (320, 240), RenderSettings())
    expected = np.floor(rgb @ np.array([0.299, 0.587, 0.114]) + 0.5)
    assert pixels.array.shape == (240, 320)
    assert np.abs(pixels.array.astype(np.float64) - expected).max() <= 1


def test_compressed_source_is_decoded_under_the_codec_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held: list[bool] = []
    lock = threading.Lock()

    @contextmanager
    def recording() -> Iterator[None]:
        with lock:
            held.append(True)
            yield

    monkeypatch.setattr(print_render, "CODEC_LOCK", recording())
    native = render_image(_image(TEST_FILES_DIR / "MR_small.dcm"), (64, 64), RenderSettings())
    assert held == []
    monkeypatch.setattr(print_render, "CODEC_LOCK", recording())
    j2k = TEST_FILES_DIR / "MR_small_jp2klossless.dcm"
    decoded = render_image(_image(j2k), (64, 64), RenderSettings())
    assert held == [True]
    assert np.array_equal(decoded.array, native.array)


def test_enhanced_multiframe_groups_are_used_per_frame() -> None:
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    shared = Dataset()
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = 2, -10
    shared.PixelValueTransformationSequence = [transform]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for center in (100, 300):
        group = Dataset()
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = center, 50
        group.FrameVOILUTSequence = [voi]
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = frames
    second = frame_view(ds, 1)
    assert (second.RescaleSlope, second.RescaleIntercept, second.WindowCenter) == (2, -10, 300)
    assert frame_view(ds, 0).WindowCenter == 100
    assert "WindowCenter" not in ds


# -- request attributes -------------------------------------------------------------------------


def test_colour_image_box_is_rgb_by_plane() -> None:
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    ds = image_box_attributes(4, PrintPixels(rgb, 8), "NORMAL")
    item = ds.BasicColorImageSequence[0]
    assert (ds.ImageBoxPosition, ds.Polarity) == (4, "NORMAL")
    assert (item.SamplesPerPixel, item.PhotometricInterpretation, item.PlanarConfiguration) == (
        3,
        "RGB",
        1,
    )
    assert bytes(item.PixelData) == bytes([10] * 6 + [20] * 6 + [30] * 6)
    assert item["PixelData"].VR == "OB"


def test_twelve_bit_image_box() -> None:
    gray = np.array([[0, 4095, 7]], dtype=np.uint16)
    item = image_box_attributes(1, PrintPixels(gray, 12), "REVERSE").BasicGrayscaleImageSequence[0]
    assert (item.BitsAllocated, item.BitsStored, item.HighBit) == (16, 12, 11)
    assert item.PhotometricInterpretation == "MONOCHROME2"
    assert item["PixelData"].VR == "OW"
    assert np.array_equal(np.frombuffer(bytes(item.PixelData), dtype="<u2")[:3], [0, 4095, 7])


def test_odd_length_pixel_data_is_padded() -> None:
    assert len(PrintPixels(np.zeros((1, 3), dtype=np.uint8), 8).pixel_data()) == 4


# -- options and previews -----------------------------------------------------------------------


def _printer(**extra: Any) -> PrinterConfig:
    settings: dict[str, Any] = {
        "ae_title": "P",
        "host": "h",
        "port": 104,
        "pixel_matrix": {"8INX10IN": (192, 256)},
        "default_film_size": "8INX10IN",
    }
    settings.update(extra)
    return PrinterConfig.model_validate(settings)


def test_options_take_printer_defaults_and_refuse_what_it_lacks() -> None:
    options = resolve_options("p", _printer(), PrintChoices())
    assert options.display_format.text == "STANDARD\\1,1"
    assert (options.film_size, options.orientation, options.copies) == ("8INX10IN", "PORTRAIT", 1)
    assert (options.geometry.width, options.geometry.height) == (192, 256)
    assert options.medium_type == "" and options.render.bits == 8
    for choices, words in (
        (PrintChoices(display_format="STANDARD\\9,9"), "offers no image display format"),
        (PrintChoices(medium_type="GOLD FILM"), "offers no medium type"),
        (PrintChoices(copies=0), "copies"),
        (PrintChoices(orientation="DIAGONAL"), "orientation"),
        (PrintChoices(label="x" * 65), "label"),
    ):
        with pytest.raises(PrintRequestError, match=words):
            resolve_options("p", _printer(), choices)


def test_preview_places_centres_and_inverts() -> None:
    options = resolve_options(
        "p", _printer(), PrintChoices(display_format="STANDARD\\2,2", polarity="REVERSE")
    )
    box = PrintPixels(np.full((64, 96), 200, dtype=np.uint8), 8)
    picture = np.asarray(preview_film(options, [box]))
    assert picture.shape == (256, 192)
    # Box 1 is 96 x 128: the 96 x 64 image sits 32 rows down, inverted (REVERSE).
    assert int(picture[32:96, 0:96].min()) == int(picture[32:96, 0:96].max()) == 55
    assert int(picture[0:32, 0:96].max()) == 0 and int(picture[128:, :].max()) == 0
    paper = resolve_options("p", _printer(), PrintChoices(medium_type="PAPER"))
    assert int(np.asarray(preview_film(paper, [])).min()) == 255


def test_large_previews_are_scaled_as_a_whole() -> None:
    options = resolve_options("p", _printer(dpi=300), PrintChoices(film_size="14INX17IN"))
    picture = preview_film(options, [PrintPixels(np.zeros((10, 10), dtype=np.uint8), 8)])
    assert max(picture.size) == 2048
    assert picture.size == (round(4200 * 2048 / 5100), 2048)
    assert isinstance(picture, Image.Image)


def test_printer_config_checks_its_defaults_and_formats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance.config import load_config
    from appliance.errors import ConfigError

    monkeypatch.setenv("KIOSK_ETC_DIR", str(tmp_path / "etc"))

    good = tmp_path / "good.toml"
    good.write_text(
        '[printers.film]\nae_title = "DRY"\nhost = "h"\nport = 104\n'
        'display_formats = ["standard\\\\2,2", "ROW\\\\2,1"]\n'
        'default_display_format = "STANDARD\\\\2,2"\n'
    )
    config = load_config(good, environ={})
    assert config.printers["film"].display_formats == ["STANDARD\\2,2", "ROW\\2,1"]
    for extra, words in (
        ('default_film_size = "A4"', "default_film_size 'A4' is not in film_sizes"),
        ('display_formats = ["SLIDE\\\\1"]', "not an image display format"),
        ("bits = 16", "printers.film.bits"),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(f'[printers.film]\nae_title = "DRY"\nhost = "h"\nport = 104\n{extra}\n')
        with pytest.raises(ConfigError, match=words):
            load_config(bad, environ={})
