"""The print runner: one per printer, first come first served, retried with back-off.

A job's result records which films the printer already took (`films_done`) and which film a
print request was in flight for (`printing`), saved before and after every N-ACTION. A retry
(after a lost connection, a busy printer, or a daemon restart) goes on with the next film, so a
film is printed twice only if the connection died while the printer was taking it; the job then
says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from appliance.config import KioskConfig
from appliance.jobs.model import Job, JobError
from appliance.jobs.print_plan import plan_print
from appliance.jobs.print_request import (
    PRINT,
    PrintRequest,
    printer_config,
    printer_resource,
    printer_runner_name,
)
from appliance.jobs.queue import JobStore
from appliance.jobs.runner import JobContext, JobRunner
from appliance.printing.errors import PrintError
from appliance.printing.run import check_printer, print_films
from appliance.printing.session import PrintSession

log = logging.getLogger(__name__)


class _Tracker:
    """Reports the print loop's steps into the job (progress, cancel, films done)."""

    def __init__(self, ctx: JobContext, result: dict[str, Any]) -> None:
        self.ctx = ctx
        self.result = result

    def progress(self, phase: str, done: int, total: int) -> None:
        self.ctx.progress(phase, done_files=done, total_files=total)

    def check_cancelled(self) -> None:
        self.ctx.check_cancelled()

    def film_printing(self, number: int) -> None:
        self.result["printing"] = sorted({*self.result.get("printing", []), number})
        self.ctx.save_result(self.result)

    def film_printed(self, number: int) -> None:
        self.result["printing"] = [n for n in self.result.get("printing", []) if n != number]
        if not self.result["printing"]:
            del self.result["printing"]
        self.result["films_done"] = max(int(self.result.get("films_done", 0)), number)
        self.ctx.save_result(self.result)


class PrintHandler:
    """Runs print jobs on one printer."""

    def __init__(self, config: KioskConfig, name: str) -> None:
        self.config = config
        self.name = name

    def __call__(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        """Print every film of the job not printed by an earlier attempt."""
        try:
            return self._run(job, ctx)
        except PrintError as exc:
            raise JobError(str(exc), retryable=exc.retryable) from None

    def _run(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        request = PrintRequest.from_params(job.params)
        printer = printer_config(self.config, self.name)
        result: dict[str, Any] = dict(job.result) if job.result else {}
        ctx.progress("composing films")
        plan = plan_print(self.config, request, result.get("frames"))
        result.update(
            printer=self.name,
            films=len(plan.films),
            images=plan.images,
            display_format=plan.options.display_format.text,
            film_size=plan.options.film_size,
            frames=plan.frozen(),
        )
        if plan.skipped:
            result["skipped"] = plan.skipped
        warnings: list[str] = list(result.get("warnings", []))
        in_flight = result.pop("printing", [])
        if in_flight:
            warnings.append(
                f"film(s) {', '.join(str(n) for n in in_flight)} may print twice: the connection "
                "was lost while the printer was taking them"
            )
        result["warnings"] = warnings
        ctx.save_result(result)
        done = int(result.get("films_done", 0))
        remaining = [f for f in plan.films if f.number > done]
        if not remaining:
            return result
        session = PrintSession(self.config, self.name, printer)
        tracker = _Tracker(ctx, result)
        try:
            with session:
                ctx.progress("asking the printer for its status")
                result["printer_status"] = check_printer(session).to_dict()
                print_films(session, plan.options, remaining, tracker, total_films=len(plan.films))
        finally:
            # Keep what the printer said even when the attempt failed.
            result["events"] = [*result.get("events", []), *(e.to_dict() for e in session.events)]
            noted = [e.text() for e in session.events if e.event != "NORMAL"]
            result["warnings"] = _unique([*warnings, *session.warnings, *noted])
            ctx.save_result(result)
        log.info(
            "job %d: %d film(s) printed on %s (%d warning(s))",
            job.id,
            len(remaining),
            self.name,
            len(result["warnings"]),
        )
        return result


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def print_recovery(config: KioskConfig) -> Callable[[Job], str | None]:
    """Start-up policy for print jobs found running: run again (films already printed are
    skipped), unless their printer is gone from the configuration."""

    def policy(job: Job) -> str | None:
        name = str(job.params.get("printer", ""))
        if name not in config.printers:
            return f"printer {name!r} is no longer configured"
        return None

    return policy


def build_print_runners(config: KioskConfig) -> list[JobRunner]:
    """One runner per configured printer; each with its own job store connection, whose
    back-off is the printer's `retry_backoff_seconds`."""
    runners = []
    for name, printer in config.printers.items():
        store = JobStore(config.paths.index_file, backoff_seconds=printer.retry_backoff_seconds)
        runners.append(
            JobRunner(
                store,
                printer_runner_name(name),
                {PRINT: PrintHandler(config, name)},
                resource=printer_resource(name),
            )
        )
    return runners
