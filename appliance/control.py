"""The one facade the TUI and the CLI use: read state, run quick checks, submit work.

It never holds the daemon's resources: it opens the index read-only and reads the published run
state, so a crashed TUI or CLI cannot disturb reception.
"""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from appliance.config import KioskConfig, NodeConfig
from appliance.errors import KioskError
from appliance.jobs import JobStore
from appliance.jobs.burn_request import BURN, BurnRequest, resolve_options
from appliance.jobs.import_request import IMPORT, ImportRequest, PatientDecision
from appliance.jobs.print_request import PrintRequest
from appliance.jobs.runner import final_state
from appliance.jobs.send_request import SEND, SendRequest
from appliance.service.runstate import read_runstate
from appliance.store.index import connect

_STUDIES_SQL = """
SELECT s.study_uid, s.patient_name, s.patient_id, s.study_date, s.study_time,
       s.accession_number, s.study_description, s.state, s.first_received_at,
       s.last_received_at, s.completed_at, s.last_called_ae, s.last_calling_ae,
       (SELECT COUNT(*) FROM series r WHERE r.study_uid = s.study_uid) AS series_count,
       (SELECT COUNT(*) FROM instances i WHERE i.study_uid = s.study_uid) AS instance_count,
       (SELECT COALESCE(SUM(size), 0) FROM instances i WHERE i.study_uid = s.study_uid) AS bytes,
       (SELECT GROUP_CONCAT(DISTINCT r.modality) FROM series r
            WHERE r.study_uid = s.study_uid) AS modalities
FROM studies s ORDER BY s.last_received_at DESC
"""


class UnknownNodeError(KioskError):
    """The named node is not in the registry."""


@dataclass(frozen=True, slots=True)
class EchoOutcome:
    """C-ECHO result for display."""

    node: str
    ae_title: str
    status: int
    seconds: float


