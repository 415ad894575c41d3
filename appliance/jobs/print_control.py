"""What the control facade does for printing: queue a job, preview its films, ask a printer.

Submitting checks the whole request first (printer, options, UIDs, number of films), so the
operator hears about a mistake at once rather than when the job runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.config import KioskConfig
from appliance.jobs.model import JobState
from appliance.jobs.print_plan import plan_print
from appliance.jobs.print_request import (
    PRINT,
    PrintRequest,
    printer_config,
    printer_resource,
    printer_runner_name,
)
from appliance.jobs.queue import JobStore
from appliance.printing.errors import PrintError
from appliance.printing.preview import write_preview
from appliance.printing.run import render_film
from appliance.printing.session import PrintSession
from appliance.service.runstate import read_runstate


def submit_print(config: KioskConfig, store: JobStore, request: PrintRequest) -> dict[str, Any]:
    """Check the request and queue it on its printer; returns the job summary."""
    plan = plan_print(config, request)
    printer = printer_config(config, request.printer)
    job = store.submit(
        PRINT,
        request.to_params(),
        resource=printer_resource(request.printer),
        max_attempts=printer.max_attempts,
    )
    summary = job.summary()
    summary["plan"] = {"films": len(plan.films), "images": plan.images, "skipped": plan.skipped}
    return summary


def preview_print(config: KioskConfig, request: PrintRequest, out_dir: Path) -> dict[str, Any]:
    """Render every film of the request as a PNG in `out_dir` (nothing is printed)."""
    plan = plan_print(config, request)
    previews = [
        str(write_preview(out_dir, sheet, plan.options, render_film(sheet, plan.options)))
        for sheet in plan.films
    ]
    geometry = plan.options.geometry
    return {
        "printer": request.printer,
        "films": len(plan.films),
        "images": plan.images,
        "skipped": plan.skipped,
        "display_format": plan.options.display_format.text,
        "film_size": plan.options.film_size,
        "orientation": plan.options.orientation,
        "film_pixels": [geometry.width, geometry.height],
        "previews": previews,
    }


def printer_status(config: KioskConfig, store: JobStore, name: str) -> dict[str, Any]:
    """The printer's own status (N-GET, live) and its queue."""
    printer = printer_config(config, name)
    answer: dict[str, Any] = {
        "printer": name,
        "ae_title": printer.ae_title,
        "host": printer.host,
        "port": printer.port,
        "color": printer.color,
        "description": printer.description,
    }
    try:
        with PrintSession(config, name, printer) as session:
            answer["status"] = session.printer_status().to_dict()
            answer["warnings"] = session.warnings
        answer["reachable"] = True
    except PrintError as exc:
        answer["reachable"] = False
        answer["error"] = str(exc)
    waiting = [
        job
        for job in store.list_jobs(states=(JobState.QUEUED, JobState.RUNNING), kind=PRINT)
        if job.resource == printer_resource(name)
    ]
    daemon = read_runstate(config.paths.run_dir) or {}
    answer["running_job"] = daemon.get("runners", {}).get(printer_runner_name(name))
    answer["queued_jobs"] = sorted(j.id for j in waiting if j.state == JobState.QUEUED)
    return answer
