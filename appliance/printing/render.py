"""Render one frame for an image box: the pixels a printer receives.

Grayscale: Modality LUT and VOI (`appliance.media.render.voi_fraction`, the appliance's one
grayscale pipeline) with the job's window choice; MONOCHROME1 is turned into MONOCHROME2 (the
minimum becomes white, as the object means it) so that every box goes out as MONOCHROME2;
then 8 or 12 bits. Colour printers get 8-bit RGB (grayscale replicated); grayscale printers get
the luminance of colour images. Every image is resized once, with square pixels, to the largest
size that fits its image box; an image that already fits exactly is passed through untouched.
Compressed pixel data is decoded under the process-wide CODEC_LOCK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID

from appliance.media.render import has_pixels, pixel_ratio, to_uint8_color, voi_fraction
from appliance.media.transcode import CODEC_LOCK
from appliance.printing.compose import PrintImage
from appliance.printing.errors import PrintRenderError
from appliance.printing.window import WindowChoice

LUMA = (0.299, 0.587, 0.114)
"""ITU-R BT.601 weights: the gray a grayscale printer gets for a colour image."""

_FRAME_GROUPS = (
    ("PixelValueTransformationSequence", ("RescaleSlope", "RescaleIntercept", "RescaleType")),
    ("FrameVOILUTSequence", ("WindowCenter", "WindowWidth", "VOILUTFunction")),
    ("PixelMeasuresSequence", ("PixelSpacing",)),
)
"""Functional groups of enhanced multi-frame objects that carry what rendering needs."""


@dataclass(frozen=True, slots=True)
class RenderSettings:
    """How images are rendered for one printer and job."""

    color: bool = False
    """RGB for a Basic Color printer; grayscale otherwise."""
    bits: int = 8
    """Grayscale depth: 8 or 12."""
    window: WindowChoice = field(default_factory=WindowChoice)


@dataclass(frozen=True, slots=True)
class PrintPixels:
    """What goes into one image box: (rows, columns) gray or (rows, columns, 3) RGB samples."""

    array: NDArray[Any]
    bits: int
    """Bits stored per sample: 8 or 12 (RGB is always 8)."""

    @property
    def rows(self) -> int:
        """Image height in pixels."""
        return int(self.array.shape[0])

    @property
    def columns(self) -> int:
        """Image width in pixels."""
        return int(self.array.shape[1])

    @property
    def color(self) -> bool:
        """True for RGB."""
        return self.array.ndim == 3

    @property
    def bits_allocated(self) -> int:
        """8 for 8-bit samples, 16 for 12-bit ones."""
        return 8 if self.bits == 8 else 16

    def pixel_data(self) -> bytes:
        """Pixel Data bytes: RGB by plane (Planar Configuration 1, as the Basic Color Image
        Sequence requires), 12-bit gray as little endian 16-bit words; padded to even length."""
        if self.color:
            data = np.ascontiguousarray(self.array.transpose(2, 0, 1)).tobytes()
        elif self.bits == 8:
            data = np.ascontiguousarray(self.array, dtype=np.uint8).tobytes()
        else:
            data = np.ascontiguousarray(self.array, dtype="<u2").tobytes()
        return data + b"\0" if len(data) % 2 else data

    def display(self) -> Image.Image:
        """An 8-bit picture of exactly these pixels (for previews): "L" or "RGB"."""
        if self.color:
            return Image.fromarray(np.ascontiguousarray(self.array, dtype=np.uint8))
        if self.bits == 8:
            return Image.fromarray(np.ascontiguousarray(self.array, dtype=np.uint8))
        scaled = (self.array.astype(np.uint32) * 255 + 2047) // 4095
        return Image.fromarray(scaled.astype(np.uint8))


def read_header(image: PrintImage) -> Dataset:
    """The object's data set with its pixel data left on disk (deferred)."""
    try:
        return pydicom.dcmread(image.path, defer_size=1024)
    except Exception as exc:  # a file changed under us or a foreign file: name the instance
        raise PrintRenderError(
            f"instance {image.sop_instance_uid} cannot be read ({type(exc).__name__})"
        ) from exc


def render_image(
    image: PrintImage,
    box: tuple[int, int],
    settings: RenderSettings,
    header: Dataset | None = None,
) -> PrintPixels:
    """The pixels of `image` for an image box of `box` = (columns, rows) pixels."""
    ds = header if header is not None else read_header(image)
    if not has_pixels(ds):
        raise PrintRenderError(f"instance {image.sop_instance_uid} holds no image")
    frame = _decode(image, ds)
    view = frame_view(ds, image.frame)
    try:
        return _render(frame, view, box, settings)
    except PrintRenderError:
        raise
    except Exception as exc:  # odd LUTs or attributes in a foreign object
        raise PrintRenderError(
            f"instance {image.sop_instance_uid} frame {image.frame + 1} cannot be rendered "
            f"({type(exc).__name__})"
        ) from exc


