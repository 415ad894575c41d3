"""Which VOI window a print job uses: the object's own, a named preset, or typed values."""

from __future__ import annotations

import math
from dataclasses import dataclass

from appliance.media.render import VoiWindow
from appliance.printing.errors import PrintRequestError

WINDOW_PRESETS: dict[str, VoiWindow] = {
    "brain": VoiWindow(40, 80),
    "subdural": VoiWindow(75, 215),
    "lung": VoiWindow(-600, 1500),
    "mediastinum": VoiWindow(50, 350),
    "abdomen": VoiWindow(40, 400),
    "liver": VoiWindow(60, 160),
    "bone": VoiWindow(400, 1800),
}
"""Common CT windows (center, width in Hounsfield units), by the name an operator types."""


@dataclass(frozen=True, slots=True)
class WindowChoice:
    """A resolved choice: a fixed window, or the object's own window number `index`
    (falling back to its VOI LUT, then to the pixels' range, when it has none)."""

    window: VoiWindow | None = None
    index: int = 0


def parse_window(text: str | None) -> WindowChoice:
    """Read an operator's window choice.

    "" or "auto": the object's first window. "object:N": its N-th window (1-based). A preset
    name (lung, bone ...). "C,W": center and width in the object's output units.
    """
    value = (text or "").strip().lower()
    if value in ("", "auto"):
        return WindowChoice()
    if value.startswith("object:"):
        number = value.removeprefix("object:")
        if not number.isdigit() or int(number) < 1:
            raise PrintRequestError(f"window {text!r}: object:N takes a window number from 1")
        return WindowChoice(index=int(number) - 1)
    if value in WINDOW_PRESETS:
        return WindowChoice(WINDOW_PRESETS[value])
    center, sep, width = value.replace("/", ",").partition(",")
    try:
        numbers = (float(center), float(width)) if sep else None
    except ValueError:
        numbers = None
    if numbers is None or not all(math.isfinite(n) for n in numbers) or numbers[1] < 1:
        presets = ", ".join(WINDOW_PRESETS)
        raise PrintRequestError(
            f"window {text!r} is not auto, object:N, CENTER,WIDTH (width at least 1) or a "
            f"preset ({presets})"
        )
    return WindowChoice(VoiWindow(numbers[0], numbers[1]))
