"""Index checkpoints run in their own thread, not in the receiving thread's commits."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from appliance.store.checkpoints import Checkpointer
from appliance.store.index import StoreIndex


def test_the_index_writer_never_checkpoints_itself(tmp_path: Path) -> None:
    index = StoreIndex(tmp_path / "kiosk.sqlite")
    try:
        with index.transaction() as cur:
            value = cur.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert value == 0
    finally:
        index.close()


def test_the_checkpointer_moves_the_log_into_the_database(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (x BLOB)")
    for _ in range(200):
        writer.execute("INSERT INTO t VALUES (?)", (b"\0" * 4000,))
    size_before = path.stat().st_size
    assert (tmp_path / "db.sqlite-wal").stat().st_size > 500_000  # it all sits in the log
    checkpointer = Checkpointer(path, interval=0.05)
    checkpointer.start()
    try:
        deadline = time.monotonic() + 10
        while path.stat().st_size <= size_before and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        checkpointer.stop()
        writer.close()
    # The pages are in the database file now, written by the checkpointer's own connection.
    assert path.stat().st_size > size_before + 500_000
