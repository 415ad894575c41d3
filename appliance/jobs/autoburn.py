"""Auto-burn: when a study completes, start the burn jobs whose rules match it."""

from __future__ import annotations

import logging
import sqlite3

from appliance.config import KioskConfig
from appliance.config.schema import AutoBurnRule
from appliance.jobs.burn_request import BURN, BurnRequest, resolve_options
from appliance.jobs.queue import JobStore
from appliance.store.index import connect

log = logging.getLogger(__name__)


def _study_facts(conn: sqlite3.Connection, study_uid: str) -> tuple[str, str, set[str]] | None:
    row = conn.execute(
        "SELECT last_called_ae, last_calling_ae FROM studies WHERE study_uid = ?", (study_uid,)
    ).fetchone()
    if row is None:
        return None
    modalities = {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT modality FROM series WHERE study_uid = ? AND modality IS NOT NULL",
            (study_uid,),
        )
    }
    return row[0] or "", row[1] or "", modalities


def rule_matches(rule: AutoBurnRule, called: str, calling: str, modalities: set[str]) -> bool:
    """Every condition the rule sets holds for the study."""
    return (
        (rule.called_ae is None or rule.called_ae == called)
        and (rule.calling_ae is None or rule.calling_ae == calling)
        and (rule.modality is None or rule.modality in modalities)
    )


class AutoBurner:
    """Called by the study-complete monitor; submits one job per matching rule."""

    def __init__(self, config: KioskConfig, jobs: JobStore) -> None:
        self.config = config
        self.jobs = jobs

    def __call__(self, study_uid: str) -> list[int]:
        """Submit the jobs for a completed study; returns their ids."""
        if not self.config.auto_burn:
            return []
        conn = connect(self.config.paths.index_file, readonly=True)
        try:
            facts = _study_facts(conn, study_uid)
        finally:
            conn.close()
        if facts is None:
            return []
        called, calling, modalities = facts
        submitted = []
        for rule in self.config.auto_burn:
            if not rule_matches(rule, called, calling, modalities):
                continue
            request = BurnRequest(study_uids=[study_uid], profile=rule.profile)
            options = resolve_options(self.config, request)
            job = self.jobs.submit(
                BURN,
                request.to_params(),
                resource=options.drive,
                max_attempts=self.config.publishing.max_attempts,
            )
            submitted.append(job.id)
            log.info("auto-burn: job %d for study %s (profile %s)", job.id, study_uid, rule.profile)
        return submitted
