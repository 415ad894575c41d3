"""Transfer syntaxes we accept as Storage SCP and their default order of preference."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

from appliance.errors import ConfigError

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"


@dataclass(frozen=True, slots=True)
class TransferSyntax:
    """One transfer syntax and what kind of encoding it is."""

    uid: str
    name: str
    kind: str
    """'lossless' (compressed), 'native' (uncompressed or deflated) or 'lossy'."""


# Beyond the reference list (spec/transfer-syntaxes.csv): deflate, encapsulated uncompressed,
# further lossless codecs and the video syntaxes (MPEG-2 HL, MPEG-4 AVC, HEVC).
_EXTRA = [
    (DEFLATED_EXPLICIT_VR_LE, "Deflated Explicit VR Little Endian", "native"),
    ("1.2.840.10008.1.2.1.98", "Encapsulated Uncompressed Explicit VR Little Endian", "lossless"),
    ("1.2.840.10008.1.2.4.92", "JPEG 2000 Part 2 Multi-component (Lossless Only)", "lossless"),
    ("1.2.840.10008.1.2.4.93", "JPEG 2000 Part 2 Multi-component", "lossy"),
    ("1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 (Lossless Only)", "lossless"),
    ("1.2.840.10008.1.2.4.202", "High-Throughput JPEG 2000 with RPCL (Lossless Only)", "lossless"),
    ("1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000", "lossy"),
    ("1.2.840.10008.1.2.4.101", "MPEG2 Main Profile @ High Level", "lossy"),
    ("1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile / Level 4.1", "lossy"),
    ("1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1", "lossy"),
    ("1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video", "lossy"),
    ("1.2.840.10008.1.2.4.105", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video", "lossy"),
    ("1.2.840.10008.1.2.4.106", "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2", "lossy"),
    ("1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile / Level 5.1", "lossy"),
    ("1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile / Level 5.1", "lossy"),
]

_LOSSLESS_IN_REFERENCE = {
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.5",
}
_NATIVE = {IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE}

# Within "lossless", the codecs that compress best and decode everywhere come first.
_LOSSLESS_ORDER = [
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.92",
    "1.2.840.10008.1.2.1.98",
]
_NATIVE_ORDER = [EXPLICIT_VR_LE, DEFLATED_EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE]


def reference_syntaxes() -> list[TransferSyntax]:
    """The transfer syntaxes of the reference list shipped with the package."""
    text = resources.files("appliance.dicom").joinpath("data/transfer-syntaxes.csv").read_text()
    result = []
    for row in csv.DictReader(text.splitlines()):
        uid = row["transfer_syntax_uid"]
        kind = (
            "native"
            if uid in _NATIVE
            else ("lossless" if uid in _LOSSLESS_IN_REFERENCE else "lossy")
        )
        result.append(TransferSyntax(uid, row["name"], kind))
    return result


def supported_syntaxes() -> dict[str, TransferSyntax]:
    """Every transfer syntax the Storage SCP accepts, by UID."""
    table = {ts.uid: ts for ts in reference_syntaxes()}
    for uid, name, kind in _EXTRA:
        table.setdefault(uid, TransferSyntax(uid, name, kind))
    return table


def default_preference() -> list[str]:
    """Lossless compressed > Explicit VR LE > Deflated > Implicit VR LE > Big Endian > lossy."""
    table = supported_syntaxes()
    ordered = [uid for uid in _LOSSLESS_ORDER + _NATIVE_ORDER if uid in table]
    ordered += sorted(
        uid for uid, ts in table.items() if ts.kind == "lossless" and uid not in ordered
    )
    ordered += [uid for uid, ts in table.items() if ts.kind == "lossy"]
    return ordered


def preference(configured: list[str]) -> list[str]:
    """The effective acceptance order: the configured list, or the default when it is empty.

    A configured list may reorder or omit syntaxes but not name one we cannot store.
    """
    if not configured:
        return default_preference()
    table = supported_syntaxes()
    for uid in configured:
        if uid not in table:
            raise ConfigError(
                f"config: dicom.transfer_syntax_preference: {uid} is not a supported "
                "transfer syntax"
            )
    return list(dict.fromkeys(configured))
