"""Film composition: the chosen instances as a list of frames to print, cut into films."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pydicom
from pydicom.errors import InvalidDicomError

from appliance.printing.errors import PrintRequestError

FrameChoice = Literal["all", "first"]
"""Which frames of a multi-frame image are printed."""

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True, slots=True)
class PrintImage:
    """One frame to print: the file, its SOP Instance UID and the frame (0-based)."""

    path: Path
    sop_instance_uid: str
    frame: int = 0
    frames: int = 1
    """Frames in the object (for captions and logs)."""


@dataclass(frozen=True, slots=True)
class FilmSheet:
    """One film: its number (1-based) and its images in image box position order."""

    number: int
    images: tuple[PrintImage, ...]


@dataclass(frozen=True, slots=True)
class SourceInstance:
    """An instance chosen for printing."""

    path: Path
    sop_instance_uid: str


def _frame_count(path: Path) -> int | None:
    """Frames of the image in `path`, or None when it holds no image (SR, KOS, PR ...)."""
    try:
        ds = pydicom.dcmread(path, defer_size=256)
    except (InvalidDicomError, OSError, ValueError) as exc:
        raise PrintRequestError(f"{path.name} cannot be read ({type(exc).__name__})") from None
    if not any(k in ds for k in _PIXEL_KEYWORDS) or "Rows" not in ds:
        return None
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def expand_frames(
    sources: Iterable[SourceInstance], frames: FrameChoice = "all"
) -> tuple[list[PrintImage], list[str]]:
    """Every frame to print, in the order of `sources`; and the SOP Instance UIDs left out
    because they hold no image."""
    images: list[PrintImage] = []
    skipped: list[str] = []
    for source in sources:
        count = _frame_count(source.path)
        if count is None:
            skipped.append(source.sop_instance_uid)
            continue
        wanted = range(count) if frames == "all" else range(1)
        images += [PrintImage(source.path, source.sop_instance_uid, f, count) for f in wanted]
    return images, skipped


def paginate(images: Sequence[PrintImage], boxes_per_film: int) -> list[FilmSheet]:
    """Fill films in order, one image per image box; the last film may be partly empty."""
    if boxes_per_film < 1:
        raise PrintRequestError("a film needs at least one image box")
    return [
        FilmSheet(number, tuple(images[start : start + boxes_per_film]))
        for number, start in enumerate(range(0, len(images), boxes_per_film), start=1)
    ]
