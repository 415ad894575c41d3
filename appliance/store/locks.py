"""Study locks: a locked study is never deleted by retention (`studies.locked`).

The column is added to existing databases in place: `ALTER TABLE ... ADD COLUMN` with a
constant default rewrites nothing and keeps every row, and it runs only when `PRAGMA
table_info` shows the column missing, so it is safe to call at every start and from any process.
"""

from __future__ import annotations

import sqlite3

from appliance.errors import StoreError


class UnknownStudyError(StoreError):
    """The study is not in the local store."""


def has_locked_column(conn: sqlite3.Connection) -> bool:
    """True when `studies` has the `locked` column."""
    return any(row[1] == "locked" for row in conn.execute("PRAGMA table_info(studies)"))


def ensure_locked_column(conn: sqlite3.Connection) -> None:
    """Add `studies.locked` (0/1, default 0) if the table lacks it; idempotent.

    `conn` must be a writable connection in autocommit mode. Two processes racing here is
    harmless: the loser's ALTER fails with "duplicate column", which is ignored.
    """
    if not any(row[1] for row in conn.execute("PRAGMA table_info(studies)")):
        return  # no studies table yet: the index creates it (and we come back later)
    if has_locked_column(conn):
        return
    try:
        conn.execute("ALTER TABLE studies ADD COLUMN locked INTEGER NOT NULL DEFAULT 0")
    except sqlite3.OperationalError as exc:
        if "duplicate column" not in str(exc):
            raise


def set_locked(conn: sqlite3.Connection, study_uid: str, locked: bool) -> None:
    """Lock or unlock one study; UnknownStudyError if it is not in the store."""
    ensure_locked_column(conn)
    cur = conn.execute(
        "UPDATE studies SET locked = ? WHERE study_uid = ?", (1 if locked else 0, study_uid)
    )
    if cur.rowcount == 0:
        raise UnknownStudyError("that study is not in the local store")


def is_locked(conn: sqlite3.Connection, study_uid: str) -> bool:
    """True when the study exists and is locked."""
    if not has_locked_column(conn):
        return False
    row = conn.execute("SELECT locked FROM studies WHERE study_uid = ?", (study_uid,)).fetchone()
    return bool(row and row[0])
