"""kioskctl commands for discs patients bring in: import, reconcile, disc scan.

`register(subparsers)` adds them to kioskctl's parser (called from `main.build_parser`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from appliance.apps.kioskctl.job_output import (
    EXIT_OK,
    add_wait_options,
    finish_job,
    print_job,
)
from appliance.control import Control
from appliance.errors import KioskError
from appliance.importer.reconcile import IDENTITY_KEYS
from appliance.jobs.import_request import ImportRequest, PatientDecision, ReconcileMethod

_BY_KEYWORD = {
    "PatientName": "patient_name",
    "PatientID": "patient_id",
    "IssuerOfPatientID": "issuer_of_patient_id",
    "PatientBirthDate": "patient_birth_date",
    "PatientSex": "patient_sex",
    "AccessionNumber": "accession_number",
    "RequestedProcedureID": "requested_procedure_id",
    "RequestedProcedureDescription": "requested_procedure_description",
}
"""DICOM keyword (PatientName) -> our key (patient_name); both spellings are accepted."""


def identity_values(pairs: list[str]) -> dict[str, str]:
    """`--set key=value` arguments as identity values (keys as DICOM keywords or snake_case)."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        name = _BY_KEYWORD.get(key, key.lower().replace("-", "_"))
        if not sep or name not in IDENTITY_KEYS:
            raise KioskError(
                f"--set: expected KEY=VALUE with KEY one of {', '.join(_BY_KEYWORD)}, got {pair!r}"
            )
        values[name] = value
    return values


def _password(control: Control, args: argparse.Namespace) -> str | None:
    if not args.password_stdin:
        return None
    return control.deposit_password(sys.stdin.readline().rstrip("\r\n"), purpose="open")


def _describe_patient(patient: dict[str, Any]) -> str:
    """One line for a patient: identity values (ours) or a disc summary entry."""

    def value(key: str, short: str) -> str:
        return str(patient.get(key) or patient.get(short) or "-")

    return (
        f"{value('patient_name', 'name')}  ID {value('patient_id', 'id')}  "
        f"born {value('patient_birth_date', 'birth_date')}  sex {value('patient_sex', 'sex')}"
    )


def print_import(job: dict[str, Any], as_json: bool) -> None:
    """An import job: the usual job lines, then what the disc holds and what is asked."""
    print_job(job, as_json)
    if as_json:
        return
    result = job.get("result") or {}
    summary = result.get("summary") or {}
    totals = summary.get("totals") or {}
    if totals:
        print(
            f"  disc: {totals.get('instances', 0)} instance(s), {totals.get('studies', 0)} "
            f"study(ies), {totals.get('skipped', 0)} skipped, "
            f"{totals.get('non_dicom', 0)} non-DICOM file(s)"
        )
    waiting = (result.get("reconciliation") or {}).get("patients") or {}
    for key, entry in waiting.items():
        print(f"  patient {key}: {_describe_patient(entry.get('disc') or {})}")
        if entry.get("decision"):
            print(f"    decided: {entry['decision']}")
            continue
        for number, candidate in enumerate(entry.get("candidates") or []):
            print(
                f"    candidate {number} ({candidate.get('source')}): "
                f"{_describe_patient(candidate.get('values') or {})}"
                f"  {candidate.get('label') or ''}"
            )
        if entry.get("question"):
            print(f"    {entry['question']}")


def cmd_import(control: Control, args: argparse.Namespace) -> int:
    """Queue the import of a disc device, ISO image or folder."""
    reconcile: ReconcileMethod | None = None
    typed: dict[str, str] = {}
    if args.mwl:
        reconcile = "mwl"
    elif args.qr is not None:
        reconcile = "qr"
    elif args.set:
        reconcile, typed = "typed", identity_values(args.set)
    elif args.keep:
        reconcile = "keep"
    request = ImportRequest(
        source=str(Path(args.source).absolute()),
        destination=args.dest,
        reconcile=reconcile,
        qr_node=args.qr or None,
        typed=typed,
        new_uids=args.new_uids,
        keep_local=True if args.keep_local else None,
        secret_ref=_password(control, args),
        decided_by="kioskctl",
    )
    return finish_job(control, control.submit_import(request), args, print_import)