def _decode(image: PrintImage, ds: Dataset) -> NDArray[Any]:
    meta = getattr(ds, "file_meta", None)
    syntax = UID(str(meta.TransferSyntaxUID)) if meta and "TransferSyntaxUID" in meta else None
    try:
        if syntax is not None and syntax.is_encapsulated:
            # pylibjpeg-openjpeg crashes when it decodes here while a burn encodes elsewhere.
            with CODEC_LOCK:
                return np.asarray(pixel_array(image.path, index=image.frame))
        return np.asarray(pixel_array(image.path, index=image.frame))
    except Exception as exc:  # decoders raise many types (missing plugin, corrupt stream)
        raise PrintRenderError(
            f"instance {image.sop_instance_uid} frame {image.frame + 1}: its pixel data cannot "
            f"be decoded ({type(exc).__name__})"
        ) from exc


def frame_view(ds: Dataset, frame: int) -> Dataset:
    """`ds` with the rescale, window and spacing of one frame of an enhanced multi-frame
    object copied to the top level, where the rendering functions look for them."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not shared and not per_frame:
        return ds
    view = Dataset()
    view.update(ds)
    groups = [shared[0] if shared else None]
    groups.append(per_frame[frame] if per_frame and frame < len(per_frame) else None)
    for group in groups:  # per-frame values override shared ones
        if group is None:
            continue
        for sequence, keywords in _FRAME_GROUPS:
            items = group.get(sequence)
            if not items:
                continue
            for keyword in keywords:
                if keyword in items[0]:
                    setattr(view, keyword, items[0][keyword].value)
    return view


def _render(
    frame: NDArray[Any], ds: Dataset, box: tuple[int, int], settings: RenderSettings
) -> PrintPixels:
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    size = fit_size(frame.shape[1], frame.shape[0], pixel_ratio(ds), box)
    if photometric == "PALETTE COLOR":
        rgb = to_uint8_color(apply_color_lut(frame, ds))
        return _from_rgb(rgb, size, settings)
    if frame.ndim == 3:
        return _from_rgb(to_uint8_color(frame[..., :3]), size, settings)
    if frame.ndim != 2:
        raise PrintRenderError(f"unexpected pixel array shape {frame.shape}")
    levels = voi_fraction(
        frame, ds, window=settings.window.window, window_index=settings.window.index
    )
    if photometric == "MONOCHROME1":
        levels = 1.0 - levels  # its minimum is white: send it as MONOCHROME2
    gray = _resize_levels(levels, size)
    if settings.color:
        rgb = np.clip(gray * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return PrintPixels(np.repeat(rgb[..., None], 3, axis=2), 8)
    return _quantize(gray, settings.bits)


def fit_size(columns: int, rows: int, ratio: float, box: tuple[int, int]) -> tuple[int, int]:
    """The largest (columns, rows) with square pixels that fits `box`, keeping the image's
    aspect ratio (`ratio` = height/width of one source pixel)."""
    box_columns, box_rows = box
    height = rows * ratio
    scale = min(box_columns / columns, box_rows / height)
    fitted_columns = min(box_columns, max(1, round(columns * scale)))
    fitted_rows = min(box_rows, max(1, round(height * scale)))
    return fitted_columns, fitted_rows


def _resize_levels(levels: NDArray[np.float64], size: tuple[int, int]) -> NDArray[np.float64]:
    if (levels.shape[1], levels.shape[0]) == size:
        return levels
    picture = Image.fromarray(levels.astype(np.float32))
    resized = picture.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.clip(np.asarray(resized, dtype=np.float64), 0.0, 1.0)


def _quantize(levels: NDArray[np.float64], bits: int) -> PrintPixels:
    top = 255 if bits == 8 else 4095
    values = np.clip(levels * top + 0.5, 0, top)
    return PrintPixels(values.astype(np.uint8 if bits == 8 else np.uint16), bits)


def _from_rgb(
    rgb: NDArray[np.uint8], size: tuple[int, int], settings: RenderSettings
) -> PrintPixels:
    picture = Image.fromarray(np.ascontiguousarray(rgb))
    if picture.size != size:
        picture = picture.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    array = np.asarray(picture)
    if settings.color:
        return PrintPixels(array, 8)
    luma = array.astype(np.float64) @ np.asarray(LUMA) / 255.0
    return _quantize(luma, settings.bits)
