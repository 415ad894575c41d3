"""UIDs of the Print Management service (PS3.4 H, PS3.6)."""

from __future__ import annotations

BASIC_GRAYSCALE_PRINT_META = "1.2.840.10008.5.1.1.9"
"""Basic Grayscale Print Management Meta SOP Class: film session, film box, grayscale image
box and printer."""
BASIC_COLOR_PRINT_META = "1.2.840.10008.5.1.1.18"
"""Basic Color Print Management Meta SOP Class: the same with colour image boxes."""
BASIC_FILM_SESSION = "1.2.840.10008.5.1.1.1"
BASIC_FILM_BOX = "1.2.840.10008.5.1.1.2"
BASIC_GRAYSCALE_IMAGE_BOX = "1.2.840.10008.5.1.1.4"
BASIC_COLOR_IMAGE_BOX = "1.2.840.10008.5.1.1.4.1"
PRINTER = "1.2.840.10008.5.1.1.16"
PRINTER_INSTANCE = "1.2.840.10008.5.1.1.17"
"""The well-known SOP Instance UID of the Printer SOP Class."""
PRINT_JOB = "1.2.840.10008.5.1.1.14"

ACTION_PRINT = 1
"""Action Type ID of N-ACTION print on a film session or film box."""

PRINTER_EVENTS = {1: "NORMAL", 2: "WARNING", 3: "FAILURE"}
"""Event Type IDs of Printer N-EVENT-REPORTs."""
PRINT_JOB_EVENTS = {1: "PENDING", 2: "PRINTING", 3: "DONE", 4: "FAILURE"}
"""Event Type IDs of Print Job N-EVENT-REPORTs."""


def meta_sop_class(color: bool) -> str:
    """The meta SOP class a grayscale or colour printer is driven through."""
    return BASIC_COLOR_PRINT_META if color else BASIC_GRAYSCALE_PRINT_META
