"""The Query/Retrieve information model over our index: levels, keys, how each key matches.

Every key we support maps to one SQL expression over the query's tables, aliased `s`
(studies), `se` (series) and `i` (instances); patient attributes live on the study rows. Keys
whose match is NONE are return keys only (counts, lists derived from lower levels): a value
given for them is not matched, and the computed value is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cache

from pydicom.datadict import dictionary_VR, keyword_dict


class Level(StrEnum):
    """Query/Retrieve levels, top down."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


ORDER = (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE)


class Model(StrEnum):
    """The information models we serve."""

    STUDY_ROOT = "STUDY_ROOT"
    PATIENT_ROOT = "PATIENT_ROOT"


STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"

FIND_MODELS = {STUDY_ROOT_FIND: Model.STUDY_ROOT, PATIENT_ROOT_FIND: Model.PATIENT_ROOT}
MOVE_MODELS = {STUDY_ROOT_MOVE: Model.STUDY_ROOT, PATIENT_ROOT_MOVE: Model.PATIENT_ROOT}

LEVELS: dict[Model, tuple[Level, ...]] = {
    Model.STUDY_ROOT: (Level.STUDY, Level.SERIES, Level.IMAGE),
    Model.PATIENT_ROOT: (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE),
}
"""The levels each model has."""


class Match(StrEnum):
    """How a key's value is matched (PS3.4 C.2.2.2)."""

    TEXT = "text"
    """Single value (exact, case-sensitive), wildcard `*` `?`, list of values."""
    PN = "pn"
    """Like TEXT, but case-insensitive and per component group (PS3.4 C.2.2.2.1.1)."""
    DATE = "date"
    """Single value or range `A-B`, `A-`, `-B` (DA)."""
    TIME = "time"
    """Single value or range (TM), combined with the level's date key when both are given."""
    UID = "uid"
    """Single value or list of UIDs."""
    NUMBER = "number"
    """Single integer value (IS)."""
    MODALITIES = "modalities"
    """Modalities in Study: matches a study with a series of any of the given modalities."""
    NONE = "none"
    """Return key only."""


@dataclass(frozen=True, slots=True)
class Key:
    """One supported key."""

    keyword: str
    level: Level
    match: Match
    sql: str
    """SQL expression of the stored value (or of the computed return value)."""
    unique: bool = False
    """The unique key of its level."""
    multi: bool = False
    """The computed value is a comma-separated list (returned as multiple values)."""

    @property
    def tag(self) -> int:
        """The element tag."""
        return int(keyword_dict[self.keyword])

    @property
    def vr(self) -> str:
        """The element's VR from the data dictionary."""
        return str(dictionary_VR(self.tag))


_COUNT_SERIES_OF_STUDY = "(SELECT COUNT(*) FROM series x WHERE x.study_uid = s.study_uid)"
_COUNT_INSTANCES_OF_STUDY = "(SELECT COUNT(*) FROM instances x WHERE x.study_uid = s.study_uid)"
_MODALITIES_OF_STUDY = (
    "(SELECT group_concat(m, ',') FROM (SELECT DISTINCT x.modality AS m FROM series x "
    "WHERE x.study_uid = s.study_uid AND x.modality IS NOT NULL ORDER BY m))"
)
_COUNT_INSTANCES_OF_SERIES = "(SELECT COUNT(*) FROM instances x WHERE x.series_uid = se.series_uid)"
_SAME_PATIENT = (
    "x.patient_id = s.patient_id "
    "AND COALESCE(x.issuer_of_patient_id, '') = COALESCE(s.issuer_of_patient_id, '')"
)
_COUNT_STUDIES_OF_PATIENT = f"(SELECT COUNT(*) FROM studies x WHERE {_SAME_PATIENT})"
_COUNT_SERIES_OF_PATIENT = (
    f"(SELECT COUNT(*) FROM series y JOIN studies x ON x.study_uid = y.study_uid "
    f"WHERE {_SAME_PATIENT})"
)
_COUNT_INSTANCES_OF_PATIENT = (
    f"(SELECT COUNT(*) FROM instances y JOIN studies x ON x.study_uid = y.study_uid "
    f"WHERE {_SAME_PATIENT})"
)

_P, _ST, _SE, _IM = Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE

KEYS: tuple[Key, ...] = (
    Key("PatientName", _P, Match.PN, "s.patient_name"),
    Key("PatientID", _P, Match.TEXT, "s.patient_id", unique=True),
    Key("IssuerOfPatientID", _P, Match.TEXT, "s.issuer_of_patient_id"),
    Key("PatientBirthDate", _P, Match.DATE, "s.patient_birth_date"),
    Key("PatientSex", _P, Match.TEXT, "s.patient_sex"),
    Key("NumberOfPatientRelatedStudies", _P, Match.NONE, _COUNT_STUDIES_OF_PATIENT),
    Key("NumberOfPatientRelatedSeries", _P, Match.NONE, _COUNT_SERIES_OF_PATIENT),
    Key("NumberOfPatientRelatedInstances", _P, Match.NONE, _COUNT_INSTANCES_OF_PATIENT),
    Key("StudyInstanceUID", _ST, Match.UID, "s.study_uid", unique=True),
    Key("StudyDate", _ST, Match.DATE, "s.study_date"),
    Key("StudyTime", _ST, Match.TIME, "s.study_time"),
    Key("AccessionNumber", _ST, Match.TEXT, "s.accession_number"),
    Key("StudyID", _ST, Match.TEXT, "s.study_id"),
    Key("StudyDescription", _ST, Match.TEXT, "s.study_description"),
    Key("ReferringPhysicianName", _ST, Match.PN, "s.referring_physician"),
    Key("ModalitiesInStudy", _ST, Match.MODALITIES, _MODALITIES_OF_STUDY, multi=True),
    Key("NumberOfStudyRelatedSeries", _ST, Match.NONE, _COUNT_SERIES_OF_STUDY),
    Key("NumberOfStudyRelatedInstances", _ST, Match.NONE, _COUNT_INSTANCES_OF_STUDY),
    Key("SeriesInstanceUID", _SE, Match.UID, "se.series_uid", unique=True),
    Key("Modality", _SE, Match.TEXT, "se.modality"),
    Key("SeriesNumber", _SE, Match.NUMBER, "se.series_number"),
    Key("SeriesDescription", _SE, Match.TEXT, "se.series_description"),
    Key("ProtocolName", _SE, Match.TEXT, "se.protocol_name"),
    Key("SeriesDate", _SE, Match.DATE, "se.series_date"),
    Key("SeriesTime", _SE, Match.TIME, "se.series_time"),
    Key("BodyPartExamined", _SE, Match.TEXT, "se.body_part_examined"),
    Key("NumberOfSeriesRelatedInstances", _SE, Match.NONE, _COUNT_INSTANCES_OF_SERIES),
    Key("SOPInstanceUID", _IM, Match.UID, "i.sop_instance_uid", unique=True),
    Key("SOPClassUID", _IM, Match.UID, "i.sop_class_uid"),
    Key("InstanceNumber", _IM, Match.NUMBER, "i.instance_number"),
    Key("ContentDate", _IM, Match.DATE, "i.content_date"),
    Key("ContentTime", _IM, Match.TIME, "i.content_time"),
    Key("NumberOfFrames", _IM, Match.NUMBER, "i.number_of_frames"),
)
"""Every key we match or return, as listed in the conformance statement."""

DATE_TIME_PAIRS = (
    ("StudyDate", "StudyTime"),
    ("SeriesDate", "SeriesTime"),
    ("ContentDate", "ContentTime"),
)
"""Date and time keys matched as one date-time range when both are given (PS3.4 C.2.2.2.5)."""


@cache
def keys_by_tag() -> dict[int, Key]:
    """The supported keys by element tag."""
    return {key.tag: key for key in KEYS}


def key(keyword: str) -> Key:
    """A supported key by keyword."""
    for candidate in KEYS:
        if candidate.keyword == keyword:
            return candidate
    raise KeyError(keyword)


def key_level(model: Model, item: Key) -> Level:
    """The level a key belongs to in `model`: patient keys are study keys in Study Root."""
    if model is Model.STUDY_ROOT and item.level is Level.PATIENT:
        return Level.STUDY
    return item.level


def unique_keys_above(model: Model, level: Level) -> list[Key]:
    """The unique keys a hierarchical query at `level` must give, top down."""
    levels = LEVELS[model]
    above = levels[: levels.index(level)]
    return [k for k in KEYS if k.unique and k.level in above]


def in_scope(model: Model, level: Level, item: Key) -> bool:
    """True when `item` is a key of `level` or of a level above it in `model`."""
    levels = LEVELS[model]
    return levels.index(key_level(model, item)) <= levels.index(level)
