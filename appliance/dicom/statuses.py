"""DIMSE status codes we send or interpret, with their meaning in words."""

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
"""Refused: out of resources (the store's free-space reserve would be crossed)."""
DATASET_MISMATCH = 0xA900
"""Error: data set does not match SOP class (or the request's SOP Instance UID)."""
CANNOT_UNDERSTAND = 0xC000
"""Error: cannot understand (the data set cannot be parsed)."""
PROCESSING_FAILURE = 0xC001
"""Failure in the 0xCxxx range that our Storage SCP uses for local processing errors."""

STORAGE_STATUS_TEXT = {
    SUCCESS: "Success",
    OUT_OF_RESOURCES: "Refused: Out of resources",
    DATASET_MISMATCH: "Error: Data set does not match SOP class",
    CANNOT_UNDERSTAND: "Error: Cannot understand",
    PROCESSING_FAILURE: "Error: Processing failure",
}
