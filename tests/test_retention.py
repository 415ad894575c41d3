"""Retention deletes only committed instances of unlocked studies and keeps index = files."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from appliance.store import InstanceStore, StoreIndex
from appliance.store.commitments import CommitmentStore, Report, ReportedFailure
from appliance.store.index import connect
from appliance.store.locks import (
    UnknownStudyError,
    ensure_locked_column,
    has_locked_column,
    is_locked,
    set_locked,
)
from appliance.store.retention import Retention, RetentionPolicy
from tests.peers.data import dataset_bytes, make_instance
from tests.peers.dcmtk import storescu
from tests.peers.kioskd import KioskdProcess
from tests.peers.net import free_port
from tests.peers.orthanc import Orthanc
from tests.peers.store_view import index_rows, wait_until

MakeKioskd = Callable[..., KioskdProcess]
CT = "1.2.840.10008.5.1.4.1.1.2"


@dataclass
class Local:
    """An in-process store with its index and commitment tables."""

    root: Path
    index: StoreIndex
    store: InstanceStore
    commitments: CommitmentStore
    data: Path

    def add_study(self, count: int, name: str = "KEEP^ME") -> tuple[str, list[str]]:
        """Store a new study of `count` instances; returns (study UID, SOP Instance UIDs)."""
        study, series = generate_uid(), generate_uid()
        sops = []
        for number in range(1, count + 1):
            path = make_instance(
                self.data,
                study_uid=study,
                series_uid=series,
                instance_number=number,
                patient_name=name,
                rows=16,
                columns=16,
            )
            ds = dcmread(path, stop_before_pixels=True)
            sop = str(ds.SOPInstanceUID)
            incoming = self.store.open_incoming(CT, sop, str(ds.file_meta.TransferSyntaxUID), "T")
            incoming.write(dataset_bytes(path))
            self.store.commit(
                incoming,
                expected_sop_class_uid=CT,
                expected_sop_instance_uid=sop,
                calling_ae="T",
                called_ae="KIOSK",
            )
            sops.append(sop)
        return study, sops

    def commit(self, sops: list[str], failed: dict[str, int] | None = None) -> None:
        """Record a transaction for `sops` and its report (`failed`: uid -> reason)."""
        failed = failed or {}
        uid = generate_uid()
        self.commitments.create(
            uid,
            node="archive",
            remote_ae="ARCHIVE",
            instances=[(CT, s) for s in sops],
            expires_at=time.time() + 60,
        )
        self.commitments.apply_report(
            Report(
                uid,
                2 if failed else 1,
                [(CT, s) for s in sops if s not in failed],
                [ReportedFailure(CT, s, r) for s, r in failed.items()],
            )
        )

    def age(self, sop: str, received_at: float) -> None:
        """Make an instance look received at `received_at` (index row and file mtime)."""
        path = self.root / self.indexed()[sop]
        os.utime(path, (received_at, received_at))
        with self.index.transaction() as cur:
            cur.execute(
                "UPDATE instances SET received_at = ? WHERE sop_instance_uid = ?",
                (received_at, sop),
            )

    def lock(self, study: str) -> None:
        conn = connect(self.index.path)
        try:
            set_locked(conn, study, True)
        finally:
            conn.close()

    def indexed(self) -> dict[str, str]:
        """SOP Instance UID -> relative path of every indexed instance."""
        rows = self.index.query("SELECT sop_instance_uid, path FROM instances")
        return {r["sop_instance_uid"]: r["path"] for r in rows}

    def files(self) -> set[str]:
        """Relative paths of the instance files in the store."""
        return {str(p.relative_to(self.root)) for p in self.root.glob("*/*/*.dcm")}

    def consistent(self) -> bool:
        """The index names exactly the files there are."""
        return set(self.indexed().values()) == self.files()


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Local]:
    root = tmp_path / "store"
    index = StoreIndex(tmp_path / "kiosk.sqlite")
    store = InstanceStore(root, index, 0)
    commitments = CommitmentStore(tmp_path / "kiosk.sqlite")
    data = tmp_path / "data"
    data.mkdir()
    try:
        yield Local(root, index, store, commitments, data)
    finally:
        commitments.close()
        close = getattr(store, "close", None)
        if close is not None:
            close()
        index.close()


def test_only_committed_instances_of_unlocked_studies_go(local: Local) -> None:
    done, done_sops = local.add_study(2)
    locked, locked_sops = local.add_study(2)
    fresh, fresh_sops = local.add_study(2)
    mixed, mixed_sops = local.add_study(3)
    local.commit(done_sops + locked_sops)
    local.commit(mixed_sops, failed={mixed_sops[0]: 0x0112})
    local.commitments.create(
        generate_uid(),
        node="archive",
        remote_ae="ARCHIVE",
        instances=[(CT, mixed_sops[2])],
        expires_at=time.time() + 60,
    )  # a later transaction still pending does not undo the earlier commitment
    local.lock(locked)

    retention = Retention(
        local.index, local.root, RetentionPolicy(max_age_seconds=0), clock=lambda: time.time() + 1
    )
    report = retention.run_once()

    assert report.deleted == 2 + 2 and report.by_age == 4 and report.skipped == 0
    left = set(local.indexed())
    assert left == set(locked_sops) | set(fresh_sops) | {mixed_sops[0]}
    assert local.consistent()
    studies = {r["study_uid"] for r in local.index.query("SELECT study_uid FROM studies")}
    assert studies == {locked, fresh, mixed}
    events = local.index.query(
        "SELECT study_uid, detail FROM store_events WHERE kind = ?", ("retention_deleted",)
    )
    assert {(e["study_uid"], e["detail"]) for e in events} == {
        (done, "instances=2"),
        (mixed, "instances=2"),
    }
    assert not any((local.root / ".retention").iterdir())
    # Nothing more is eligible: a second pass deletes nothing.
    assert retention.run_once().deleted == 0


def test_age_limit_spares_younger_instances(local: Local) -> None:
    _, old_sops = local.add_study(1)
    _, young_sops = local.add_study(1)
    local.commit(old_sops + young_sops)
    local.age(old_sops[0], time.time() - 7200)
    retention = Retention(local.index, local.root, RetentionPolicy(max_age_seconds=3600))
    assert retention.run_once().deleted == 1
    assert set(local.indexed()) == set(young_sops)
    assert local.consistent()


def test_watermark_deletes_oldest_first_down_to_the_low_mark(local: Local) -> None:
    studies = [local.add_study(2) for _ in range(4)]
    all_sops = [sop for _, sops in studies for sop in sops]
    local.commit(all_sops)
    base = time.time() - 1000
    for n, sop in enumerate(all_sops):
        local.age(sop, base + n)
    sizes = {r["sop_instance_uid"]: r["size"] for r in local.index.query("SELECT * FROM instances")}
    total = 100 * sizes[all_sops[0]]
    used = 90 * sizes[all_sops[0]]  # 90 % full; the low mark (85 %) needs 5 instances' worth

    def disk(_: Path) -> tuple[int, int]:
        return total, total - used

    policy = RetentionPolicy(high_watermark=0.88, low_watermark=0.85)
    retention = Retention(local.index, local.root, policy, disk_usage=disk)
    report = retention.run_once()
    freed = 0
    expected = []
    for sop in all_sops:  # oldest first
        if used - freed <= 0.85 * total:
            break
        expected.append(sop)
        freed += sizes[sop]
    assert report.by_watermark == len(expected) == report.deleted
    assert set(local.indexed()) == set(all_sops) - set(expected)
    assert local.consistent()

    # Under the high mark nothing goes.
    used = 80 * sizes[all_sops[0]]
    assert retention.run_once().deleted == 0


def test_a_new_copy_arriving_during_deletion_is_kept(local: Local) -> None:
    _, sops = local.add_study(1)
    local.commit(sops)
    retention = Retention(
        local.index, local.root, RetentionPolicy(max_age_seconds=0), clock=lambda: time.time() + 1
    )
    chosen, _, _ = retention.plan()
    path = local.root / local.indexed()[sops[0]]
    # A C-STORE of the same instance has put a new file in place (its row is still to come).
    copy = path.with_suffix(".new")
    shutil.copyfile(path, copy)
    os.replace(copy, path)
    deleted, _, skipped = retention._delete(chosen)
    assert (deleted, skipped) == (0, 1)
    assert path.is_file() and set(local.indexed()) == set(sops)
    # Once its row is written (received_at after the file), the new copy goes like any other.
    local.age(sops[0], time.time())
    assert retention.run_once().deleted == 1
    assert local.consistent() and not local.indexed()


def test_protected_studies_are_spared(local: Local) -> None:
    busy, busy_sops = local.add_study(1)
    _, idle_sops = local.add_study(1)
    local.commit(busy_sops + idle_sops)
    retention = Retention(
        local.index,
        local.root,
        RetentionPolicy(max_age_seconds=0),
        protected_studies=lambda: {busy},
        clock=lambda: time.time() + 1,
    )
    assert retention.run_once().deleted == 1
    assert set(local.indexed()) == set(busy_sops)


def test_locked_column_is_added_to_an_existing_database(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.sqlite"
    index = StoreIndex(path)
    with index.transaction() as cur:
        cur.execute(
            "INSERT INTO studies (study_uid, patient_name, first_received_at, last_received_at) "
            "VALUES ('1.2.3', 'OLD^ROW', 1, 1)"
        )
    index.close()
    conn = connect(path)
    try:
        assert not has_locked_column(conn)
        ensure_locked_column(conn)
        ensure_locked_column(conn)  # idempotent
        assert has_locked_column(conn)
        row = conn.execute("SELECT patient_name, locked FROM studies").fetchone()
        assert (row["patient_name"], row["locked"]) == ("OLD^ROW", 0)
        set_locked(conn, "1.2.3", True)
        assert is_locked(conn, "1.2.3")
        with pytest.raises(UnknownStudyError):
            set_locked(conn, "9.9.9", True)
    finally:
        conn.close()
    # The index still opens and writes with the new column present.
    StoreIndex(path).close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA table_info(studies)").fetchall()[-1][1] == "locked"
    raw.close()


# -- end to end: kioskd, Orthanc's commitment, kioskctl lock ------------------------------------


def _json(daemon: KioskdProcess, *args: str) -> Any:
    result = daemon.kioskctl("--json", *args)
    assert result.returncode == 0 and result.stdout, result.stderr
    return json.loads(result.stdout)


def test_retention_in_kioskd_after_commitment(make_kioskd: MakeKioskd, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    studies: dict[str, str] = {}
    files: list[Path] = []
    for name in ("SENT^ONLY", "SENT^LOCKED", "NEVER^SENT"):
        studies[name] = uid = generate_uid()
        series = generate_uid()
        files += [
            make_instance(data, study_uid=uid, series_uid=series, patient_name=name, rows=16)
            for _ in range(2)
        ]
    kiosk_port = free_port()
    orthanc = Orthanc(
        tmp_path / "orthanc", modalities={"kiosk": ("KIOSK", "127.0.0.1", kiosk_port)}
    ).start()
    try:
        daemon = make_kioskd(
            {
                "nodes": {
                    "orthanc": {"ae_title": "ORTHANC", "host": "127.0.0.1", "port": orthanc.port}
                },
                "retention": {"max_age_hours": 0, "check_interval_seconds": 0.3},
            },
            start=False,
        )
        daemon.port = kiosk_port
        daemon.start()
        assert storescu(daemon.port, files).returncode == 0
        assert _json(daemon, "lock", studies["SENT^LOCKED"]) == {
            "study_uid": studies["SENT^LOCKED"],
            "locked": True,
        }
        for name in ("SENT^ONLY", "SENT^LOCKED"):
            job = _json(daemon, "send", "orthanc", studies[name], "--commit", "--wait")
            assert job["state"] == "succeeded", job

        def local_studies() -> set[str]:
            return {r["study_uid"] for r in index_rows(daemon, "SELECT study_uid FROM instances")}

        kept = {studies["SENT^LOCKED"], studies["NEVER^SENT"]}
        assert wait_until(lambda: local_studies() == kept, 15), local_studies()
        time.sleep(1)  # several more passes: the locked and the uncommitted study stay
        assert local_studies() == kept
        assert len(daemon.stored_files()) == 4

        unlocked = daemon.kioskctl("unlock", studies["SENT^LOCKED"])
        assert unlocked.returncode == 0 and "unlocked" in unlocked.stdout
        assert wait_until(lambda: local_studies() == {studies["NEVER^SENT"]}, 15)
        assert len(daemon.stored_files()) == 2
        bad = daemon.kioskctl("lock", "1.2.3.4")
        assert bad.returncode == 1 and "not in the local store" in bad.stderr
    finally:
        orthanc.stop(timeout=0.5)
