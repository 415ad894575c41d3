"""The web content of an IHE PDI disc ("DICOM PLUS WEB"): INDEX.HTM and the IHE_PDI/ pages.

Layout (every name 8.3 and upper case, so it survives an ISO 9660 Level 1 image):

    INDEX.HTM                 patients, with a link to README.TXT
    IHE_PDI/PA000001.HTM      one page per patient: studies
    IHE_PDI/ST000001.HTM      one page per study: series
    IHE_PDI/SE000001.HTM      one page per series: previews, and a line per non-image object
    IHE_PDI/IMAGES/IM000001.JPG  JPEG preview of an instance's first frame

Pages are XHTML 1.0 Strict, link only to files on the disc with relative links, and hold no
script. They show patient data (that is their purpose); every DICOM value is escaped by
`pdi_xhtml`. Pages are written bottom-up (series, study, patient, index) so that values a
DICOMDIR record lacks (e.g. birth date) can be taken from the first instance read below it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from appliance.media.pdi_catalog import (
    Catalog,
    InstanceEntry,
    PatientEntry,
    SeriesEntry,
    StudyEntry,
)
from appliance.media.pdi_errors import PdiError
from appliance.media.pdi_options import PdiOptions
from appliance.media.pdi_xhtml import Element, document, el
from appliance.media.render import RenderError, encode_jpeg, has_pixels, render_preview

log = logging.getLogger(__name__)

INDEX_NAME = "INDEX.HTM"
WEB_DIR = "IHE_PDI"
IMAGE_DIR = "IMAGES"
_MAX_SERIAL = 999_999  # six digits after a two-letter prefix: 8 characters
_DEFER_BYTES = 4096
_SEX = {"M": "male", "F": "female", "O": "other"}
_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_TIME = re.compile(r"(\d{2})(\d{2})(\d{2})?")
_DISCLAIMER = (
    "The pictures on these pages are reduced previews for orientation only, not for diagnosis."
    " For diagnostic viewing open the file DICOMDIR on this disc with a DICOM viewer."
)


@dataclass(slots=True)
class _Namer:
    """Hands out the 8.3 file names, one counter per prefix."""

    counters: dict[str, int] = field(default_factory=dict)

    def next(self, prefix: str, suffix: str) -> str:
        serial = self.counters.get(prefix, 0) + 1
        if serial > _MAX_SERIAL:
            raise PdiError(f"web content: more than {_MAX_SERIAL} {prefix} files")
        self.counters[prefix] = serial
        return f"{prefix}{serial:06d}.{suffix}"


@dataclass(slots=True)
class _Writer:
    """Writes files under the root and remembers them."""

    root: Path
    written: list[Path] = field(default_factory=list)

    def write(self, relative: str, data: bytes) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.written.append(path)


# ---- value formatting (all results are plain text; escaping happens at serialisation) ----


def format_person_name(value: str) -> str:
    """'FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX' (alphabetic group) as 'FAMILY, PREFIX GIVEN MIDDLE'."""
    alphabetic = value.split("=", maxsplit=1)[0]
    family, given, middle, prefix, suffix = ([*alphabetic.split("^"), "", "", "", ""])[:5]
    rest = " ".join(p for p in (prefix, given, middle) if p)
    name = f"{family}, {rest}" if family and rest else family or rest
    name = f"{name}, {suffix}" if suffix else name
    return name.strip() or value.strip()


def format_date(value: str) -> str:
    """DA 'YYYYMMDD' as 'YYYY-MM-DD'; anything else unchanged."""
    match = _DATE.fullmatch(value)
    return "-".join(match.groups()) if match else value


def format_time(value: str) -> str:
    """TM 'HHMMSS.ffffff' as 'HH:MM:SS' (or 'HH:MM'); anything else unchanged."""
    match = _TIME.match(value)
    if not match:
        return value
    return ":".join(g for g in match.groups() if g is not None)


def _text(ds: Dataset | None, keyword: str) -> str:
    if ds is None:
        return ""
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _table(headers: list[str], rows: list[list[Element | str]]) -> Element:
    head = el("tr", *(el("th", h) for h in headers))
    return el("table", head, *(el("tr", *(el("td", c) for c in row)) for row in rows))


def _details(pairs: list[tuple[str, str]]) -> Element:
    """A two-column table of label/value rows (no header row)."""
    return el("table", *(el("tr", el("th", label), el("td", value)) for label, value in pairs))


def _nav(*links: tuple[str, str]) -> Element:
    items: list[Element | str] = []
    for href, label in links:
        if items:
            items.append(" > ")
        items.append(el("a", label, href=href))
    return el("p", *items)


# ---- the pages ----


@dataclass(slots=True)
class _Site:
    root: Path
    catalog: Catalog
    options: PdiOptions
    created: date
    readme_name: str
    namer: _Namer = field(default_factory=_Namer)
    writer: _Writer = field(init=False)

    def __post_init__(self) -> None:
        self.writer = _Writer(self.root)

    def page(self, name: str, title: str, body: list[Element]) -> None:
        self.writer.write(f"{WEB_DIR}/{name}", document(title, body, lang=self.options.language))

    def build(self) -> list[Path]:
        rows: list[list[Element | str]] = []
        for patient in self.catalog.patients:
            page, header = self.patient(patient)
            rows.append(
                [
                    el("a", _display_name(patient, header), href=f"{WEB_DIR}/{page}"),
                    patient.patient_id or _text(header, "PatientID"),
                    format_date(patient.birth_date or _text(header, "PatientBirthDate")),
                    _sex(patient.sex or _text(header, "PatientSex")),
                    str(len(patient.studies)),
                ]
            )
        body = [
            el("h1", f"Imaging disc from {self.options.institution_name}"),
            *(el("p", line) for line in self.options.institution_contact.splitlines() if line),
            el(
                "p",
                f"Created on {self.created.isoformat()} with {self.options.application_name}"
                f" version {self.options.application_version}.",
            ),
            el("div", el("p", _DISCLAIMER), class_="note"),
            el("h2", "Patients"),
            _table(["Patient", "Patient ID", "Birth date", "Sex", "Studies"], rows),
            el("p", el("a", "About this disc (README.TXT)", href=self.readme_name)),
        ]
        title = f"Imaging disc - {self.options.institution_name}"
        self.writer.write(INDEX_NAME, document(title, body, lang=self.options.language))
        return self.writer.written

    def patient(self, patient: PatientEntry) -> tuple[str, Dataset | None]:
        name = self.namer.next("PA", "HTM")
        first: Dataset | None = None
        rows: list[list[Element | str]] = []
        for study in patient.studies:
            page, header, modalities = self.study(study, patient, name)
            first = first or header
            rows.append(
                [
                    el("a", format_date(study.date) or "(no date)", href=page),
                    format_time(study.time),
                    study.description or _text(header, "StudyDescription"),
                    study.accession_number,
                    ", ".join(modalities),
                    str(len(study.series)),
                    str(sum(len(s.instances) for s in study.series)),
                ]
            )
        details = [
            ("Patient ID", patient.patient_id or _text(first, "PatientID")),
            ("Birth date", format_date(patient.birth_date or _text(first, "PatientBirthDate"))),
            ("Sex", _sex(patient.sex or _text(first, "PatientSex"))),
        ]
        display = _display_name(patient, first)
        body = [
            _nav((f"../{INDEX_NAME}", "Disc")),
            el("h1", display),
            _details(details),
            el("h2", "Studies"),
            _table(
                ["Date", "Time", "Description", "Accession", "Modalities", "Series", "Objects"],
                rows,
            ),
        ]
        self.page(name, display, body)
        return name, first

    def study(
        self, study: StudyEntry, patient: PatientEntry, patient_page: str
    ) -> tuple[str, Dataset | None, list[str]]:
        name = self.namer.next("ST", "HTM")
        first: Dataset | None = None
        rows: list[list[Element | str]] = []
        modalities: list[str] = []
        for series in study.series:
            page, header = self.series(series, study, patient, (patient_page, name))
            first = first or header
            if series.modality and series.modality not in modalities:
                modalities.append(series.modality)
            rows.append(
                [
                    el("a", str(series.number) if series.number is not None else "-", href=page),
                    series.modality,
                    _text(header, "SeriesDescription"),
                    str(len(series.instances)),
                ]
            )
        description = study.description or _text(first, "StudyDescription")
        title = " ".join(p for p in (format_date(study.date), description) if p) or "Study"
        details = [
            ("Date", format_date(study.date)),
            ("Time", format_time(study.time)),
            ("Description", description),
            ("Accession number", study.accession_number),
            ("Study ID", study.study_id),
            ("Referring physician", format_person_name(_text(first, "ReferringPhysicianName"))),
        ]
        body = [
            _nav(
                (f"../{INDEX_NAME}", "Disc"),
                (patient_page, _display_name(patient, first)),
            ),
            el("h1", f"Study {title}"),
            _details(details),
            el("h2", "Series"),
            _table(["Series", "Modality", "Description", "Objects"], rows),
        ]
        self.page(name, f"Study {title}", body)
        return name, first, modalities

    def series(
        self,
        series: SeriesEntry,
        study: StudyEntry,
        patient: PatientEntry,
        parents: tuple[str, str],
    ) -> tuple[str, Dataset | None]:
        name = self.namer.next("SE", "HTM")
        first: Dataset | None = None
        entries: list[Element] = []
        for instance in series.instances:
            header, entry = self.instance(instance)
            first = first or header
            entries.append(entry)
        number = str(series.number) if series.number is not None else "-"
        description = _text(first, "SeriesDescription")
        title = " ".join(p for p in (f"Series {number}", series.modality, description) if p)
        study_label = " ".join(p for p in (format_date(study.date), study.description) if p)
        body = [
            _nav(
                (f"../{INDEX_NAME}", "Disc"),
                (parents[0], _display_name(patient, first)),
                (parents[1], f"Study {study_label}".strip()),
            ),
            el("h1", title),
            el("div", el("p", _DISCLAIMER), class_="note"),
            *entries,
        ]
        self.page(name, title, body)
        return name, first

    def instance(self, instance: InstanceEntry) -> tuple[Dataset | None, Element]:
        number = str(instance.instance_number) if instance.instance_number is not None else "-"
        try:
            # Deferred large values: the header keeps the Pixel Data element (so we know it is an
            # image) without loading it; render_preview decodes just the first frame itself.
            header = pydicom.dcmread(instance.path, defer_size=_DEFER_BYTES)
        except Exception:  # a broken file must not stop the disc: the viewer may still cope
            log.warning("PDI web: cannot read %s", instance.sop_instance_uid)
            return None, el("p", f"Object {number}: cannot be read here.")
        if not has_pixels(header):
            return header, el("p", _non_image_text(number, header))
        try:
            image = render_preview(instance.path, header, max_edge=self.options.max_image_edge)
        except RenderError as exc:
            log.info("PDI web: no preview for %s: %s", instance.sop_instance_uid, exc)
            return header, el("p", f"Image {number}: no preview (open it with a DICOM viewer).")
        jpeg = self.namer.next("IM", "JPG")
        self.writer.write(f"{WEB_DIR}/{IMAGE_DIR}/{jpeg}", encode_jpeg(image))
        caption = f"Image {number}"
        frames = _frames(header)
        if frames > 1:
            caption += f" (first of {frames} frames)"
        picture = el(
            "img",
            src=f"{IMAGE_DIR}/{jpeg}",
            alt=caption,
            width=str(image.width),
            height=str(image.height),
        )
        return header, el("div", el("p", picture), el("p", caption), class_="image")


def _display_name(patient: PatientEntry, header: Dataset | None) -> str:
    raw = patient.name or _text(header, "PatientName")
    return format_person_name(raw) or "(no name)"


def _sex(code: str) -> str:
    return _SEX.get(code.upper(), code)


def _frames(header: Dataset) -> int:
    try:
        return int(header.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1


def _non_image_text(number: str, header: Dataset) -> str:
    kind = UID(_text(header, "SOPClassUID")).name or "DICOM object"
    title = ""
    concept = header.get("ConceptNameCodeSequence")
    if concept:
        title = _text(concept[0], "CodeMeaning")
    label = f"{kind}: {title}" if title else kind
    return f"Object {number}: {label} - not shown here; open it with a DICOM viewer."


def write_web_content(
    root: Path, catalog: Catalog, options: PdiOptions, *, created: date, readme_name: str
) -> list[Path]:
    """Write INDEX.HTM and IHE_PDI/ under `root`; return the paths written.

    A file that cannot be read or rendered becomes a line of text; it never fails the disc.
    """
    return _Site(root, catalog, options, created, readme_name).build()
