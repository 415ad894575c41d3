"""Image Display Formats and where each image box lies on a film (PS3.3 C.13.3, C.13.5.1)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, cast

from appliance.printing.errors import PrintRequestError

FormatKind = Literal["STANDARD", "ROW", "COL"]

_FORMAT_RE = re.compile(r"^(STANDARD|ROW|COL)\\([1-9][0-9]*(?:,[1-9][0-9]*)*)$")

MAX_BOXES = 100
"""More image boxes than this on one film would leave each image a few millimetres wide."""


@dataclass(frozen=True, slots=True)
class DisplayFormat:
    """A parsed Image Display Format.

    STANDARD: `counts` is (columns, rows). ROW: the number of images in each row, top to
    bottom. COL: the number of images in each column, left to right.
    """

    kind: FormatKind
    counts: tuple[int, ...]

    @property
    def text(self) -> str:
        """The attribute value, e.g. STANDARD\\2,2."""
        return f"{self.kind}\\{','.join(str(c) for c in self.counts)}"

    @property
    def boxes(self) -> int:
        """Image boxes on one film."""
        if self.kind == "STANDARD":
            return self.counts[0] * self.counts[1]
        return sum(self.counts)


def parse_display_format(text: str) -> DisplayFormat:
    """Parse STANDARD\\C,R, ROW\\r1,r2,... or COL\\c1,c2,...; PrintRequestError otherwise."""
    normal = text.strip().upper()
    match = _FORMAT_RE.match(normal)
    if match is None:
        raise PrintRequestError(
            f"image display format {text!r} is not STANDARD\\C,R, ROW\\r1,r2,... or COL\\c1,c2,..."
        )
    kind = match.group(1)
    counts = tuple(int(n) for n in match.group(2).split(","))
    if kind == "STANDARD" and len(counts) != 2:
        raise PrintRequestError(f"image display format {text!r}: STANDARD takes columns,rows")
    fmt = DisplayFormat(cast(FormatKind, kind), counts)
    if fmt.boxes > MAX_BOXES:
        raise PrintRequestError(
            f"image display format {text!r} has {fmt.boxes} image boxes; at most {MAX_BOXES}"
        )
    return fmt


@dataclass(frozen=True, slots=True)
class Box:
    """One image box: its Image Box Position and its rectangle in film pixels."""

    position: int
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class FilmGeometry:
    """A film in pixels as it lies (orientation applied) and its image boxes, by position."""

    width: int
    height: int
    boxes: tuple[Box, ...]


def _cuts(total: int, parts: int) -> list[tuple[int, int]]:
    """Split `total` pixels into `parts` runs (start, length) that differ by at most one."""
    edges = [total * i // parts for i in range(parts + 1)]
    return [(edges[i], edges[i + 1] - edges[i]) for i in range(parts)]


def film_geometry(fmt: DisplayFormat, columns: int, rows: int) -> FilmGeometry:
    """Where each image box lies on a film of `columns` x `rows` pixels.

    Positions follow PS3.3 C.13.5.1: row by row (left to right, top to bottom) for STANDARD
    and ROW, column by column (top to bottom, left to right) for COL.
    """
    boxes: list[Box] = []
    if fmt.kind == "STANDARD":
        across, down = fmt.counts
        for y, height in _cuts(rows, down):
            for x, width in _cuts(columns, across):
                boxes.append(Box(len(boxes) + 1, x, y, width, height))
    elif fmt.kind == "ROW":
        for (y, height), count in zip(_cuts(rows, len(fmt.counts)), fmt.counts, strict=True):
            for x, width in _cuts(columns, count):
                boxes.append(Box(len(boxes) + 1, x, y, width, height))
    else:
        for (x, width), count in zip(_cuts(columns, len(fmt.counts)), fmt.counts, strict=True):
            for y, height in _cuts(rows, count):
                boxes.append(Box(len(boxes) + 1, x, y, width, height))
    if any(box.width < 1 or box.height < 1 for box in boxes):
        raise PrintRequestError(
            f"image display format {fmt.text} does not fit a film of {columns} x {rows} pixels"
        )
    return FilmGeometry(columns, rows, tuple(boxes))
