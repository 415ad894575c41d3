"""Choose instances of the local store for publishing or sending (read-only queries)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from appliance.errors import InvalidUIDError, StoreError
from appliance.store.layout import resolve_inside

RELATED_CLASS_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports, including Key Object Selection (88.59)
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
)
"""SOP classes that belong with the images of a study: reports, key objects, presentation."""


@dataclass(frozen=True, slots=True)
class SelectedInstance:
    """An instance chosen for a job, with where its file is."""

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    path: Path
    size: int


class NothingSelectedError(StoreError):
    """The requested studies/series are not in the local store."""


def select_instances(
    conn: sqlite3.Connection,
    store_root: Path,
    study_uids: Sequence[str],
    series_uids: Sequence[str] = (),
    *,
    include_related: bool = True,
) -> list[SelectedInstance]:
    """Instances of the given studies (all of them), or of the given series (plus the studies'
    reports/KOS/presentation states when `include_related`), in study order as given, then
    series number, then instance number."""
    rows: list[sqlite3.Row] = []
    query = (
        "SELECT i.sop_instance_uid, i.sop_class_uid, i.study_uid, i.series_uid, i.path, i.size "
        "FROM instances i JOIN series s ON s.series_uid = i.series_uid WHERE {where} "
        "ORDER BY s.series_number IS NULL, s.series_number, i.series_uid, "
        "i.instance_number IS NULL, i.instance_number, i.sop_instance_uid"
    )
    if series_uids:
        marks = ", ".join("?" for _ in series_uids)
        rows = list(
            conn.execute(query.format(where=f"i.series_uid IN ({marks})"), tuple(series_uids))
        )
        studies = list(dict.fromkeys([*study_uids, *(r["study_uid"] for r in rows)]))
        if include_related and studies:
            marks = ", ".join("?" for _ in studies)
            related = " OR ".join("i.sop_class_uid LIKE ?" for _ in RELATED_CLASS_PREFIXES)
            chosen = {r["sop_instance_uid"] for r in rows}
            extra = conn.execute(
                query.format(where=f"i.study_uid IN ({marks}) AND ({related})"),
                (*studies, *(p + "%" for p in RELATED_CLASS_PREFIXES)),
            )
            rows += [r for r in extra if r["sop_instance_uid"] not in chosen]
        order = {uid: n for n, uid in enumerate(studies)}
    else:
        marks = ", ".join("?" for _ in study_uids)
        rows = list(
            conn.execute(query.format(where=f"i.study_uid IN ({marks})"), tuple(study_uids))
        )
        order = {uid: n for n, uid in enumerate(study_uids)}
    if not rows:
        raise NothingSelectedError("none of the requested studies or series is in the store")
    missing = set(study_uids) - {r["study_uid"] for r in rows}
    if missing and not series_uids:
        raise NothingSelectedError(f"{len(missing)} requested study(ies) not in the store")
    rows.sort(key=lambda r: order.get(r["study_uid"], len(order)))
    resolve = _StorePaths(store_root)
    return [
        SelectedInstance(
            r["sop_instance_uid"],
            r["sop_class_uid"],
            r["study_uid"],
            r["series_uid"],
            resolve(r["path"]),
            r["size"],
        )
        for r in rows
    ]


class _StorePaths:
    """`resolve_inside(store_root, path)` for many paths of few folders.

    Resolving a path looks at every component (a system call each); a study's instances share
    their folder, so each folder is resolved once and only the file itself is looked at. A file
    that is a symbolic link, or a path that is not plainly relative, takes the full check.
    """

    def __init__(self, store_root: Path) -> None:
        self._store_root = store_root
        self._root = store_root.resolve()
        self._folders: dict[PurePosixPath, Path] = {}

    def __call__(self, stored: str) -> Path:
        relative = PurePosixPath(stored)
        if relative.is_absolute() or ".." in relative.parts or len(relative.parts) < 2:
            return resolve_inside(self._store_root, stored)
        folder = self._folders.get(relative.parent)
        if folder is None:
            folder = (self._root / relative.parent).resolve()
            if folder != self._root and self._root not in folder.parents:
                raise InvalidUIDError("stored path escapes the store root")
            self._folders[relative.parent] = folder
        candidate = folder / relative.name
        if candidate.is_symlink():
            return resolve_inside(self._store_root, stored)
        return candidate
