"""Reconciling an import: per patient of the disc, whose the instances are here.

The clerk's decision wins; else the job's rule: a unique Modality Worklist or Q/R candidate
(`importer.reconcile`), values typed for a disc of one patient, or the disc's values kept. A
patient left without a decision makes the job wait in `awaiting_reconciliation`, with the
candidates found and the question in its result, until the clerk answers.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from appliance.config import KioskConfig
from appliance.dicom.scu_session import AssociationFailedError
from appliance.errors import DicomNetworkError, KioskError
from appliance.importer.catalog import SECURE_FAILURE
from appliance.importer.model import Catalog, patient_key
from appliance.importer.reconcile import (
    Candidate,
    DiscPatient,
    qr_candidates,
    unique_choice,
    worklist_candidates,
)
from appliance.jobs.import_request import ImportRequest, PatientDecision
from appliance.jobs.model import JobAwaitsInput, JobError
from appliance.jobs.nodes import resolve_node
from appliance.jobs.runner import JobContext

WAITING = "awaiting reconciliation"
"""Progress phase of a job that waits for the clerk."""


def disc_patients(catalog: Catalog) -> dict[str, DiscPatient]:
    """The disc's patients by key, as reconciliation sees them."""
    found: dict[str, DiscPatient] = {}
    accessions: dict[str, dict[str, None]] = {}
    for inst in catalog.instances:
        key = patient_key(inst)
        if key not in found:
            found[key] = DiscPatient(
                key=key,
                patient_name=inst.patient_name,
                patient_id=inst.patient_id,
                issuer_of_patient_id=inst.issuer_of_patient_id,
                patient_birth_date=inst.patient_birth_date,
                patient_sex=inst.patient_sex,
            )
            accessions[key] = {}
        if inst.accession_number:
            accessions[key][inst.accession_number] = None
    return {
        key: DiscPatient(**{**_fields(p), "accession_numbers": tuple(accessions[key])})
        for key, p in found.items()
    }


def _fields(patient: DiscPatient) -> dict[str, Any]:
    return {f.name: getattr(patient, f.name) for f in fields(patient)}


class Reconciler:
    """Decides, or finds the question to ask, for every patient of a disc."""

    def __init__(self, config: KioskConfig) -> None:
        self.config = config

    def decide(
        self,
        ctx: JobContext,
        request: ImportRequest,
        catalog: Catalog,
        result: dict[str, Any],
    ) -> dict[str, PatientDecision]:
        """A decision per patient key; raises JobAwaitsInput (with the questions and
        candidates in `result`) when a patient has none, JobError when there is nothing to
        import."""
        if catalog.needs_password and not catalog.instances:
            raise JobError(
                f"the disc is encrypted ({len(catalog.needs_password)} Secure DICOM File(s)): "
                "import it again with its password (--password-stdin)"
            )
        unopened = [s for s in catalog.skipped if s.reason.startswith(SECURE_FAILURE)]
        if unopened and not catalog.instances:
            raise JobError(
                f"none of the {len(unopened)} Secure DICOM File(s) of the disc could be opened "
                f"with the password given (first: {unopened[0].reason}); import it again with "
                "the right password (--password-stdin)"
            )
        if not catalog.instances:
            raise JobError("no DICOM instances found on the disc")
        ctx.progress("reconciling")
        patients = disc_patients(catalog)
        record: dict[str, Any] = result.setdefault("reconciliation", {}).setdefault("patients", {})
        chosen = {d.patient: d for d in request.decisions}
        decisions: dict[str, PatientDecision] = {}
        open_questions = 0
        for key, patient in patients.items():
            entry = record.setdefault(key, {"disc": patient.values()})
            decision = chosen.get(key) or self._by_rule(request, patient, patients, entry)
            if decision is None:
                open_questions += 1
                continue
            entry["decision"] = {
                "action": decision.action,
                "source": decision.source,
                "decided_by": decision.decided_by,
                "values": decision.values,
            }
            entry.pop("question", None)
            decisions[key] = decision
        skipped = {key for key, d in decisions.items() if d.action == "skip"}
        result["reconciliation"]["skipped_patients"] = len(skipped)
        result["reconciliation"]["skipped_instances"] = sum(
            1 for inst in catalog.instances if patient_key(inst) in skipped
        )
        ctx.save_result(result)
        if open_questions:
            raise JobAwaitsInput(f"{WAITING}: {open_questions} patient(s) need a decision")
        return decisions

    def _by_rule(
        self,
        request: ImportRequest,
        patient: DiscPatient,
        patients: dict[str, DiscPatient],
        entry: dict[str, Any],
    ) -> PatientDecision | None:
        """The rule's decision for one patient, or None (the entry then says why)."""
        method = request.reconcile
        by = request.decided_by
        if method is None:
            entry["question"] = "no rule: choose a candidate, type values, keep or skip"
            return None
        if method == "keep":
            return PatientDecision(patient.key, "keep", source="disc", decided_by=by)
        if method == "typed":
            if len(patients) != 1:
                entry["question"] = (
                    f"the disc holds {len(patients)} patients: typed values need a decision "
                    "per patient"
                )
                return None
            return PatientDecision(patient.key, "apply", dict(request.typed), "typed", by)
        candidates = self._candidates(request, patient, entry)
        if candidates is None:
            return None
        values = unique_choice(candidates)
        if values is None:
            entry["question"] = (
                f"{len(candidates)} candidate(s) from {method.upper()}: choose one or type values"
                if candidates
                else f"no match in {method.upper()}: type values, keep or skip"
            )
            return None
        return PatientDecision(patient.key, "apply", values, method, by)

    def _candidates(
        self, request: ImportRequest, patient: DiscPatient, entry: dict[str, Any]
    ) -> list[Candidate] | None:
        importer = self.config.importer
        try:
            if request.reconcile == "mwl":
                if importer.mwl_node is None:
                    raise JobError("worklist reconciliation needs [importer] mwl_node")
                node = resolve_node(self.config, importer.mwl_node)
                candidates = worklist_candidates(self.config, node, patient)
            else:
                node_name = request.qr_node or importer.qr_node
                if node_name is None:
                    raise JobError("Q/R reconciliation needs a node ([importer] qr_node)")
                node = resolve_node(self.config, node_name)
                candidates = qr_candidates(self.config, node, patient)
        except AssociationFailedError as exc:
            raise JobError(str(exc), retryable=exc.transient) from None
        except DicomNetworkError as exc:
            raise JobError(str(exc), retryable=True) from None
        except KioskError as exc:
            if isinstance(exc, JobError):
                raise
            entry["question"] = f"{request.reconcile} query failed: {exc}"
            return None
        entry["candidates"] = [c.to_dict() for c in candidates]
        return candidates
