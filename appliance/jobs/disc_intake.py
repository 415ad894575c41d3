"""A disc found in a drive becomes an import job.

The udev watcher (`drives.udev_watch`) reports a data disc; this turns the event into an
import job of the disc's device: with the auto-import rule that fits the drive (reconciled
and forwarded at once), or without one (the job reads the disc, then waits in
`awaiting_reconciliation` for the clerk). A disc that already has an import job not yet ended
gets no second one: udev reports the same disc again at every daemon start (coldplug).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from appliance.config import KioskConfig
from appliance.config.schema import ImportRuleConfig
from appliance.drives.device_names import drive_for_device
from appliance.drives.disc_events import DiscEvent, DiscEventKind
from appliance.jobs.import_request import IMPORT, ImportRequest
from appliance.jobs.model import Job, JobState
from appliance.jobs.queue import JobStore

log = logging.getLogger(__name__)

OPEN_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.AWAITING_RECONCILIATION)
"""States of an import job that still has its disc."""


def matching_rule(config: KioskConfig, drive: str | None) -> tuple[int, ImportRuleConfig] | None:
    """The first auto-import rule for a disc in `drive` (None: the clerk decides)."""
    for number, rule in enumerate(config.importer.auto_import):
        if rule.drive is None or rule.drive == drive:
            return number, rule
    return None


def request_for(config: KioskConfig, event: DiscEvent) -> ImportRequest:
    """The import job a detected disc gets."""
    configured = {name: d.device for name, d in config.drives.items() if d.device}
    drive = drive_for_device(configured, event.device, event.links)
    detected = {
        "device": event.device,
        "drive": drive or "",
        "media": event.media_type,
        "medium_id": event.medium_id,
    }
    found = matching_rule(config, drive)
    if found is None:
        return ImportRequest(source=event.device, drive=drive, decided_by="udev", detected=detected)
    number, rule = found
    return ImportRequest(
        source=event.device,
        destination=rule.destination,
        drive=drive,
        reconcile=rule.reconcile,
        decided_by=f"rule importer.auto_import.{number}",
        detected=detected,
    )


class DiscIntake:
    """The watcher's callback: one import job per inserted disc."""

    def __init__(
        self, config: KioskConfig, jobs: JobStore, on_submitted: Callable[[Job], None]
    ) -> None:
        self.config = config
        self.jobs = jobs
        self.on_submitted = on_submitted

    def __call__(self, event: DiscEvent) -> None:
        """Handle one disc event (runs in the watcher's thread)."""
        if event.kind is not DiscEventKind.INSERTED:
            log.info("disc removed from %s", event.device)
            return
        for job in self.jobs.list_jobs(states=OPEN_STATES, kind=IMPORT, limit=1000):
            if job.params.get("source") == event.device and (
                job.params.get("detected", {}).get("medium_id", "") == event.medium_id
            ):
                log.info("disc in %s already has import job %d", event.device, job.id)
                return
        request = request_for(self.config, event)
        job = self.jobs.submit(IMPORT, request.to_params(), max_attempts=3)
        log.info(
            "disc detected in %s (%s): import job %d %s",
            event.device,
            event.media_type or "unknown medium",
            job.id,
            "queued by rule" if request.reconcile else "will wait for the clerk",
        )
        self.on_submitted(job)
