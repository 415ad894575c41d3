"""Stream the first bytes of a written disc (a device or an image file) into a SHA-256."""

from __future__ import annotations

import hashlib
from pathlib import Path

from appliance.drives.base import ProgressCallback
from appliance.drives.errors import ReadBackError

READ_CHUNK = 1024 * 1024
# Report at most every 16 MiB: an optical drive reads that in about a second.
_PROGRESS_STEP = 16 * 1024 * 1024


def sha256_of_prefix(
    source: Path, size: int, *, drive: str, progress: ProgressCallback | None = None
) -> str:
    """SHA-256 of the first `size` bytes of `source`, read sequentially in 1 MiB chunks.

    Raises `ReadBackError` if the source cannot be read or holds fewer than `size` bytes.
    """
    digest = hashlib.sha256()
    done = 0
    reported = 0
    try:
        # Unbuffered: chunks go straight from read(2) into the hash, no second copy.
        with source.open("rb", buffering=0) as fh:
            while done < size:
                chunk = fh.read(min(READ_CHUNK, size - done))
                if not chunk:
                    raise ReadBackError(
                        f"The disc in drive {drive} holds only {done} of the {size} bytes "
                        "that were written. The write did not complete; use a new disc."
                    )
                digest.update(chunk)
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
    return digest.hexdigest()
