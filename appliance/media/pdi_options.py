"""What an institution chooses for the IHE PDI content of its discs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from appliance import __version__
from appliance.media.pdi_errors import PdiError

DEFAULT_APPLICATION_NAME = "Disc Kiosk"
DICOM_ONLY = "DICOM ONLY"
DICOM_PLUS_WEB = "DICOM PLUS WEB"
MIN_IMAGE_EDGE = 64
MAX_IMAGE_EDGE = 2048
WEB_BUNDLE_NAME = "WEB.P7M"
"""The encrypted web bundle at the root of a secure disc (ISO 9660 Level 1: 8.3)."""


@dataclass(frozen=True, slots=True)
class PdiOptions:
    """Options of the PDI content (README.TXT, and with web content INDEX.HTM + IHE_PDI/)."""

    institution_name: str
    """The institution that creates the disc (README, web pages)."""

    institution_contact: str = ""
    """Address/phone for questions about the disc; several lines allowed ("\\n")."""

    application_name: str = DEFAULT_APPLICATION_NAME
    """The creating application, as IHE PDI asks the README to name it."""

    application_version: str = __version__
    """Its version."""

    web_content: bool = False
    """True: "DICOM PLUS WEB" (INDEX.HTM and IHE_PDI/ pages with JPEG previews); False: "DICOM
    ONLY", the IHE PDI baseline (smallest disc, patient data only inside the DICOM files)."""

    secure: bool = False
    """The DICOM files will be encrypted (STD-GEN-SEC-* profiles): the README says so and names
    nothing but counts. Excludes web content, which would show the data in clear."""

    web_bundle: bool = False
    """Secure discs only: the web pages (as `web_content` writes them, with a copy of the
    README) go into one encrypted archive, WEB_BUNDLE_NAME, instead of onto the disc in clear;
    the README says how to open it."""

    language: Literal["en"] = "en"
    """Language of the README and the pages; English only for now."""

    max_image_edge: int = 512
    """Longest side, in pixels, of the JPEG previews on the web pages."""

    def __post_init__(self) -> None:
        if not self.institution_name.strip():
            raise PdiError("PDI options: the institution name is empty")
        if not self.application_name.strip() or not self.application_version.strip():
            raise PdiError("PDI options: the application name and version must not be empty")
        if self.secure and self.web_content:
            raise PdiError(
                "PDI options: a secure disc cannot carry web content (it is not encrypted)"
            )
        if self.web_bundle and not self.secure:
            raise PdiError("PDI options: the encrypted web bundle is for secure discs only")
        if not MIN_IMAGE_EDGE <= self.max_image_edge <= MAX_IMAGE_EDGE:
            raise PdiError(
                f"PDI options: max_image_edge must be {MIN_IMAGE_EDGE}..{MAX_IMAGE_EDGE} pixels"
            )

    @property
    def content_label(self) -> str:
        """The IHE PDI content option: "DICOM ONLY" or "DICOM PLUS WEB"."""
        return DICOM_PLUS_WEB if self.web_content else DICOM_ONLY
