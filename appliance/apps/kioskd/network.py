"""kioskd's network work: retrieve, send and import runners, commitment reports, retention.

- One runner per registry node takes that node's retrieve and send jobs in turn (jobs are
  submitted with `resource` = node name), so a slow PACS never holds up another node. The
  runners share a `DeferringJobStore` whose back-off is `retrieve.retry_delay_seconds`.
- One runner takes import jobs (discs, ISO images, folders), which end with a send too.
- The listener gets a service accepting Storage Commitment reports; a settled transaction wakes
  its parked send or import job.
- Retention runs every `retention.check_interval_seconds` when a policy is configured; studies
  that queued or running jobs name are spared.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from appliance.config import KioskConfig
from appliance.dicom.commitment import ReportReceiver, commitment_service
from appliance.dicom.services import ScpService
from appliance.drives.base import OpticalDrive
from appliance.jobs.commitment_flow import CommitmentFlow
from appliance.jobs.deferral import DeferringJobStore
from appliance.jobs.import_job import ImportHandler
from appliance.jobs.import_request import IMPORT
from appliance.jobs.model import JobState
from appliance.jobs.retrieve import RETRIEVE, RetrieveHandler
from appliance.jobs.runner import JobHandler, JobRunner
from appliance.jobs.secrets import PROCESS_VAULT
from appliance.jobs.send import SendHandler
from appliance.jobs.send_request import SEND
from appliance.store import StoreIndex
from appliance.store.commitments import CommitmentStore, ReportResult
from appliance.store.retention import Retention, RetentionPolicy

log = logging.getLogger(__name__)


def studies_in_use(jobs: DeferringJobStore) -> set[str]:
    """Study UIDs named by queued or running jobs of any kind (retention leaves them alone)."""
    used: set[str] = set()
    for job in jobs.list_jobs(states=(JobState.QUEUED, JobState.RUNNING), limit=100_000):
        params: dict[str, Any] = job.params
        for key in ("study_uids", "study_uid"):
            value = params.get(key)
            if isinstance(value, str):
                used.add(value)
            elif isinstance(value, list):
                used.update(str(v) for v in value)
    return used


class NetworkWork:
    """The runners, listener service and periodic retention of network jobs."""

    def __init__(
        self,
        config: KioskConfig,
        index: StoreIndex,
        drives: dict[str, OpticalDrive] | None = None,
    ) -> None:
        self.config = config
        path = config.paths.index_file
        self.jobs = DeferringJobStore(path, backoff_seconds=config.retrieve.retry_delay_seconds)
        self.commitments = CommitmentStore(path)
        self.receiver = ReportReceiver(self.commitments, on_settled=self._settled)
        handlers: dict[str, JobHandler] = {
            RETRIEVE: RetrieveHandler(config),
            SEND: SendHandler(config, self.commitments, self.receiver),
        }
        self.runners = [
            JobRunner(self.jobs, f"node-{name}", handlers, resource=name) for name in config.nodes
        ]
        # Imports: one runner (reading a disc is the slow part; one drive is read at a time).
        flow = CommitmentFlow(config, self.commitments, self.receiver)
        self.import_runner = JobRunner(
            self.jobs, "import", {IMPORT: ImportHandler(config, flow, PROCESS_VAULT, drives)}
        )
        self.runners.append(self.import_runner)
        policy = RetentionPolicy.from_config(config.retention)
        self.retention: Retention | None = None
        if policy.active:
            self.retention = Retention(
                index,
                config.paths.store_dir,
                policy,
                protected_studies=lambda: studies_in_use(self.jobs),
            )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._retain, name="retention", daemon=True)

    @property
    def services(self) -> list[ScpService]:
        """What the listener must add: Storage Commitment report reception."""
        return [commitment_service(self.receiver)]

    def _settled(self, result: ReportResult) -> None:
        if result.job_id is None:
            return
        if self.jobs.wake(result.job_id):
            for runner in self.runners:
                runner.wake()

    def start(self) -> None:
        """Start the periodic retention (the runners are started with the daemon's)."""
        if self.retention is not None:
            self._thread.start()

    def stop(self) -> None:
        """Stop retention and close the stores (after the runners stopped)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.commitments.close()
        self.jobs.close()

    def _retain(self) -> None:
        assert self.retention is not None
        interval = self.config.retention.check_interval_seconds
        while not self._stop.is_set():
            try:
                self.retention.run_once()
            except Exception:
                log.exception("retention pass failed; trying again later")
            self._stop.wait(interval)