class Control:
    """Read-only views and operator actions over one configuration."""

    def __init__(self, config: KioskConfig) -> None:
        self.config = config

    def _connect(self) -> sqlite3.Connection | None:
        path = self.config.paths.index_file
        if not path.exists():
            return None
        return connect(path, readonly=True)

    def studies(self) -> list[dict[str, Any]]:
        """Local studies, newest first, with series/instance counts, size, modalities, state."""
        conn = self._connect()
        if conn is None:
            return []
        with conn:
            return [dict(row) for row in conn.execute(_STUDIES_SQL)]

    def status(self) -> dict[str, Any]:
        """Daemon state (associations, counters) and store usage."""
        daemon = read_runstate(self.config.paths.run_dir)
        store: dict[str, Any] = {"studies": 0, "instances": 0, "bytes": 0}
        conn = self._connect()
        if conn is not None:
            with conn:
                row = conn.execute(
                    "SELECT (SELECT COUNT(*) FROM studies) AS studies, COUNT(*) AS instances, "
                    "COALESCE(SUM(size), 0) AS bytes FROM instances"
                ).fetchone()
                store = dict(row)
        store_dir = self.config.paths.store_dir
        probe = store_dir if store_dir.exists() else self.config.paths.var
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        disk = shutil.disk_usage(probe)
        store.update(
            free_bytes=disk.free,
            total_bytes=disk.total,
            reserve_bytes=self.config.store.free_space_reserve_mb * 1024 * 1024,
        )
        return {"daemon": daemon, "store": store}

    # -- jobs ----------------------------------------------------------------------------------

    def _jobs(self) -> JobStore:
        return JobStore(self.config.paths.index_file)

    def jobs(self, limit: int = 50) -> list[dict[str, Any]]:
        """Recent jobs of every kind, newest first."""
        with closing(self._jobs()) as store:
            return [job.summary() for job in store.list_jobs(limit=limit)]

    def job(self, job_id: int) -> dict[str, Any]:
        """One job (UnknownJobError if there is none)."""
        with closing(self._jobs()) as store:
            return store.get(job_id).summary()

    def cancel_job(self, job_id: int) -> dict[str, Any]:
        """Cancel a queued job, or ask a running one to stop at its next safe point."""
        with closing(self._jobs()) as store:
            return store.cancel(job_id).summary()

    def retry_job(self, job_id: int) -> dict[str, Any]:
        """Queue a failed or cancelled job again."""
        with closing(self._jobs()) as store:
            return store.retry(job_id).summary()

    def wait_job(self, job_id: int, timeout: float) -> dict[str, Any]:
        """Block until the job is final (or the timeout passes); returns it."""
        with closing(self._jobs()) as store:
            return final_state(store, job_id, timeout).summary()

    def deposit_password(self, password: str, *, purpose: str = "encrypt") -> str:
        """Hand a disc password to the running daemon (memory only); returns the job's handle.

        `purpose` "encrypt" (a disc we burn) applies our strength policy; "open" (a disc we
        import) only the DICOM repertoire."""
        from appliance.jobs.secrets import SOCKET_NAME, deposit_passwords

        return deposit_passwords(
            self.config.paths.run_dir / SOCKET_NAME, [password], purpose=purpose
        )

    def decrypt_file(self, source: Path, target: Path, password: str) -> dict[str, Any]:
        """Open one Secure DICOM File with a password (a tool for IT); what it was."""
        from appliance.media.secure import SecureFileReader

        result = SecureFileReader(passwords=[password]).decrypt_file(source, target)
        return {
            "content_type": result.content_type,
            "cipher": str(result.cipher),
            "digest": str(result.digest) if result.digest else None,
            "opened_with": result.opened_with,
            "signers": [str(s) for s in result.signers],
            "warnings": list(result.warnings),
            "size": result.size,
            "sha256": result.sha256,
        }

    def submit_burn(self, request: BurnRequest) -> dict[str, Any]:
        """Queue a disc job (options checked against the config now, not when it runs)."""
        options = resolve_options(self.config, request)
        with closing(self._jobs()) as store:
            job = store.submit(
                BURN,
                request.to_params(),
                resource=options.drive,
                max_attempts=self.config.publishing.max_attempts,
            )
            return job.summary()

    def drives(self) -> list[dict[str, Any]]:
        """Configured drives and the job each one is running."""
        daemon = read_runstate(self.config.paths.run_dir) or {}
        busy = daemon.get("runners", {})
        return [
            {
                "name": name,
                "kind": drive.kind,
                "device": drive.device,
                "directory": str(drive.directory or self.config.paths.var / "discs"),
                "running_job": busy.get(f"drive-{name}"),
            }
            for name, drive in self.config.drives.items()
        ]

    def echo(self, node_name: str) -> EchoOutcome:
        """C-ECHO a registry node."""
        from appliance.dicom.scu import echo

        node = self.config.nodes.get(node_name)
        if node is None:
            known = ", ".join(sorted(self.config.nodes)) or "none configured"
            raise UnknownNodeError(f"unknown node {node_name!r} (known: {known})")
        result = echo(self.config, node)
        return EchoOutcome(node_name, node.ae_title, result.status, result.seconds)

    # -- printing --------------------------------------------------------------------------------

    def submit_print(self, request: PrintRequest) -> dict[str, Any]:
        """Queue a print job (printer, options, UIDs and film count checked now)."""
        from appliance.jobs.print_control import submit_print

        with closing(self._jobs()) as store:
            return submit_print(self.config, store, request)

    def preview_print(self, request: PrintRequest, out_dir: Path) -> dict[str, Any]:
        """Write each film of a print request as a PNG into `out_dir`; nothing is printed."""
        from appliance.jobs.print_control import preview_print

        return preview_print(self.config, request, out_dir)

    def printer_status(self, name: str) -> dict[str, Any]:
        """A printer's own status (asked now, over the network) and its queue."""
        from appliance.jobs.print_control import printer_status

        with closing(self._jobs()) as store:
            return printer_status(self.config, store, name)

    # -- network: query, retrieve, send, locks ---------------------------------------------------

    def _node(self, node_name: str) -> NodeConfig:
        node = self.config.nodes.get(node_name)
        if node is None:
            known = ", ".join(sorted(self.config.nodes)) or "none configured"
            raise UnknownNodeError(f"unknown node {node_name!r} (known: {known})")
        return node

    def find(
        self,
        node_name: str,
        level: str,
        keys: dict[str, str],
        limit: int | None = None,
    ) -> dict[str, Any]:
        """Study Root C-FIND at study or series level on a registry node (runs here, now)."""
        from appliance.dicom.qr_scu import find, match_values

        if level == "STUDY":
            result = find(self.config, self._node(node_name), "STUDY", keys, limit=limit)
        elif level == "SERIES":
            result = find(self.config, self._node(node_name), "SERIES", keys, limit=limit)
        else:
            raise KioskError(f"level must be STUDY or SERIES, not {level!r}")
        return {
            "node": node_name,
            "level": level,
            "status": result.status,
            "truncated": result.truncated,
            "matches": [match_values(m) for m in result.matches],
        }

    def submit_retrieve(
        self, node_name: str, study_uid: str, series_uid: str | None = None
    ) -> dict[str, Any]:
        """Queue a retrieve (C-MOVE to ourselves) of a study or one of its series."""
        from appliance.jobs.retrieve import RETRIEVE, RetrieveRequest

        self._node(node_name)
        request = RetrieveRequest(node_name, study_uid, series_uid)
        with closing(self._jobs()) as store:
            job = store.submit(
                RETRIEVE,
                request.to_params(),
                resource=node_name,
                max_attempts=1 + self.config.retrieve.move_retries,
            )
            return job.summary()

    def submit_send(self, request: SendRequest) -> dict[str, Any]:
        """Queue a send of local studies/series/instances to a node (optionally committed)."""
        self._node(request.node)
        with closing(self._jobs()) as store:
            job = store.submit(
                SEND,
                request.to_params(),
                resource=request.node,
                max_attempts=self.config.send.max_attempts,
            )
            return job.summary()

    # -- disc import -------------------------------------------------------------------------

    def submit_import(self, request: ImportRequest) -> dict[str, Any]:
        """Queue an import of a disc, ISO image or folder (nodes checked now)."""
        destination = request.destination or self.config.importer.default_destination
        if destination is None:
            raise KioskError(
                "an import needs a destination node (--dest, or [importer] default_destination)"
            )
        self._node(destination)
        if request.reconcile == "qr":
            qr_node = request.qr_node or self.config.importer.qr_node
            if qr_node is None:
                raise KioskError(
                    "Q/R reconciliation needs a node (--qr NODE or [importer] qr_node)"
                )
            self._node(qr_node)
        if request.reconcile == "mwl" and self.config.importer.mwl_node is None:
            raise KioskError("worklist reconciliation needs [importer] mwl_node")
        self._check_identity(request.typed)
        for decision in request.decisions:
            self._check_identity(decision.values)
        with closing(self._jobs()) as store:
            return store.submit(IMPORT, request.to_params(), max_attempts=3).summary()

    def scan_source(self, source: Path, *, password: str | None = None) -> dict[str, Any]:
        """Read a disc, ISO image or folder into a scratch folder and summarise it; nothing
        is imported and the scratch folder is removed."""
        import tempfile

        from appliance.importer.limits import ReadLimits
        from appliance.importer.reading import scan_source
        from appliance.importer.space import check_room
        from appliance.media.secure import SecureFileReader

        credentials = SecureFileReader(passwords=[password]) if password is not None else None
        scratch_root = self.config.paths.import_dir
        scratch_root.mkdir(parents=True, exist_ok=True)
        check_room(
            source,
            scratch_root,
            self.config.store.free_space_reserve_mb * 2**20,
            encrypted=credentials is not None,
        )
        with tempfile.TemporaryDirectory(prefix="scan-", dir=scratch_root) as scratch:
            catalog = scan_source(
                source, Path(scratch), ReadLimits.from_config(self.config.importer), credentials
            )
        summary = catalog.summary()
        summary["skipped"] = [{"path": s.path, "reason": s.reason} for s in catalog.skipped]
        return summary

    def _check_identity(self, values: dict[str, str]) -> None:
        """Refuse identity values the rewrite would refuse (a typing mistake such as a birth
        date 1990-09-09) now: found by the job, it would fail the whole import."""
        from appliance.importer.rewrite import ImportIdentity
        from appliance.media.reidentify import NewIdentity

        if values:
            given: dict[str, Any] = dict(values)  # IDENTITY_KEYS, NewIdentity's field names
            ImportIdentity.from_config(NewIdentity(**given), self.config.importer)

    def reconcile_import(
        self, job_id: int, decisions: list[PatientDecision], destination: str | None = None
    ) -> dict[str, Any]:
        """The clerk's decisions for an import waiting in `awaiting_reconciliation` (and the
        node to send to, when the job has none yet); the job is queued again and goes on."""
        if destination is not None:
            self._node(destination)
        with closing(self._jobs()) as store:
            job = store.get(job_id)
            if job.kind != IMPORT:
                raise KioskError(f"job {job_id} is a {job.kind} job, not an import")
            known = {p["key"] for p in job.result.get("summary", {}).get("patients", [])}
            for decision in decisions:
                if decision.patient not in known:
                    raise KioskError(
                        f"job {job_id} has no patient {decision.patient!r} "
                        f"(known: {', '.join(sorted(known)) or 'none'})"
                    )
                self._check_identity(decision.values)
            request = ImportRequest.from_params(job.params).with_decisions(decisions)
            if destination is not None:
                request = replace(request, destination=destination)
            return store.provide_input(job_id, request.to_params()).summary()

    def lock_study(self, study_uid: str, locked: bool = True) -> dict[str, Any]:
        """Lock a local study against retention (or unlock it)."""
        from appliance.store.locks import UnknownStudyError, set_locked

        path = self.config.paths.index_file
        if not path.exists():
            raise UnknownStudyError("that study is not in the local store")
        conn = connect(path)
        try:
            set_locked(conn, study_uid, locked)
        finally:
            conn.close()
        return {"study_uid": study_uid, "locked": locked}
