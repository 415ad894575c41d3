"""`kioskctl`: the command line for IT and scripts.

Human output by default, `--json` for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.apps.kioskctl.job_output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_wait_options,
    exit_for,
    finish_job,
    print_job,
)
from appliance.config import load_config
from appliance.control import Control
from appliance.errors import ConfigError, KioskError
from appliance.jobs.burn_request import BurnRequest


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) if epoch else "-"


def cmd_echo(control: Control, args: argparse.Namespace) -> int:
    """C-ECHO a node of the registry."""
    outcome = control.echo(args.node)
    ok = outcome.status == 0
    if args.json:
        print(
            json.dumps(
                {
                    "node": outcome.node,
                    "ae_title": outcome.ae_title,
                    "status": outcome.status,
                    "ok": ok,
                    "seconds": outcome.seconds,
                }
            )
        )
    else:
        verdict = "OK" if ok else f"FAILED (status 0x{outcome.status:04X})"
        print(
            f"echo {outcome.node} ({outcome.ae_title}): {verdict} in "
            f"{outcome.seconds * 1000:.0f} ms"
        )
    return EXIT_OK if ok else EXIT_FAILED


def cmd_studies(control: Control, args: argparse.Namespace) -> int:
    """List local studies."""
    studies = control.studies()
    if args.json:
        print(json.dumps(studies))
        return EXIT_OK
    if not studies:
        print("no studies")
        return EXIT_OK
    print(
        f"{'STATE':<10} {'DATE':<8} {'MOD':<8} {'SER':>4} {'INST':>6} {'SIZE':>9}  "
        f"{'PATIENT':<24} STUDY UID"
    )
    for s in studies:
        print(
            f"{s['state']:<10} {s['study_date'] or '-':<8} {s['modalities'] or '-':<8} "
            f"{s['series_count']:>4} {s['instance_count']:>6} {_size(s['bytes']):>9}  "
            f"{(s['patient_name'] or '-')[:24]:<24} {s['study_uid']}"
        )
    return EXIT_OK


def cmd_status(control: Control, args: argparse.Namespace) -> int:
    """Daemon and store status."""
    status = control.status()
    if args.json:
        print(json.dumps(status))
        return EXIT_OK
    daemon: dict[str, Any] | None = status["daemon"]
    store = status["store"]
    if daemon is None:
        print("kioskd: not running")
    else:
        rec = daemon["reception"]
        print(
            f"kioskd: {daemon['state']} (pid {daemon['pid']}, version {daemon['version']}, "
            f"since {_when(daemon['started_at'])})"
        )
        print(f"  listening: port {daemon['port']} as {', '.join(daemon['ae_titles'])}")
        print(
            f"  associations: {daemon['active_associations']} open of "
            f"{daemon['max_associations']}, {rec['associations_total']} accepted, "
            f"{rec['rejected_associations']} rejected since start"
        )
        print(
            f"  received: {rec['stored']} instances ({_size(rec['bytes'])}), "
            f"{rec['failed']} refused"
        )
    print(
        f"store: {store['studies']} studies, {store['instances']} instances, "
        f"{_size(store['bytes'])}; {_size(store['free_bytes'])} free of "
        f"{_size(store['total_bytes'])} (reserve {_size(store['reserve_bytes'])})"
    )
    return EXIT_OK


def cmd_jobs(control: Control, args: argparse.Namespace) -> int:
    """List recent jobs."""
    jobs = control.jobs(limit=args.limit)
    if args.json:
        print(json.dumps(jobs))
        return EXIT_OK
    if not jobs:
        print("no jobs")
    for job in jobs:
        pct = f"{job['progress']['fraction'] * 100:3.0f}%"
        print(
            f"{job['id']:>6} {job['kind']:<9} {job['state']:<10} {pct} "
            f"{_when(job['created_at'])}  {job['error'] or ''}"
        )
    return EXIT_OK


def cmd_job(control: Control, args: argparse.Namespace) -> int:
    """Show one job (optionally wait for its end)."""
    job = control.wait_job(args.id, args.timeout) if args.wait else control.job(args.id)
    print_job(job, args.json)
    return exit_for(job) if args.wait else EXIT_OK


def cmd_cancel(control: Control, args: argparse.Namespace) -> int:
    """Cancel a job."""
    print_job(control.cancel_job(args.id), args.json)
    return EXIT_OK


def cmd_retry(control: Control, args: argparse.Namespace) -> int:
    """Queue a failed or cancelled job again."""
    return finish_job(control, control.retry_job(args.id), args)


def _key_values(pairs: list[str], what: str) -> dict[str, str]:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise KioskError(f"{what}: expected key=value, got {pair!r}")
        values[key.strip().lower().replace("-", "_")] = value
    return values


def cmd_burn(control: Control, args: argparse.Namespace) -> int:
    """Queue a disc job for studies (or series)."""
    deidentify = None
    if args.deidentify:
        deidentify = {"retain_dates": args.retain_dates, "retain_uids": args.retain_uids}
    request = BurnRequest(
        study_uids=list(args.study_uids),
        series_uids=list(args.series or []),
        profile=args.profile,
        copies=args.copies,
        web=args.web,
        verify=args.verify,
        drive=args.drive,
        deidentify=deidentify,
        reidentify=_key_values(args.reidentify, "--reidentify") if args.reidentify else None,
        encrypt=True if args.encrypt else None,
        recipients=list(args.recipient or []),
        secret_ref=control.deposit_password(sys.stdin.readline().rstrip("\r\n"))
        if args.password_stdin
        else None,
    )
    return finish_job(control, control.submit_burn(request), args)


def cmd_decrypt(control: Control, args: argparse.Namespace) -> int:
    """Open one Secure DICOM File (password on standard input)."""
    if not args.password_stdin:
        raise KioskError("decrypt needs --password-stdin (passwords never go on the command line)")
    password = sys.stdin.readline().rstrip("\r\n")
    info = control.decrypt_file(args.file, args.output, password)
    if args.json:
        print(json.dumps(info))
    else:
        print(
            f"{args.output}: {info['size']} bytes, {info['cipher']}, opened with "
            f"{info['opened_with']}, content {info['content_type']}"
        )
        for warning in info["warnings"]:
            print(f"  warning: {warning}")
    return EXIT_OK


def cmd_drives(control: Control, args: argparse.Namespace) -> int:
    """List configured drives."""
    drives = control.drives()
    if args.json:
        print(json.dumps(drives))
        return EXIT_OK
    for d in drives:
        where = d["device"] or d["directory"]
        job = f"running job {d['running_job']}" if d["running_job"] else "idle"
        print(f"{d['name']:<12} {d['kind']:<9} {where}  {job}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The kioskctl command line."""
    parser = argparse.ArgumentParser(prog="kioskctl", description="Disc kiosk control.")
    parser.add_argument("--config", type=Path, help="extra TOML file, applied after /etc/kiosk")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--version", action="version", version=f"kioskctl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    echo = sub.add_parser("echo", help="C-ECHO a node of the registry")
    echo.add_argument("node", help="node name from [nodes.NAME]")
    echo.set_defaults(func=cmd_echo)
    sub.add_parser("studies", help="list local studies").set_defaults(func=cmd_studies)
    sub.add_parser("status", help="daemon and store status").set_defaults(func=cmd_status)
    burn = sub.add_parser("burn", help="queue a disc job for one or more studies")
    burn.add_argument("study_uids", nargs="*", metavar="STUDY_UID")
    burn.add_argument(
        "--series",
        action="append",
        metavar="SERIES_UID",
        help="burn only this series (repeatable); related SR/KOS/PR follow",
    )
    burn.add_argument("--profile", help="burn profile from [profiles] (default from config)")
    burn.add_argument("--copies", type=int)
    burn.add_argument(
        "--web",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add IHE PDI web pages (DICOM PLUS WEB)",
    )
    burn.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read back and verify each disc (default on)",
    )
    burn.add_argument("--drive", help="drive name from [drives]")
    burn.add_argument(
        "--deidentify", action="store_true", help="PS3.15 Basic Profile de-identification"
    )
    burn.add_argument("--retain-dates", action="store_true", help="with --deidentify")
    burn.add_argument("--retain-uids", action="store_true", help="with --deidentify")
    burn.add_argument(
        "--reidentify",
        action="append",
        metavar="KEY=VALUE",
        help="replace patient_name, patient_id, patient_birth_date, patient_sex, "
        "issuer_of_patient_id, accession_number (originals kept in the objects)",
    )
    burn.add_argument(
        "--encrypt",
        action="store_true",
        help="Secure DICOM disc: every DICOM file encrypted (PS3.15 Annex D)",
    )
    burn.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the disc password from the first line of standard input",
    )
    burn.add_argument(
        "--recipient",
        action="append",
        metavar="CERT_NAME",
        help="certificate from [security.recipients] that can open the disc",
    )
    add_wait_options(burn)
    burn.set_defaults(func=cmd_burn)
    sub.add_parser("drives", help="list drives").set_defaults(func=cmd_drives)
    decrypt = sub.add_parser("decrypt", help="open a Secure DICOM File with a password")
    decrypt.add_argument("file", type=Path)
    decrypt.add_argument("-o", "--output", type=Path, required=True)
    decrypt.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    decrypt.set_defaults(func=cmd_decrypt)
    jobs = sub.add_parser("jobs", help="list recent jobs")
    jobs.add_argument("--limit", type=int, default=50)
    jobs.set_defaults(func=cmd_jobs)
    job = sub.add_parser("job", help="show one job")
    job.add_argument("id", type=int)
    add_wait_options(job)
    job.set_defaults(func=cmd_job)
    cancel = sub.add_parser("cancel", help="cancel a job")
    cancel.add_argument("id", type=int)
    cancel.set_defaults(func=cmd_cancel)
    retry = sub.add_parser("retry", help="queue a failed or cancelled job again")
    retry.add_argument("id", type=int)
    add_wait_options(retry)
    retry.set_defaults(func=cmd_retry)
    from appliance.apps.kioskctl.network_commands import register as register_network

    register_network(sub)
    from appliance.apps.kioskctl.print_commands import register as register_print

    register_print(sub)
    from appliance.apps.kioskctl.import_commands import register as register_import

    register_import(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(Control(config), args))
    except KioskError as exc:
        print(f"kioskctl: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
