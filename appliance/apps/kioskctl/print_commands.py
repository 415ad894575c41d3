"""kioskctl commands for film printing: `print` (queue or preview) and `printer NAME status`.

`register(subparsers)` adds them to kioskctl's parser (called from `main.build_parser`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from appliance.apps.kioskctl.job_output import (
    EXIT_FAILED,
    EXIT_OK,
    add_wait_options,
    finish_job,
    print_job,
)
from appliance.control import Control
from appliance.jobs.print_request import PrintRequest
from appliance.printing.options import PrintChoices


def _print_job(job: dict[str, Any], as_json: bool) -> None:
    """A print job: the usual job lines, then its films and the printer's status."""
    print_job(job, as_json)
    if as_json:
        return
    result = job.get("result") or {}
    if result.get("films"):
        print(
            f"  films: {result.get('films_done', 0)} of {result['films']} printed "
            f"({result.get('images', 0)} images, {result.get('display_format', '')}, "
            f"{result.get('film_size', '')})"
        )
    printer = result.get("printer_status")
    if printer:
        info = f" ({printer['info']})" if printer["info"] not in ("", printer["status"]) else ""
        print(f"  printer status: {printer['status'] or 'not reported'}{info}")
    for warning in result.get("warnings", []):
        print(f"  warning: {warning}")


def _request(args: argparse.Namespace) -> PrintRequest:
    choices = PrintChoices(
        display_format=args.format,
        film_size=args.size,
        orientation=args.orientation,
        copies=args.copies,
        medium_type=args.medium,
        destination=args.destination,
        priority=args.priority,
        magnification=args.magnification,
        polarity=args.polarity,
        window=args.window,
        frames=args.frames,
        label=args.label,
    )
    return PrintRequest(printer=args.printer, uids=list(args.uids), choices=choices)


def cmd_print(control: Control, args: argparse.Namespace) -> int:
    """Queue a print job, or with --preview only write each film as a PNG."""
    request = _request(args)
    if args.preview is not None:
        preview = control.preview_print(request, args.preview)
        if args.json:
            print(json.dumps(preview))
            return EXIT_OK
        width, height = preview["film_pixels"]
        print(
            f"{preview['films']} film(s), {preview['images']} image(s) on {preview['printer']}: "
            f"{preview['display_format']} on {preview['film_size']} {preview['orientation']} "
            f"({width} x {height} pixels); nothing printed"
        )
        for path in preview["previews"]:
            print(f"  {path}")
        if preview["skipped"]:
            print(f"  left out (no image): {len(preview['skipped'])} object(s)")
        return EXIT_OK
    return finish_job(control, control.submit_print(request), args, _print_job)


def cmd_printer(control: Control, args: argparse.Namespace) -> int:
    """Show a printer's status (asked now) and its queue."""
    status = control.printer_status(args.printer)
    if args.json:
        print(json.dumps(status))
        return EXIT_OK if status["reachable"] else EXIT_FAILED
    kind = "colour" if status["color"] else "grayscale"
    print(
        f"printer {status['printer']} ({status['ae_title']} at {status['host']}:"
        f"{status['port']}, {kind})"
    )
    if status["reachable"]:
        printer = status["status"]
        info = f" ({printer['info']})" if printer["info"] not in ("", printer["status"]) else ""
        print(f"  status: {printer['status'] or 'not reported'}{info}")
        for warning in status.get("warnings", []):
            print(f"  warning: {warning}")
    else:
        print(f"  unreachable: {status['error']}")
    running = status["running_job"]
    queued = status["queued_jobs"]
    print(f"  queue: {'job ' + str(running) if running else 'idle'}, {len(queued)} waiting")
    return EXIT_OK if status["reachable"] else EXIT_FAILED


def _json_flag(parser: argparse.ArgumentParser) -> None:
    # Also accepted after the command; SUPPRESS keeps it from resetting a global --json.
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )


def register(sub: Any) -> None:
    """Add `print` and `printer` to kioskctl's subparsers."""
    printer = sub.add_parser("print", help="queue a print job (or preview it as PNGs)")
    printer.add_argument("printer", help="printer name from [printers.NAME]")
    printer.add_argument(
        "uids", nargs="+", metavar="UID", help="Study, Series or SOP Instance UIDs, in order"
    )
    printer.add_argument("--format", help="image display format, e.g. STANDARD\\2,2")
    printer.add_argument("--size", help="film size ID, e.g. 14INX17IN")
    printer.add_argument("--orientation", choices=("PORTRAIT", "LANDSCAPE"), type=str.upper)
    printer.add_argument("--copies", type=int, default=1, help="1-99 (default 1)")
    printer.add_argument("--medium", help="medium type, e.g. BLUE FILM")
    printer.add_argument("--destination", help="film destination, e.g. PROCESSOR")
    printer.add_argument("--priority", choices=("HIGH", "MED", "LOW"), type=str.upper)
    printer.add_argument("--magnification", help="REPLICATE, BILINEAR, CUBIC or NONE")
    printer.add_argument("--polarity", choices=("NORMAL", "REVERSE"), type=str.upper)
    printer.add_argument(
        "--window", help="auto (default), object:N, CENTER,WIDTH or a preset such as lung, bone"
    )
    printer.add_argument(
        "--frames", choices=("all", "first"), help="frames of multi-frame images (default all)"
    )
    printer.add_argument("--label", default="", help="film session label (no patient data)")
    printer.add_argument(
        "--preview",
        type=Path,
        metavar="DIR",
        help="write each film as a PNG into DIR instead of printing",
    )
    add_wait_options(printer)
    _json_flag(printer)
    printer.set_defaults(func=cmd_print)

    status = sub.add_parser("printer", help="a printer's status and queue")
    status.add_argument("printer", help="printer name from [printers.NAME]")
    status.add_argument("action", choices=("status",), help="what to show")
    _json_flag(status)
    status.set_defaults(func=cmd_printer)
