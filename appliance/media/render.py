"""Render the first frame of a DICOM image as an 8-bit picture for previews (not for diagnosis).

Grayscale: Modality LUT (Rescale Slope/Intercept or a Modality LUT Sequence), then the first VOI
window of the object (Window Center/Width with its VOI LUT Function), else the min/max of the
pixels (Pixel Padding Value excluded); MONOCHROME1 is inverted so that it looks like MONOCHROME2.
Colour: RGB (and YBR, converted by pydicom) kept, PALETTE COLOR expanded through its LUT.
Large images are reduced to at most `max_edge` pixels on their longer side.

`voi_fraction` is the one grayscale pipeline (Modality LUT, then VOI) of the appliance: film
printing uses it too, with a chosen window and its own output depth.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.pixels.utils import pixel_array

from appliance.media.errors import MediaError

DEFAULT_MAX_EDGE = 512
JPEG_QUALITY = 85

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
FloatArray = NDArray[np.float64]


class RenderError(MediaError):
    """An object has no pixels we can show (no pixel data, or a form we cannot decode)."""


@dataclass(frozen=True, slots=True)
class VoiWindow:
    """A VOI window (PS3.3 C.11.2.1.2): center and width in output units of the Modality LUT
    (Hounsfield units for CT), and the VOI LUT Function (LINEAR, LINEAR_EXACT, SIGMOID)."""

    center: float
    width: float
    function: str = "LINEAR"


def has_pixels(ds: Dataset) -> bool:
    """True when the object carries an image (pixel data and its dimensions)."""
    return any(k in ds for k in _PIXEL_KEYWORDS) and "Rows" in ds and "Columns" in ds


def first_frame(path: Path) -> NDArray[np.generic]:
    """Decode only the first frame of the file at `path` (memory stays at one frame)."""
    try:
        return pixel_array(path, index=0)
    except Exception as exc:  # decoders raise many types (missing plugin, corrupt stream)
        raise RenderError(f"pixel data cannot be decoded: {type(exc).__name__}") from exc


def render_preview(path: Path, header: Dataset, *, max_edge: int = DEFAULT_MAX_EDGE) -> Image.Image:
    """The display picture of the first frame of `path`.

    `header` is the file's dataset; it must keep the Pixel Data element, but its value may be
    deferred (`dcmread(path, defer_size=...)`): the frame is decoded from `path`.

    Raises RenderError when the object has no image or its pixels cannot be decoded.
    """
    if not has_pixels(header):
        raise RenderError("the object has no image")
    frame = first_frame(path)
    try:
        return to_display(frame, header, max_edge=max_edge)
    except RenderError:
        raise
    except Exception as exc:  # odd LUTs or attributes in a foreign object: no preview, no crash
        raise RenderError(f"the image cannot be rendered: {type(exc).__name__}") from exc


def to_display(
    frame: NDArray[np.generic], ds: Dataset, *, max_edge: int = DEFAULT_MAX_EDGE
) -> Image.Image:
    """Turn one decoded frame into an 8-bit grayscale ("L") or "RGB" picture of bounded size."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    # Decimate before any float maths: a 4k x 5k mammogram then costs a fraction of the memory.
    # Keep twice the target resolution so the final resampling still has detail to filter.
    step = max(1, max(frame.shape[0], frame.shape[1]) // (2 * max_edge))
    frame = frame[::step, ::step]
    if photometric == "PALETTE COLOR":
        image = Image.fromarray(to_uint8_color(apply_color_lut(frame, ds)), mode="RGB")
    elif frame.ndim == 3:
        image = Image.fromarray(to_uint8_color(frame[..., :3]), mode="RGB")
    elif frame.ndim == 2:
        gray = _grayscale(frame, ds)
        if photometric == "MONOCHROME1":
            gray = 255 - gray  # MONOCHROME1: the minimum value is white
        image = Image.fromarray(gray, mode="L")
    else:
        raise RenderError(f"unexpected pixel array shape {frame.shape}")
    return _fit(image, pixel_ratio(ds), max_edge)


def encode_jpeg(image: Image.Image, *, quality: int = JPEG_QUALITY) -> bytes:
    """Baseline JPEG bytes (baseline: any browser and old viewers decode it)."""
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def to_uint8_color(arr: NDArray[np.generic]) -> NDArray[np.uint8]:
    """Colour samples as 8-bit (16-bit colour or palettes scaled by their type's range)."""
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    values = arr.astype(np.float64)
    # 16-bit colour (rare) or a 16-bit palette: scale by the largest value the type can hold.
    top = float(np.iinfo(arr.dtype.str).max) if np.issubdtype(arr.dtype, np.integer) else 1.0
    return np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _first_number(value: object) -> float | None:
    return _nth_number(value, 0)


def _nth_number(value: object, index: int) -> float | None:
    if isinstance(value, MultiValue):
        value = value[index] if 0 <= index < len(value) else None
    elif index != 0:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _grayscale(frame: NDArray[np.generic], ds: Dataset) -> NDArray[np.uint8]:
    out = voi_fraction(frame, ds)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def object_window(ds: Dataset, index: int = 0) -> VoiWindow | None:
    """The object's `index`-th Window Center/Width pair (with its VOI LUT Function), or None
    when it has no usable pair at that index (width below 1 is unusable)."""
    center = _nth_number(ds.get("WindowCenter"), index)
    width = _nth_number(ds.get("WindowWidth"), index)
    if center is None or width is None or width < 1:
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper() or "LINEAR"
    return VoiWindow(center, width, function)


def voi_fraction(
    frame: NDArray[np.generic],
    ds: Dataset,
    *,
    window: VoiWindow | None = None,
    window_index: int = 0,
) -> FloatArray:
    """Modality LUT, then VOI, of one grayscale frame: fractions 0..1 of the output range
    (0 is the lowest output value, which MONOCHROME2 shows black and MONOCHROME1 white).

    The VOI is `window` when given, else the object's `window_index`-th window, else its first
    VOI LUT, else the minimum and maximum of the pixels (Pixel Padding Value excluded).
    """
    values: FloatArray = np.asarray(apply_modality_lut(frame, ds), dtype=np.float64)
    chosen = window or object_window(ds, window_index)
    if chosen is not None:
        return _window(values, chosen.center, chosen.width, chosen.function)
    lut = _voi_lut(values, ds)
    if lut is not None:
        return lut
    return _min_max(values, _padding_mask(frame, ds))


def _voi_lut(values: FloatArray, ds: Dataset) -> FloatArray | None:
    """The first VOI LUT Sequence item applied, as a fraction of its output range."""
    items = ds.get("VOILUTSequence")
    if not items:
        return None
    descriptor = items[0].get("LUTDescriptor")
    if not isinstance(descriptor, MultiValue) or len(descriptor) != 3:
        return None
    bits = int(descriptor[2])
    if not 1 <= bits <= 16:
        return None
    # apply_voi_lut indexes the LUT with integers; keep only the LUT (prefer_lut) path.
    out = apply_voi_lut(np.rint(values).astype(np.int64), ds, index=0, prefer_lut=True)
    return np.clip(np.asarray(out, dtype=np.float64) / float(2**bits - 1), 0.0, 1.0)


def _window(values: FloatArray, center: float, width: float, function: str) -> FloatArray:
    """PS3.3 C.11.2.1.2: the VOI window, as a 0..1 fraction."""
    if function == "SIGMOID":
        return np.asarray(1.0 / (1.0 + np.exp(-4.0 * (values - center) / width)))
    if function == "LINEAR_EXACT":
        low, high = center - width / 2, center + width / 2
    else:  # LINEAR, and the default for unknown functions
        if width == 1:  # the standard's degenerate window: a threshold at center - 0.5
            return np.asarray(values > center - 0.5, dtype=np.float64)
        low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _padding_mask(stored: NDArray[np.generic], ds: Dataset) -> NDArray[np.bool_] | None:
    # Padding (e.g. -2000 outside a CT's circle) would stretch min/max and wash the image out.
    padding = _first_number(ds.get("PixelPaddingValue"))
    if padding is None:
        return None
    mask = np.asarray(stored != padding)
    return mask if mask.any() else None


def _min_max(values: FloatArray, mask: NDArray[np.bool_] | None) -> FloatArray:
    sample = values[mask] if mask is not None else values
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return np.zeros_like(values)
    low, high = float(sample.min()), float(sample.max())
    if high <= low:
        return np.zeros_like(values)  # a flat image: show it black rather than divide by 0
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def pixel_ratio(ds: Dataset) -> float:
    """Height/width of one pixel from Pixel Spacing (row, column spacing), else from Pixel
    Aspect Ratio (vertical, horizontal); 1.0 when unknown."""
    spacing = ds.get("PixelSpacing")
    if not isinstance(spacing, MultiValue) or len(spacing) != 2:
        spacing = ds.get("PixelAspectRatio")
    if not isinstance(spacing, MultiValue) or len(spacing) != 2:
        return 1.0
    row, col = _first_number(spacing[0]), _first_number(spacing[1])
    if row is None or col is None or row <= 0 or col <= 0:
        return 1.0
    # Clamp: a wild value from a foreign object must not make a 1 x 5000 picture.
    return min(max(row / col, 0.1), 10.0)


def _fit(image: Image.Image, ratio: float, max_edge: int) -> Image.Image:
    """Resize once: square the pixels (non-square spacing) and fit into max_edge x max_edge."""
    width, height = float(image.width), image.height * ratio
    scale = min(1.0, max_edge / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS)
