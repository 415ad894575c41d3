"""One shared way to write to SQLite: a writer connection and serialised BEGIN IMMEDIATE
transactions on it."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal


def open_writer(path: Path, synchronous: Literal["NORMAL", "FULL"]) -> sqlite3.Connection:
    """A WAL connection in autocommit mode, shareable between threads (callers hold a lock),
    rows as sqlite3.Row. `synchronous` is FULL for state that must survive power loss, NORMAL
    where the files on disk are the truth (the store index)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


@contextmanager
def immediate_transaction(
    conn: sqlite3.Connection, lock: threading.Lock
) -> Iterator[sqlite3.Cursor]:
    """BEGIN IMMEDIATE ... COMMIT on `conn` (autocommit mode), rolled back on any error.

    The lock serialises the threads of one process sharing the connection; IMMEDIATE takes the
    database write lock at once, so concurrent processes wait (busy timeout) instead of failing
    later on lock upgrade.
    """
    with lock:
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
