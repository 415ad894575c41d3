"""Print composed films through an open PrintSession: film session, film boxes, image boxes,
print, delete. The caller learns about each step through a `PrintTracker` (progress, safe
points for cancelling, and which film is being printed, so that a retry never reprints a film
the printer already took)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from appliance.printing.compose import FilmSheet
from appliance.printing.datasets import (
    film_box_attributes,
    film_session_attributes,
    image_box_attributes,
)
from appliance.printing.errors import PrintError
from appliance.printing.layout import Box
from appliance.printing.options import PrintOptions
from appliance.printing.render import PrintPixels, read_header, render_image
from appliance.printing.session import PrinterStatus, PrintSession

log = logging.getLogger(__name__)


class PrintTracker(Protocol):
    """What the print loop reports to its caller (the job runner)."""

    def progress(self, phase: str, done: int, total: int) -> None:
        """A step of the job: phase text and done/total image boxes."""

    def check_cancelled(self) -> None:
        """Raise to stop at a safe point (nothing half-sent to the printer)."""

    def film_printing(self, number: int) -> None:
        """The print request for film `number` is about to be sent."""

    def film_printed(self, number: int) -> None:
        """The printer accepted the print request for film `number`."""


def check_printer(session: PrintSession) -> PrinterStatus:
    """Ask the printer how it is before printing: FAILURE stops the attempt (retryable: a
    jam or an empty magazine gets fixed), WARNING is recorded and printing goes on."""
    status = session.printer_status()
    detail = f" ({status.info})" if status.info and status.info != status.status else ""
    if status.status == "FAILURE":
        raise PrintError(f"{session.where} reports FAILURE{detail}", retryable=True)
    if status.status == "WARNING":
        session.warnings.append(f"printer status WARNING{detail}")
    return status


def render_box(sheet: FilmSheet, index: int, box: Box, options: PrintOptions) -> PrintPixels:
    """The pixels of the `index`-th image of a film for its image box."""
    image = sheet.images[index]
    return render_image(image, (box.width, box.height), options.render, read_header(image))


def render_film(sheet: FilmSheet, options: PrintOptions) -> list[PrintPixels]:
    """Every image of one film, rendered for its box (in image box position order)."""
    boxes = options.geometry.boxes
    return [render_box(sheet, i, boxes[i], options) for i in range(len(sheet.images))]


def print_films(
    session: PrintSession,
    options: PrintOptions,
    films: Sequence[FilmSheet],
    tracker: PrintTracker,
    *,
    total_films: int | None = None,
) -> None:
    """Print `films` (all, or the ones a previous attempt left) in one film session."""
    if not films:
        return
    total = total_films or len(films)
    boxes_total = sum(len(f.images) for f in films)
    session_uid = session.create_film_session(film_session_attributes(options))
    completed = False
    try:
        sent = 0
        film_boxes: list[tuple[FilmSheet, str]] = []
        for sheet in films:
            tracker.check_cancelled()
            box_uid = _fill_film(
                session, options, session_uid, sheet, (total, sent, boxes_total), tracker
            )
            sent += len(sheet.images)
            if options.print_on == "film_box":
                tracker.check_cancelled()
                tracker.film_printing(sheet.number)
                session.print_film_box(box_uid)
                tracker.film_printed(sheet.number)
                _delete_quietly(session, session.delete_film_box, box_uid)
            else:
                film_boxes.append((sheet, box_uid))
        if film_boxes:
            tracker.check_cancelled()
            tracker.progress(f"printing {len(film_boxes)} film(s)", boxes_total, boxes_total)
            for sheet, _ in film_boxes:
                tracker.film_printing(sheet.number)
            session.print_film_session(session_uid)
            for sheet, _ in film_boxes:
                tracker.film_printed(sheet.number)
        tracker.progress(f"{len(films)} film(s) printed", boxes_total, boxes_total)
        completed = True
    finally:
        if completed:
            _delete_quietly(session, session.delete_film_session, session_uid)
        else:
            # Something already went wrong: tidy up what we can and let that error through.
            with contextlib.suppress(PrintError):
                session.delete_film_session(session_uid)


def _fill_film(
    session: PrintSession,
    options: PrintOptions,
    session_uid: str,
    sheet: FilmSheet,
    counts: tuple[int, int, int],
    tracker: PrintTracker,
) -> str:
    """Create the film box of one film and set its image boxes; returns its UID.
    `counts`: films in the job, images sent before this film, images to send in all."""
    total, sent_before, boxes_total = counts
    geometry = options.geometry
    box_uid, refs = session.create_film_box(
        film_box_attributes(options, session_uid), len(geometry.boxes)
    )
    phase = f"film {sheet.number}/{total}"
    for index in range(len(sheet.images)):
        tracker.check_cancelled()
        tracker.progress(
            f"{phase}: image {index + 1}/{len(sheet.images)}", sent_before + index, boxes_total
        )
        box = geometry.boxes[index]
        pixels = render_box(sheet, index, box, options)
        session.set_image_box(
            refs[index], image_box_attributes(box.position, pixels, options.polarity), box.position
        )
    log.info(
        "film %d/%d: %d image box(es) set (%s, %s)",
        sheet.number,
        total,
        len(sheet.images),
        options.display_format.text,
        options.film_size,
    )
    return box_uid


def _delete_quietly(session: PrintSession, delete: Callable[[str], None], uid: str) -> None:
    """Delete after printing: the film is on its way, so a refusal is only a warning."""
    try:
        delete(uid)
    except PrintError as exc:
        session.warnings.append(f"cleanup after printing: {exc}")
