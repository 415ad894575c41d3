"""Read the first bytes of a written disc (a device or an image file) sequentially, and compare
them byte for byte with the built image (`OpticalDrive` hashes them when it has no image)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from appliance.drives.errors import ReadBackError

if TYPE_CHECKING:  # the drive interface itself uses this module
    from appliance.drives.base import ProgressCallback

READ_CHUNK = 1024 * 1024
# Report at most every 16 MiB: an optical drive reads that in about a second.
_PROGRESS_STEP = 16 * 1024 * 1024

ChunkConsumer = Callable[[bytes], None]
"""Receives the disc's bytes in order, one chunk at a time (it may raise to stop reading)."""


def read_prefix(
    source: Path,
    size: int,
    consume: ChunkConsumer,
    *,
    drive: str,
    progress: ProgressCallback | None = None,
) -> None:
    """Feed the first `size` bytes of `source` to `consume`, read sequentially in 1 MiB chunks.

    Raises `ReadBackError` if the source cannot be read or holds fewer than `size` bytes.
    """
    done = 0
    reported = 0
    try:
        # Unbuffered: chunks go straight from read(2) to the consumer, no second copy.
        with source.open("rb", buffering=0) as fh:
            while done < size:
                chunk = fh.read(min(READ_CHUNK, size - done))
                if not chunk:
                    raise ReadBackError(
                        f"The disc in drive {drive} holds only {done} of the {size} bytes "
                        "that were written. The write did not complete; use a new disc."
                    )
                consume(chunk)
                done += len(chunk)
                if progress is not None and (done - reported >= _PROGRESS_STEP or done == size):
                    reported = done
                    progress(done, size)
    except OSError as exc:
        raise ReadBackError(
            f"Reading the disc in drive {drive} back failed after {done} bytes: "
            f"{exc.strerror or exc}. The disc may be defective; use a new disc."
        ) from exc
    if progress is not None and size == 0:
        progress(0, 0)


class ImageComparison:
    """A chunk consumer that compares what the drive reads with the built image, in step.

    Comparing bytes costs a memcmp: about a fifth of hashing them, which matters on the image
    drives, where reading back is as fast as the page cache. A difference raises
    `ReadBackError` naming where the disc first differs.
    """

    def __init__(self, image: BinaryIO, *, drive: str) -> None:
        """`image` is the built image, opened for reading at its start."""
        self._image = image
        self._drive = drive
        self.compared = 0
        """Bytes found equal so far."""

    def __call__(self, chunk: bytes) -> None:
        """Compare the disc's next chunk with the image's next bytes."""
        try:
            expected = self._image.read(len(chunk))
        except OSError as exc:
            raise ReadBackError(
                f"The built disc image could not be read to compare drive {self._drive}'s "
                f"disc with it: {exc.strerror or exc}."
            ) from exc
        if chunk != expected:
            offset = self.compared + _first_difference(chunk, expected)
            raise ReadBackError(
                f"The disc in drive {self._drive} does not hold the image that was written: "
                f"it differs from byte {offset} (sector {offset // 2048}) on. The disc may be "
                "defective; use a new disc."
            )
        self.compared += len(chunk)


def _first_difference(found: bytes, expected: bytes) -> int:
    """Index of the first byte where two chunks differ (the shorter length if one is a prefix)."""
    for index, (a, b) in enumerate(zip(found, expected, strict=False)):
        if a != b:
            return index
    return min(len(found), len(expected))
