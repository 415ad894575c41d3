"""Film sizes: physical dimensions of a Film Size ID, and the printer's pixel matrix for it."""

from __future__ import annotations

import re
from collections.abc import Mapping

from appliance.printing.errors import PrintRequestError

MM_PER_INCH = 25.4

_PAPER_MM = {"A4": (210.0, 297.0), "A3": (297.0, 420.0)}
"""ISO paper sizes used as Film Size IDs (width, height in mm, portrait)."""

_SIZE_RE = re.compile(r"^(\d+(?:_\d+)?)(IN|CM)X(\d+(?:_\d+)?)(IN|CM)$")
"""The PS3.3 pattern of film size terms: 14INX17IN, 8_5INX11IN (underscore = decimal point),
24CMX30CM. Printers add their own sizes in the same pattern (35CMX43CM)."""

Orientation = str
"""PORTRAIT or LANDSCAPE (Film Orientation)."""


def film_size_mm(size_id: str) -> tuple[float, float]:
    """Width and height of a film in mm, portrait; PrintRequestError for an unknown form."""
    key = size_id.strip().upper()
    if key in _PAPER_MM:
        return _PAPER_MM[key]
    match = _SIZE_RE.match(key)
    if match is None:
        raise PrintRequestError(
            f"film size {size_id!r} has no known dimensions: give the printer a pixel_matrix "
            "entry for it"
        )
    width, width_unit, height, height_unit = match.groups()

    def mm(value: str, unit: str) -> float:
        number = float(value.replace("_", "."))
        return number * (MM_PER_INCH if unit == "IN" else 10.0)

    return mm(width, width_unit), mm(height, height_unit)


def film_pixels(
    size_id: str,
    orientation: Orientation,
    pixel_matrix: Mapping[str, tuple[int, int]],
    dpi: int,
) -> tuple[int, int]:
    """Printable (columns, rows) of one film as it lies in `orientation`.

    The printer's own matrix for the size wins; otherwise the film's dimensions at `dpi`.
    """
    if size_id in pixel_matrix:
        columns, rows = pixel_matrix[size_id]
    else:
        width, height = film_size_mm(size_id)
        columns = round(width / MM_PER_INCH * dpi)
        rows = round(height / MM_PER_INCH * dpi)
    if orientation == "LANDSCAPE":
        return rows, columns
    return columns, rows