def cmd_reconcile(control: Control, args: argparse.Namespace) -> int:
    """Answer an import waiting for the clerk: whose are one patient's instances."""
    if args.candidate is not None:
        job = control.job(args.job)
        patients = (job["result"].get("reconciliation") or {}).get("patients") or {}
        candidates = (patients.get(args.patient) or {}).get("candidates") or []
        if not 0 <= args.candidate < len(candidates):
            raise KioskError(f"patient {args.patient!r} has no candidate {args.candidate}")
        chosen = candidates[args.candidate]
        decision = PatientDecision(
            args.patient, "apply", dict(chosen["values"]), str(chosen["source"]), args.by
        )
    elif args.set:
        decision = PatientDecision(
            args.patient, "apply", identity_values(args.set), "typed", args.by
        )
    elif args.skip:
        decision = PatientDecision(args.patient, "skip", source="disc", decided_by=args.by)
    else:
        decision = PatientDecision(args.patient, "keep", source="disc", decided_by=args.by)
    return finish_job(
        control, control.reconcile_import(args.job, [decision], args.dest), args, print_import
    )


def cmd_disc_scan(control: Control, args: argparse.Namespace) -> int:
    """Read a disc, ISO image or folder and summarise it (nothing is imported)."""
    password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else None
    summary = control.scan_source(Path(args.source), password=password)
    if args.json:
        print(json.dumps(summary))
        return EXIT_OK
    totals = summary["totals"]
    print(
        f"{args.source}: {totals['instances']} instance(s) of {len(summary['patients'])} "
        f"patient(s), {totals['studies']} study(ies), {totals['bytes']} bytes; "
        f"{totals['skipped']} skipped, {totals['non_dicom']} non-DICOM, "
        f"{totals['needs_password']} encrypted without password"
    )
    studies = {study["uid"]: study for study in summary["studies"]}
    for patient in summary["patients"]:
        print(f"  patient {patient['key']}: {_describe_patient(patient)}")
        for uid in patient.get("studies", []):
            study = studies.get(uid, {})
            print(
                f"    study {study.get('date') or '-'} "
                f"{'/'.join(study.get('modalities') or []) or '-'} "
                f"{study.get('description') or ''} ({study.get('instances', 0)} instance(s))"
            )
    for item in summary.get("skipped", [])[:50]:
        print(f"  skipped {item['path']}: {item['reason']}")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add import, reconcile and disc scan to kioskctl's subparsers."""
    imp = sub.add_parser("import", help="queue the import of a disc, ISO image or folder")
    imp.add_argument("source", help="block device (/dev/sr0), ISO image or folder")
    imp.add_argument("--dest", help="node to forward to (default [importer] default_destination)")
    how = imp.add_mutually_exclusive_group()
    how.add_argument("--mwl", action="store_true", help="identity from a unique worklist match")
    how.add_argument(
        "--qr",
        nargs="?",
        const="",
        metavar="NODE",
        help="identity from a unique patient match on a Q/R node (default [importer] qr_node)",
    )
    how.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="identity typed in (PatientName, PatientID, IssuerOfPatientID, PatientBirthDate, "
        "PatientSex, AccessionNumber, RequestedProcedureID, RequestedProcedureDescription)",
    )
    how.add_argument("--keep", action="store_true", help="import with the disc's identity")
    imp.add_argument("--new-uids", action="store_true", help="give the studies new UIDs")
    imp.add_argument("--keep-local", action="store_true", help="also keep them in our store")
    imp.add_argument(
        "--password-stdin", action="store_true", help="password of an encrypted disc on stdin"
    )
    add_wait_options(imp, until="the job ends or waits")
    imp.set_defaults(func=cmd_import)

    rec = sub.add_parser("reconcile", help="say whose the instances of a disc patient are")
    rec.add_argument("job", type=int, help="the import job waiting for reconciliation")
    rec.add_argument("--patient", required=True, help="patient key from the job's summary")
    what = rec.add_mutually_exclusive_group(required=True)
    what.add_argument("--candidate", type=int, help="take this worklist/Q/R candidate")
    what.add_argument("--set", action="append", metavar="KEY=VALUE", help="typed values")
    what.add_argument("--keep", action="store_true", help="keep the disc's identity")
    what.add_argument("--skip", action="store_true", help="leave this patient out")
    rec.add_argument("--by", default="clerk", help="who decided (recorded in the job)")
    rec.add_argument("--dest", help="node to forward to (when the job has none yet)")
    add_wait_options(rec, until="the job ends or waits")
    rec.set_defaults(func=cmd_reconcile)

    disc = sub.add_parser("disc", help="look at a disc without importing it")
    disc_sub = disc.add_subparsers(dest="disc_command", required=True)
    scan = disc_sub.add_parser("scan", help="summarise a disc, ISO image or folder")
    scan.add_argument("source")
    scan.add_argument(
        "--password-stdin", action="store_true", help="password of an encrypted disc on stdin"
    )
    scan.set_defaults(func=cmd_disc_scan)
