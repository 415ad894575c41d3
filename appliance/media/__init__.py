"""Disc content: PS3.11 file sets, IHE PDI content, identity transforms, ISO images, verification.

Nothing here knows about jobs or the TUI; the burn runner in `jobs/` wires these pieces.
"""
