"""From a print request to films: resolve its UIDs in the store, expand frames, cut films.

A job's first attempt freezes the frames it prints (SOP Instance UID and frame number) in its
result, so a retry or a restart prints the same films even if more instances of the study
arrived in the meantime, and can skip the films already printed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.config import KioskConfig
from appliance.errors import KioskError
from appliance.jobs.print_request import PrintRequest, printer_config
from appliance.printing.compose import (
    FilmSheet,
    PrintImage,
    SourceInstance,
    expand_frames,
    paginate,
)
from appliance.printing.errors import PrintRequestError
from appliance.printing.options import PrintOptions, resolve_options
from appliance.store.index import connect
from appliance.store.layout import resolve_inside

_ORDER = (
    "ORDER BY s.series_number IS NULL, s.series_number, i.series_uid, "
    "i.instance_number IS NULL, i.instance_number, i.sop_instance_uid"
)
_SELECT = (
    "SELECT i.sop_instance_uid, i.path FROM instances i "
    "JOIN series s ON s.series_uid = i.series_uid WHERE {column} = ? " + _ORDER
)


@dataclass(frozen=True, slots=True)
class PrintPlan:
    """Everything a print job will print, before any pixel is rendered."""

    printer: str
    options: PrintOptions
    films: list[FilmSheet]
    skipped: list[str]
    """SOP Instance UIDs of chosen objects that hold no image (reports, key objects ...)."""

    @property
    def images(self) -> int:
        """Image boxes to fill over all films."""
        return sum(len(f.images) for f in self.films)

    def frozen(self) -> list[list[str | int]]:
        """The printed frames as [SOP Instance UID, frame] pairs (JSON-safe), in order."""
        return [[i.sop_instance_uid, i.frame] for f in self.films for i in f.images]


def select_sources(
    conn: sqlite3.Connection, store_root: Path, uids: Sequence[str]
) -> list[SourceInstance]:
    """The instances named by Study, Series or SOP Instance UIDs, in the order given (each
    study or series by series and instance number); an instance named twice prints once."""
    if not uids:
        raise PrintRequestError("a print job needs at least one study, series or instance UID")
    chosen: dict[str, SourceInstance] = {}
    for uid in uids:
        rows: list[sqlite3.Row] = []
        for column in ("i.study_uid", "i.series_uid", "i.sop_instance_uid"):
            rows = list(conn.execute(_SELECT.format(column=column), (uid,)))
            if rows:
                break
        if not rows:
            raise PrintRequestError(f"{uid} is not a study, series or instance in the store")
        for row in rows:
            sop = str(row["sop_instance_uid"])
            if sop not in chosen:
                chosen[sop] = SourceInstance(resolve_inside(store_root, row["path"]), sop)
    return list(chosen.values())


def _frozen_images(
    conn: sqlite3.Connection, store_root: Path, frozen: Sequence[Sequence[str | int]]
) -> list[PrintImage]:
    paths: dict[str, Path] = {}
    images = []
    for sop, frame in frozen:
        uid = str(sop)
        if uid not in paths:
            row = conn.execute(
                "SELECT path FROM instances WHERE sop_instance_uid = ?", (uid,)
            ).fetchone()
            if row is None:
                raise PrintRequestError(f"instance {uid} is no longer in the store")
            paths[uid] = resolve_inside(store_root, row["path"])
        images.append(PrintImage(paths[uid], uid, int(frame)))
    return images


def plan_print(
    config: KioskConfig,
    request: PrintRequest,
    frozen: Sequence[Sequence[str | int]] | None = None,
) -> PrintPlan:
    """Resolve the request against its printer and the store; PrintRequestError when the
    printer, an option or a UID is unknown, or the job would need too many films."""
    printer = printer_config(config, request.printer)
    options = resolve_options(request.printer, printer, request.choices)
    path = config.paths.index_file
    if not path.exists():
        raise PrintRequestError("the store is empty")
    conn = connect(path, readonly=True)
    try:
        store_root = config.paths.store_dir
        skipped: list[str] = []
        if frozen:
            images = _frozen_images(conn, store_root, frozen)
        else:
            sources = select_sources(conn, store_root, request.uids)
            images, skipped = expand_frames(sources, options.frames)
    except PrintRequestError:
        raise
    except KioskError as exc:  # e.g. a stored path that escapes the store
        raise PrintRequestError(str(exc)) from None
    finally:
        conn.close()
    missing = [i.sop_instance_uid for i in images if not i.path.is_file()]
    if missing:
        raise PrintRequestError(
            f"instance {missing[0]} is indexed but its file is missing from the store"
        )
    if not images:
        raise PrintRequestError("nothing to print: the chosen objects hold no images")
    films = paginate(images, options.display_format.boxes)
    if len(films) > printer.max_films_per_job:
        raise PrintRequestError(
            f"{len(images)} images in {options.display_format.text} need {len(films)} films; "
            f"printer {request.printer} takes at most {printer.max_films_per_job} per job "
            "(choose a layout with more images per film)"
        )
    return PrintPlan(request.printer, options, films, skipped)
