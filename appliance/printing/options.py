"""A print job's choices checked against what its printer offers, with the printer's defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from appliance.config.schema import PrinterConfig
from appliance.printing.compose import FrameChoice
from appliance.printing.errors import PrintRequestError
from appliance.printing.filmsize import film_pixels
from appliance.printing.layout import (
    DisplayFormat,
    FilmGeometry,
    film_geometry,
    parse_display_format,
)
from appliance.printing.render import RenderSettings
from appliance.printing.window import WindowChoice, parse_window

MAX_COPIES = 99
"""Number of Copies allows 1-99 (PS3.3 C.13.1)."""


@dataclass(frozen=True, slots=True)
class PrintChoices:
    """What an operator may choose per job; None means the printer's default."""

    display_format: str | None = None
    film_size: str | None = None
    orientation: str | None = None
    copies: int = 1
    medium_type: str | None = None
    destination: str | None = None
    priority: str | None = None
    magnification: str | None = None
    polarity: str | None = None
    """NORMAL or REVERSE (the printer inverts the image)."""
    window: str | None = None
    """auto, object:N, a preset name or CENTER,WIDTH (see `window.parse_window`)."""
    frames: str | None = None
    """all (every frame of a multi-frame image) or first."""
    label: str = ""
    """Film Session Label (never patient data)."""


@dataclass(frozen=True, slots=True)
class PrintOptions:
    """Every setting of one print job, resolved."""

    display_format: DisplayFormat
    film_size: str
    orientation: Literal["PORTRAIT", "LANDSCAPE"]
    geometry: FilmGeometry
    copies: int
    medium_type: str
    destination: str
    priority: str
    magnification: str
    smoothing: str
    border_density: str
    empty_image_density: str
    trim: str
    max_density: int | None
    min_density: int | None
    configuration_information: str
    polarity: Literal["NORMAL", "REVERSE"]
    frames: FrameChoice
    label: str
    print_on: Literal["film_box", "film_session"]
    render: RenderSettings


def _pick(value: str | None, offered: list[str], default: str, what: str, printer: str) -> str:
    """`value` (upper-cased) if the printer offers it, the default when None."""
    if value is None or value == "":
        return default
    chosen = value.strip().upper()
    if chosen not in offered:
        listed = ", ".join(offered) or "none"
        raise PrintRequestError(f"printer {printer} offers no {what} {value!r} (offered: {listed})")
    return chosen


def resolve_options(name: str, printer: PrinterConfig, choices: PrintChoices) -> PrintOptions:
    """Check `choices` against printer `name` and fill in its defaults; PrintRequestError
    names the first choice the printer does not offer."""
    fmt_text = _pick(
        choices.display_format,
        list(printer.display_formats),
        printer.default_display_format,
        "image display format",
        name,
    )
    fmt = parse_display_format(fmt_text)
    film_size = _pick(
        choices.film_size, printer.film_sizes, printer.default_film_size, "film size", name
    )
    orientation = (choices.orientation or printer.film_orientation).strip().upper()
    if orientation not in ("PORTRAIT", "LANDSCAPE"):
        raise PrintRequestError(f"film orientation {choices.orientation!r}: PORTRAIT or LANDSCAPE")
    if not 1 <= choices.copies <= MAX_COPIES:
        raise PrintRequestError(f"copies must be between 1 and {MAX_COPIES}")
    priority = (choices.priority or printer.priority).strip().upper()
    if priority not in ("HIGH", "MED", "LOW"):
        raise PrintRequestError(f"print priority {choices.priority!r}: HIGH, MED or LOW")
    polarity = (choices.polarity or "NORMAL").strip().upper()
    if polarity not in ("NORMAL", "REVERSE"):
        raise PrintRequestError(f"polarity {choices.polarity!r}: NORMAL or REVERSE")
    frames = (choices.frames or "all").strip().lower()
    if frames not in ("all", "first"):
        raise PrintRequestError(f"frames {choices.frames!r}: all or first")
    label = choices.label.strip()
    if len(label) > 64 or any(ord(ch) < 0x20 for ch in label):
        raise PrintRequestError("a film session label has at most 64 printable characters")
    window: WindowChoice = parse_window(choices.window)
    columns, rows = film_pixels(film_size, orientation, printer.pixel_matrix, printer.dpi)
    return PrintOptions(
        display_format=fmt,
        film_size=film_size,
        orientation="LANDSCAPE" if orientation == "LANDSCAPE" else "PORTRAIT",
        geometry=film_geometry(fmt, columns, rows),
        copies=choices.copies,
        medium_type=_pick(
            choices.medium_type,
            printer.medium_types,
            printer.default_medium_type,
            "medium type",
            name,
        ),
        destination=_pick(
            choices.destination,
            printer.destinations,
            printer.default_destination,
            "film destination",
            name,
        ),
        priority=priority,
        magnification=(choices.magnification or printer.magnification_type).strip().upper(),
        smoothing=printer.smoothing_type,
        border_density=printer.border_density,
        empty_image_density=printer.empty_image_density,
        trim=printer.trim,
        max_density=printer.max_density,
        min_density=printer.min_density,
        configuration_information=printer.configuration_information,
        polarity="REVERSE" if polarity == "REVERSE" else "NORMAL",
        frames="first" if frames == "first" else "all",
        label=label,
        print_on=printer.print_on,
        render=RenderSettings(color=printer.color, bits=printer.bits, window=window),
    )
