"""What a burn job does before the file set: a runner notices a job another process queued
without waiting for its poll, and the store paths of the selection are resolved as
`resolve_inside` resolves them (folders once, symbolic links in full)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from appliance.errors import InvalidUIDError
from appliance.jobs import JobState, JobStore
from appliance.jobs.model import Job
from appliance.jobs.runner import JobContext, JobRunner, _QueueWatch
from appliance.store.layout import resolve_inside
from appliance.store.selection import _StorePaths


def test_watch_sees_jobs_queued_by_another_connection(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite"
    JobStore(db).close()  # the schema
    watch = _QueueWatch.open(db)
    assert watch is not None
    try:
        assert not watch.job_ready(("burn",), "drive1")
        other = JobStore(db)  # as kioskctl: another connection (another process in real life)
        try:
            other.submit("print", {}, resource="printer")
            assert not watch.job_ready(("burn",), "drive1")  # changed, but nothing for us
            other.submit("burn", {}, resource="drive2")
            assert not watch.job_ready(("burn",), "drive1")
            other.submit("burn", {}, resource="drive1")
            assert watch.job_ready(("burn",), "drive1")
            assert not watch.job_ready(("burn",), "drive1")  # unchanged since: no new look
            other.submit("burn", {})  # for any drive
            assert watch.job_ready(("burn",), "drive9")
        finally:
            other.close()
    finally:
        watch.close()


def test_watch_of_an_unreadable_database_means_polling(tmp_path: Path) -> None:
    assert _QueueWatch.open(tmp_path / "missing" / "jobs.sqlite") is None
    assert _QueueWatch.open(None) is None


def test_runner_with_a_long_poll_runs_a_job_queued_elsewhere(tmp_path: Path) -> None:
    """With an hour between polls, only the watch can start the job."""
    db = tmp_path / "jobs.sqlite"
    store = JobStore(db)
    ran = threading.Event()

    def handler(job: Job, ctx: JobContext) -> dict[str, int]:
        ran.set()
        return {"id": job.id}

    runner = JobRunner(store, "drive", {"burn": handler}, resource="drive1", poll_seconds=3600)
    runner.start()
    other = JobStore(db)
    try:
        job = other.submit("burn", {}, resource="drive1")
        assert ran.wait(60)
    finally:
        runner.stop()
        other.close()
    assert store.get(job.id).state is JobState.SUCCEEDED
    store.close()


def test_store_paths_match_resolve_inside(tmp_path: Path) -> None:
    root = tmp_path / "store"
    (root / "A" / "B").mkdir(parents=True)
    (root / "A" / "B" / "one.dcm").write_bytes(b"1")
    outside = tmp_path / "outside.dcm"
    outside.write_bytes(b"x")
    (root / "A" / "B" / "link.dcm").symlink_to(outside)
    (root / "A" / "inner.dcm").symlink_to(root / "A" / "B" / "one.dcm")
    (root / "A" / "C").symlink_to(tmp_path)
    resolve = _StorePaths(root)
    for stored in ("A/B/one.dcm", "A/B/missing.dcm", "A/inner.dcm", "A/./B/one.dcm", "top.dcm"):
        assert resolve(stored) == resolve_inside(root, stored), stored
    for stored in ("A/B/link.dcm", "A/C/outside.dcm", "../outside.dcm", "/etc/passwd", "A/../.."):
        with pytest.raises(InvalidUIDError):
            resolve_inside(root, stored)
        with pytest.raises(InvalidUIDError):
            resolve(stored)
