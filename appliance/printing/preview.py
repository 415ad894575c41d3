"""Preview: each film as a PNG, laid out exactly as it is sent (what the clerk checks first).

The film is drawn at the printer's pixel matrix: every image box at its place, every image the
very pixels the printer gets, centred in its box (printers centre an image smaller than its
box); the rest in the border density, boxes left empty in the empty-image density. REVERSE
polarity is shown inverted. Films larger than `max_edge` are scaled down as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageOps

from appliance.printing.compose import FilmSheet
from appliance.printing.options import PrintOptions
from appliance.printing.render import PrintPixels

PREVIEW_MAX_EDGE = 2048
"""Longer side of a preview PNG in pixels (a film at printer resolution is larger)."""

DENSITY_RANGE = 300
"""Hundredths of optical density shown as black when a density is given as a number."""


def density_level(density: str, default: int) -> int:
    """Gray level (0 black .. 255 white) a Border or Empty Image Density prints as."""
    value = density.strip().upper()
    if value == "BLACK":
        return 0
    if value == "WHITE":
        return 255
    if value.isdigit():
        return round(255 * (1 - min(int(value), DENSITY_RANGE) / DENSITY_RANGE))
    return default


def preview_film(
    options: PrintOptions, pixels: Sequence[PrintPixels], *, max_edge: int = PREVIEW_MAX_EDGE
) -> Image.Image:
    """One film as a picture: "L" for grayscale printers, "RGB" for colour ones."""
    geometry = options.geometry
    # Film is black where nothing is printed, paper white, unless densities are configured.
    blank = 255 if options.medium_type == "PAPER" else 0
    border = density_level(options.border_density, blank)
    empty = density_level(options.empty_image_density, blank)
    mode = "RGB" if options.render.color else "L"
    canvas = Image.new(mode, (geometry.width, geometry.height), _fill(mode, border))
    for index, box in enumerate(geometry.boxes):
        if index >= len(pixels):
            canvas.paste(_fill(mode, empty), (box.x, box.y, box.x + box.width, box.y + box.height))
            continue
        picture = pixels[index].display().convert(mode)
        if options.polarity == "REVERSE":
            picture = ImageOps.invert(picture)
        left = box.x + (box.width - picture.width) // 2
        top = box.y + (box.height - picture.height) // 2
        canvas.paste(picture, (left, top))
    scale = min(1.0, max_edge / max(geometry.width, geometry.height))
    if scale < 1.0:
        size = (max(1, round(geometry.width * scale)), max(1, round(geometry.height * scale)))
        canvas = canvas.resize(size, Image.Resampling.LANCZOS)
    return canvas


def _fill(mode: str, level: int) -> int | tuple[int, int, int]:
    return (level, level, level) if mode == "RGB" else level


def preview_path(out_dir: Path, sheet: FilmSheet) -> Path:
    """Where the preview of a film goes: film-001.png, film-002.png ..."""
    return out_dir / f"film-{sheet.number:03d}.png"


def write_preview(
    out_dir: Path,
    sheet: FilmSheet,
    options: PrintOptions,
    pixels: Sequence[PrintPixels],
    *,
    max_edge: int = PREVIEW_MAX_EDGE,
) -> Path:
    """Write the PNG of one film into `out_dir` (created if needed); returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = preview_path(out_dir, sheet)
    temporary = path.with_suffix(".png.tmp")
    preview_film(options, pixels, max_edge=max_edge).save(temporary, format="PNG")
    temporary.replace(path)
    return path
