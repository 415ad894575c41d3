"""One shared way to write to SQLite: a serialised BEGIN IMMEDIATE transaction."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager


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
