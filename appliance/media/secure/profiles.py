"""The secure media application profiles (PS3.11 Annex D / H with a Security Parameters part).

A secure profile writes exactly what its clear sibling writes (same SOP classes, transfer
syntaxes and File IDs), then every DICOM file, DICOMDIR included, becomes a Secure DICOM File.
PS3.11 names: STD-GEN-SEC-CD, STD-GEN-SEC-DVD-RAM and STD-GEN-SEC-BD (Annex D), and
STD-GEN-SEC-DVD-JPEG / STD-GEN-SEC-DVD-J2K (Annex H). Our uncompressed "STD-GEN-DVD" burns the
DVD-RAM rules (Explicit VR Little Endian only), so its secure variant is STD-GEN-SEC-DVD-RAM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType

from appliance.media.errors import UnknownProfileError
from appliance.media.profiles import PROFILES, MediaProfile, get_profile

CLEAR_SIBLING: Mapping[str, str] = MappingProxyType(
    {
        "STD-GEN-SEC-CD": "STD-GEN-CD",
        "STD-GEN-SEC-DVD-RAM": "STD-GEN-DVD",
        "STD-GEN-SEC-BD": "STD-GEN-BD",
        "STD-GEN-SEC-DVD-JPEG": "STD-GEN-DVD-JPEG",
        "STD-GEN-SEC-DVD-J2K": "STD-GEN-DVD-J2K",
    }
)
"""Secure profile -> the clear profile whose object rules it applies."""

SECURE_VARIANT: Mapping[str, str] = MappingProxyType({v: k for k, v in CLEAR_SIBLING.items()})
"""Clear profile -> its secure variant (STD-CTMR-* has none in PS3.11)."""


def is_secure_profile(name: str) -> bool:
    """True for the STD-GEN-SEC-* identifiers we write."""
    return name.strip().upper() in CLEAR_SIBLING


def secure_variant(name: str) -> str:
    """The secure profile of a clear one (or the name itself if it is secure already)."""
    key = name.strip().upper()
    if key in CLEAR_SIBLING:
        return key
    try:
        return SECURE_VARIANT[key]
    except KeyError:
        raise UnknownProfileError(
            f"media profile {name!r} has no secure variant (known: {', '.join(SECURE_VARIANT)})"
        ) from None


def media_profile(name: str) -> tuple[MediaProfile, bool]:
    """The profile to build the file set with, and whether its files are to be encrypted."""
    key = name.strip().upper()
    sibling = CLEAR_SIBLING.get(key)
    if sibling is None:
        return get_profile(key), False
    clear = PROFILES[sibling]
    return replace(clear, name=key, source=f"{clear.source}, secure (PS3.15 Annex D)"), True
