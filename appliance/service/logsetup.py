"""Logging to stderr, journald-friendly.

Under systemd (JOURNAL_STREAM set) each line starts with a `<N>` syslog priority, which journald
turns into the entry's priority; elsewhere lines carry a timestamp. Patient data is never
logged: our code logs UIDs, AE titles and counts only, pynetdicom is held at WARNING (its DEBUG
output can dump identifiers) and pydicom's value warnings are silenced (they quote values).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class JournalFormatter(logging.Formatter):
    """`<priority>logger: message` lines for journald."""

    def format(self, record: logging.LogRecord) -> str:
        """Prefix the formatted record with its syslog priority."""
        priority = _PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{super().format(record)}"


def setup_logging(level: str = "INFO", network_debug: bool = False) -> None:
    """Configure the root logger once for a process."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if network_debug else logging.WARNING)
    # pynetdicom's standard handlers format every PDU and DIMSE message for its debug log
    # whether or not it is enabled (a large share of the per-instance CPU time); bind them only
    # when that log is wanted.
    from pynetdicom import _config as pynetdicom_config

    pynetdicom_config.LOG_HANDLER_LEVEL = "standard" if network_debug else "none"
    # pydicom's messages may quote element values (names, dates): keep only its errors.
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?")
    import pydicom.config

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
