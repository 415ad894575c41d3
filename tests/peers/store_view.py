"""Read-only looks at a kioskd's store from the outside: index rows, files, partial files."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.peers.kioskd import KioskdProcess


def index_rows(
    daemon: KioskdProcess, sql: str, params: tuple[Any, ...] = ()
) -> list[dict[str, Any]]:
    """Run a query on the daemon's SQLite index (read-only connection, closed afterwards)."""
    conn = sqlite3.connect(f"file:{daemon.index_file}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()


def indexed_instances(daemon: KioskdProcess) -> list[dict[str, Any]]:
    """Every row of the `instances` table."""
    return index_rows(daemon, "SELECT * FROM instances ORDER BY sop_instance_uid")


def incoming_files(daemon: KioskdProcess) -> list[Path]:
    """Partial files in `store/.incoming`."""
    incoming = daemon.store_dir / ".incoming"
    return sorted(p for p in incoming.iterdir()) if incoming.is_dir() else []


def store_files(daemon: KioskdProcess) -> list[Path]:
    """Every regular file under the store directory: instances and partial files. The empty
    spares the store pre-creates in `store/.spare` (never written to) are not data."""
    spare = daemon.store_dir / ".spare"
    return sorted(p for p in daemon.store_dir.rglob("*") if p.is_file() and spare not in p.parents)


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll `predicate()` until it is true or `timeout` seconds passed; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return bool(value)
        time.sleep(interval)
