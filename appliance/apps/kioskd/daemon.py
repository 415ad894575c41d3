"""kioskd's object graph and life cycle: start, serve, drain on SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType

from appliance import __version__
from appliance.apps.kioskd.network import NetworkWork
from appliance.config import KioskConfig
from appliance.dicom.qr_scp import qr_service
from appliance.dicom.server import DicomServer
from appliance.drives.udev_replay import FileEventSource
from appliance.drives.udev_watch import DiscWatcher
from appliance.errors import KioskError
from appliance.jobs import JobStore
from appliance.jobs.autoburn import AutoBurner
from appliance.jobs.burn import BurnHandler, burn_recovery
from appliance.jobs.burn_request import BURN
from appliance.jobs.burn_secure import load_security
from appliance.jobs.disc_intake import DiscIntake
from appliance.jobs.drives_wiring import build_drives
from appliance.jobs.import_job import prune_workspaces
from appliance.jobs.print_job import build_print_runners, print_recovery
from appliance.jobs.print_request import PRINT
from appliance.jobs.runner import JobRunner
from appliance.jobs.secrets import PROCESS_VAULT, SOCKET_NAME, SecretServer
from appliance.media.secure import PasswordPolicy
from appliance.media.secure.password import password_bytes
from appliance.service.runstate import clear_runstate, write_runstate
from appliance.service.sdnotify import Notifier, watchdog_interval
from appliance.store import InstanceStore, StoreIndex
from appliance.store.quiet import StudyQuietMonitor

log = logging.getLogger("kioskd")

RUNSTATE_REFRESH_SECONDS = 1.0


class Daemon:
    """Everything kioskd runs, wired from one configuration."""

    def __init__(self, config: KioskConfig) -> None:
        self.config = config
        # Key files of [security] (recipients, signing key, decryption keys) are checked before
        # anything is created: a bad one stops kioskd with one line naming its key, drives or not.
        load_security(config)
        self.notifier = Notifier()
        self._stop = threading.Event()
        self._started_at = time.time()
        paths = config.paths
        paths.var.mkdir(parents=True, exist_ok=True)
        paths.store_dir.mkdir(parents=True, exist_ok=True)
        self.index = StoreIndex(paths.index_file)
        self.store = InstanceStore(
            paths.store_dir, self.index, config.store.free_space_reserve_mb * 1024 * 1024
        )
        drives = build_drives(config)
        # Retrieve/send runners per node, the import runner, commitment reports, retention.
        self.network = NetworkWork(config, self.index, drives)
        # Q/R SCP: C-FIND and C-MOVE over the index, sub-operations through the Storage SCU.
        services = [*self.network.services, qr_service(config)]
        self.server = DicomServer(config, self.store, services=services)
        self.jobs = JobStore(paths.index_file)
        self.runners = [
            JobRunner(
                self.jobs, f"drive-{name}", {BURN: BurnHandler(config, name, drive)}, resource=name
            )
            for name, drive in drives.items()
        ]
        # One queue per printer; a print never waits for a burn or a reception.
        self.runners += build_print_runners(config)
        security = config.security
        # Disc passwords reach the burn runners through this socket, never the job store.
        self.secrets = SecretServer(
            config.paths.run_dir / SOCKET_NAME,
            PROCESS_VAULT,
            PasswordPolicy(security.password_min_length, security.password_min_classes).check,
            open_check=password_bytes,
        )
        self.runners += self.network.runners
        # Discs put into a drive become import jobs (udev: coldplug, then follow).
        self.watcher: DiscWatcher | None = None
        if config.importer.udev:
            intake = DiscIntake(
                config, self.network.jobs, lambda _job: self.network.import_runner.wake()
            )
            replay = config.importer.udev_replay
            self.watcher = DiscWatcher(
                intake, FileEventSource(replay) if replay is not None else None
            )
        self.quiet = StudyQuietMonitor(
            self.index,
            config.store.study_quiet_seconds,
            config.store.quiet_seconds_by_called_ae,
            on_complete=AutoBurner(config, self.jobs),
        )

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        """Signal handler: begin an orderly shutdown."""
        self._stop.set()

    def run(self) -> int:
        """Recover the store, serve until SIGTERM/SIGINT, drain, exit code 0."""
        report = self.store.recover()
        if report.changed:
            log.warning(
                "store repaired at start: %d temp file(s) removed, %d file(s) adopted into the "
                "index, %d record(s) without file dropped, %d unreadable file(s) quarantined",
                report.temp_files_removed,
                report.files_adopted,
                report.records_dropped,
                report.files_quarantined,
            )
        policies = {BURN: burn_recovery(self.config), PRINT: print_recovery(self.config)}
        for job_id, outcome in self.jobs.recover(policies):
            log.warning("job %d was running when kioskd stopped: %s", job_id, outcome)
        pruned = prune_workspaces(self.config, self.jobs)
        if pruned:
            log.info("removed %d finished import staging folder(s)", pruned)
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        self.server.start()
        self.quiet.start()
        self.secrets.start()
        for runner in self.runners:
            runner.start()
        self.network.start()
        self._start_watcher()
        self.notifier.ready(f"listening on port {self.server.port}")
        log.info("kioskd %s ready (pid %d)", __version__, os.getpid())
        watchdog = watchdog_interval()
        tick = min(RUNSTATE_REFRESH_SECONDS, watchdog or RUNSTATE_REFRESH_SECONDS)
        try:
            while not self._stop.is_set():
                self._publish_state("running")
                self.notifier.watchdog()
                self._stop.wait(tick)
        finally:
            self._shutdown()
        return 0

    def _start_watcher(self) -> None:
        if self.watcher is None:
            return
        try:
            self.watcher.start()
        except (OSError, ImportError, KioskError) as exc:
            # A machine without udev (a container, a test VM) still serves everything else.
            log.warning("not following udev for discs: %s", exc)
            self.watcher = None

    def _shutdown(self) -> None:
        self.notifier.stopping()
        if self.watcher is not None:
            self.watcher.stop()
        log.info(
            "stopping: no new associations; draining %d open association(s)",
            self.server.active_associations(),
        )
        self.server.stop_accepting()
        self._publish_state("stopping")
        aborted = self.server.drain(self.config.dicom.drain_seconds)
        if aborted:
            log.warning(
                "aborted %d association(s) still open after %.0f s",
                aborted,
                self.config.dicom.drain_seconds,
            )
        self.quiet.stop()
        for runner in self.runners:
            # A burn in progress stays `running` in the job store and is recovered at start.
            runner.stop(timeout=5)
        self.network.stop()
        self.secrets.stop()
        clear_runstate(self.config.paths.run_dir)
        self.store.close()
        self.index.close()
        self.jobs.close()
        log.info("stopped")

    def _publish_state(self, state: str) -> None:
        try:
            write_runstate(
                self.config.paths.run_dir,
                {
                    "pid": os.getpid(),
                    "version": __version__,
                    "state": state,
                    "started_at": self._started_at,
                    "updated_at": time.time(),
                    "ae_titles": self.config.local_ae_titles,
                    "port": self.server.port,
                    "active_associations": self.server.active_associations(),
                    "max_associations": self.config.dicom.max_associations,
                    "reception": self.server.handlers.counters.snapshot(),
                    "runners": {
                        r.name: (r.current.id if r.current is not None else None)
                        for r in self.runners
                    },
                },
            )
        except OSError as exc:
            log.warning("cannot publish run state: %s", exc.strerror)
