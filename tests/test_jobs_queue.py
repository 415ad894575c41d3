"""The job store and runner on real SQLite: ordering, retry, cancel, recovery after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from appliance.jobs import JobState, JobStore
from appliance.jobs.model import Job, JobCancelled, JobError, UnknownJobError
from appliance.jobs.runner import JobContext, JobRunner


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs.sqlite", backoff_seconds=0.05)


def test_claim_order_priority_then_age(store: JobStore) -> None:
    low = store.submit("burn", {"n": 1})
    high = store.submit("burn", {"n": 2}, priority=5)
    other_kind = store.submit("print", {"n": 3}, priority=9)
    later = store.submit("burn", {"n": 4})
    claimed = [store.claim(("burn",)) for _ in range(3)]
    assert [j.id for j in claimed if j] == [high.id, low.id, later.id]
    assert store.claim(("burn",)) is None
    assert store.get(other_kind.id).state == JobState.QUEUED


def test_resource_binding(store: JobStore) -> None:
    job = store.submit("burn", {}, resource="drive2")
    assert store.claim(("burn",), "drive1") is None
    claimed = store.claim(("burn",), "drive2")
    assert claimed is not None and claimed.id == job.id


def test_concurrent_claims_never_share_a_job(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    first = JobStore(path)
    ids = {first.submit("send", {"i": i}).id for i in range(60)}
    stores = [first, JobStore(path), JobStore(path)]
    taken: list[int] = []
    lock = threading.Lock()

    def worker(s: JobStore) -> None:
        while (job := s.claim(("send",))) is not None:
            with lock:
                taken.append(job.id)

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(taken) == sorted(ids)


def test_retry_with_backoff_then_failed(store: JobStore) -> None:
    job = store.submit("burn", {}, max_attempts=2)
    claimed = store.claim(("burn",))
    assert claimed is not None and claimed.attempts == 1
    assert store.fail(job.id, "drive busy", retryable=True) == JobState.QUEUED
    again = store.get(job.id)
    assert again.state == JobState.QUEUED and again.error == "drive busy"
    assert store.claim(("burn",)) is None  # back-off not yet over
    time.sleep(0.1)
    claimed = store.claim(("burn",))
    assert claimed is not None and claimed.attempts == 2
    assert store.fail(job.id, "drive busy", retryable=True) == JobState.FAILED
    final = store.get(job.id)
    assert final.state == JobState.FAILED and final.finished_at is not None


def test_cancel_queued_and_running(store: JobStore) -> None:
    queued = store.submit("burn", {})
    assert store.cancel(queued.id).state == JobState.CANCELLED
    running = store.submit("burn", {})
    assert store.claim(("burn",)) is not None
    after = store.cancel(running.id)
    assert after.state == JobState.RUNNING and after.cancel_requested
    assert store.is_cancel_requested(running.id)
    with pytest.raises(UnknownJobError):
        store.cancel(9999)


def test_retry_command_requeues_failed(store: JobStore) -> None:
    job = store.submit("burn", {}, max_attempts=1)
    store.claim(("burn",))
    store.fail(job.id, "no media", retryable=False)
    again = store.retry(job.id)
    assert again.state == JobState.QUEUED and again.attempts == 0 and again.error is None


def test_runner_outcomes(store: JobStore) -> None:
    seen: list[int] = []

    def handler(job: Job, ctx: JobContext) -> dict[str, object]:
        seen.append(job.id)
        ctx.progress("writing", done_bytes=5, total_bytes=10)
        mode = job.params["mode"]
        if mode == "fail":
            raise JobError("media too small for this study")
        if mode == "retry":
            raise JobError("drive not ready", retryable=True)
        if mode == "crash":
            raise ValueError("bug")
        if mode == "cancel":
            store.cancel(job.id)
            ctx.check_cancelled()
        return {"copies": 1}

    runner = JobRunner(store, "t", {"burn": handler})
    ok = store.submit("burn", {"mode": "ok"})
    failed = store.submit("burn", {"mode": "fail"})
    retry = store.submit("burn", {"mode": "retry"}, max_attempts=1)
    crash = store.submit("burn", {"mode": "crash"})
    cancel = store.submit("burn", {"mode": "cancel"})
    while runner.run_once() is not None:
        pass
    assert store.get(ok.id).state == JobState.SUCCEEDED
    assert store.get(ok.id).result == {"copies": 1}
    assert store.get(ok.id).progress.phase == "writing"
    assert store.get(failed.id).error == "media too small for this study"
    assert store.get(failed.id).state == JobState.FAILED
    assert store.get(retry.id).state == JobState.FAILED  # no attempts left
    assert store.get(crash.id).error == "internal error (ValueError)"
    assert store.get(cancel.id).state == JobState.CANCELLED
    assert seen == [ok.id, failed.id, retry.id, crash.id, cancel.id]
    assert JobCancelled  # the signal type is part of the runner contract


def test_running_job_survives_kill9_and_is_recovered(tmp_path: Path) -> None:
    """A process claims a job and dies by SIGKILL mid-run; at start the job is requeued (or
    failed by the kind's policy) and nothing is lost."""
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    burn = store.submit("burn", {"study": "1.2.3"})
    send = store.submit("send", {"study": "1.2.3"})
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from appliance.jobs import JobStore
        s = JobStore(Path({str(path)!r}))
        s.claim(("burn",)); s.claim(("send",))
        print("claimed", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "claimed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert store.get(burn.id).state == JobState.RUNNING
    outcome = dict(store.recover({"burn": lambda job: "the disc may be half-written"}))
    assert outcome == {burn.id: "failed", send.id: "requeued"}
    assert store.get(burn.id).state == JobState.FAILED
    assert store.get(burn.id).error == "the disc may be half-written"
    assert store.get(send.id).state == JobState.QUEUED
