"""What the kioskctl commands that queue or show a job share: exit codes, the job's lines,
the --wait/--timeout options, and "wait if asked, print, exit code"."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from appliance.control import Control

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

JobPrinter = Callable[[dict[str, Any], bool], None]
"""Prints a job: `(job, as_json)`."""


def print_job(job: dict[str, Any], as_json: bool) -> None:
    """One job, as JSON or as a few human lines."""
    if as_json:
        print(json.dumps(job))
        return
    progress = job["progress"]
    line = f"job {job['id']} {job['kind']}: {job['state']}"
    if job["state"] == "running" and progress["phase"]:
        line += f" ({progress['phase']}, {progress['fraction'] * 100:.0f} %)"
    print(line)
    if job["error"]:
        print(f"  error: {job['error']}")
    if job["attempts"]:
        print(f"  attempts: {job['attempts']} of {job['max_attempts']}")


def exit_for(job: dict[str, Any]) -> int:
    """0 unless the job ended badly."""
    return EXIT_FAILED if job["state"] in ("failed", "cancelled") else EXIT_OK


def add_wait_options(parser: argparse.ArgumentParser, *, until: str = "the job ends") -> None:
    """--wait (block until `until`) and --timeout (how long at most)."""
    parser.add_argument("--wait", action="store_true", help=f"block until {until}")
    parser.add_argument(
        "--timeout", type=float, default=24 * 3600, help="seconds --wait blocks at most"
    )


def finish_job(
    control: Control,
    job: dict[str, Any],
    args: argparse.Namespace,
    show: JobPrinter = print_job,
) -> int:
    """After queueing `job`: wait for it with --wait, print it, and give the exit code (with
    --wait, 0 only if it did not fail or get cancelled)."""
    if args.wait:
        job = control.wait_job(job["id"], args.timeout)
    show(job, args.json)
    return exit_for(job) if args.wait else EXIT_OK
