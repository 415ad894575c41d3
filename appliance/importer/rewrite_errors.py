"""Errors of the identity rewrite of imported instances.

Messages name the file (its staging name) and what is wrong, never patient data.
"""

from __future__ import annotations

from appliance.importer.errors import ImporterError


class RewriteError(ImporterError):
    """One instance cannot be rewritten (damaged header, missing UIDs, unusable syntax); the
    import can go on without it. No output file is left behind."""


class RewriteOutputError(RewriteError):
    """The output cannot be written (staging full or unwritable): not the instance's fault, so
    a batch stops instead of skipping file after file."""
