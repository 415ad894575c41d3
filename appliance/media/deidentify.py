"""De-identification of a disc's data sets: PS3.15 Annex E Basic Application Level Confidentiality
Profile, with the Retain Full Dates, Retain UIDs, Retain Device Identity, Retain Patient
Characteristics options and our subset of Clean Descriptors.

One `Deidentifier` is built per burn job and called on every data set of the disc. UIDs and
pseudonyms come from a keyed hash of the original values, so every instance of a study gets the same
new Study Instance UID, references between objects keep pointing at the right (new) instances, and
one patient gets one pseudonym.

What is deliberately not done (see the job's warnings): pixel data is not cleaned (burned-in text
stays; `BurnedInAnnotation` "YES" is reported), encapsulated documents are not opened, and private
attributes are removed rather than kept as "safe".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydicom.datadict import get_entry
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from appliance.identity import IMPLEMENTATION_VERSION_NAME
from appliance.media.deident_table import (
    BASIC_PROFILE,
    CLEAN_DESCRIPTORS_TAGS,
    DEVICE_IDENTITY_TAGS,
    FULL_DATES_TAGS,
    KEEP_UID_TAGS,
    PATIENT_CHARACTERISTICS_TAGS,
    Action,
)
from appliance.media.identity_errors import IdentityTransformError
from appliance.media.phi_scrub import collect_identifiers, scrub_identifiers
from appliance.media.uid_remap import UidRemapper, check_secret, keyed_digest
from appliance.media.vr_checks import check_lo, check_pn, is_ascii

DCM = "DCM"
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
CLEAN_DESCRIPTORS_CODE = ("113105", "Clean Descriptors Option")
RETAIN_FULL_DATES_CODE = ("113106", "Retain Longitudinal Temporal Information Full Dates Option")
RETAIN_PATIENT_CHARACTERISTICS_CODE = ("113108", "Retain Patient Characteristics Option")
RETAIN_DEVICE_IDENTITY_CODE = ("113109", "Retain Device Identity Option")
RETAIN_UIDS_CODE = ("113110", "Retain UIDs Option")

DUMMY_TEXT = "ANONYMIZED"
DUMMY_DATE = "19000101"
DUMMY_TIME = "000000"
DUMMY_DATETIME = "19000101000000"

# Dummy code for "D" on a code sequence (e.g. Person Identification Code Sequence): a local
# coding scheme ("99" prefix, PS3.3 8.2) so it can never be mistaken for a real code.
DUMMY_CODE = ("ANON", "99KIOSK", "Anonymized")

_STRING_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_BYTES_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_NUMBER_STRING_VRS = frozenset({"IS", "DS"})
_BINARY_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})
_DATE_VRS = frozenset({"DA", "DT", "TM"})

# Elements of the File Meta that carry a vendor's private data, possibly identifying.
_META_PRIVATE = ("PrivateInformationCreatorUID", "PrivateInformation")


class WarningKind(StrEnum):
    """What the caller should tell the operator about a de-identified instance."""

    BURNED_IN_ANNOTATION = "burned-in-annotation"
    RECOGNIZABLE_VISUAL_FEATURES = "recognizable-visual-features"
    ENCAPSULATED_DOCUMENT = "encapsulated-document"


_WARNING_TEXT = {
    WarningKind.BURNED_IN_ANNOTATION: "the image says it has burned-in annotation, "
    "which de-identification does not remove",
    WarningKind.RECOGNIZABLE_VISUAL_FEATURES: "the image says it shows recognizable visual "
    "features (e.g. a face)",
    WarningKind.ENCAPSULATED_DOCUMENT: "the instance holds an encapsulated document "
    "whose content is not de-identified",
}


@dataclass(frozen=True, slots=True)
class DeidentWarning:
    """One instance the operator should check before the disc leaves the hospital."""

    kind: WarningKind
    sop_instance_uid: str
    """The new SOP Instance UID (UIDs are not patient data and may be shown and logged)."""

    @property
    def message(self) -> str:
        """Operator-readable text (no patient data)."""
        return f"instance {self.sop_instance_uid}: {_WARNING_TEXT[self.kind]}"


@dataclass(frozen=True, slots=True)
class DeidentOptions:
    """Which Annex E options to apply on top of the Basic Profile, and the pseudonyms to use."""

    retain_dates: bool = False
    """Retain Longitudinal Temporal Information with Full Dates Option (113106)."""
    retain_uids: bool = False
    """Retain UIDs Option (113110): keep every UID as it is."""
    retain_device_identity: bool = False
    """Retain Device Identity Option (113109): station name, serial numbers, detector IDs..."""
    retain_patient_characteristics: bool = False
    """Retain Patient Characteristics Option (113108): sex, age, size, weight..."""
    retain_descriptions: bool = False
    """Clean Descriptors Option (113105), our subset: study/series/protocol descriptions are kept
    with the patient's identifiers masked; comments and free-text histories are still removed."""
    pseudonym_name: str | None = None
    """Patient's Name for every data set; default: ANONYMOUS^<keyed hash of the Patient ID>."""
    pseudonym_id: str | None = None
    """Patient ID for every data set; default: ANON<keyed hash of the Patient ID>."""

    def __post_init__(self) -> None:
        # Pseudonyms are written into data sets whatever their character set: ASCII only.
        if self.pseudonym_name is not None:
            name = check_pn("pseudonym_name", self.pseudonym_name)
            if not name or not is_ascii(name):
                raise IdentityTransformError("pseudonym_name: must be non-empty plain ASCII")
            object.__setattr__(self, "pseudonym_name", name)
        if self.pseudonym_id is not None:
            pid = check_lo("pseudonym_id", self.pseudonym_id)
            if not pid or not is_ascii(pid):
                raise IdentityTransformError("pseudonym_id: must be non-empty plain ASCII")
            object.__setattr__(self, "pseudonym_id", pid)

    def method_codes(self) -> list[tuple[str, str]]:
        """(code value, code meaning) in scheme DCM for the profile and each option in use."""
        codes = [BASIC_PROFILE_CODE]
        if self.retain_descriptions:
            codes.append(CLEAN_DESCRIPTORS_CODE)
        if self.retain_dates:
            codes.append(RETAIN_FULL_DATES_CODE)
        if self.retain_patient_characteristics:
            codes.append(RETAIN_PATIENT_CHARACTERISTICS_CODE)
        if self.retain_device_identity:
            codes.append(RETAIN_DEVICE_IDENTITY_CODE)
        if self.retain_uids:
            codes.append(RETAIN_UIDS_CODE)
        return codes


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _is_code_sequence(seq: Sequence) -> bool:
    return len(seq) > 0 and all(
        any(k in item for k in ("CodeValue", "LongCodeValue", "URNCodeValue")) for item in seq
    )


def _dummy(vr: str) -> object:
    if vr == "DA":
        return DUMMY_DATE
    if vr == "TM":
        return DUMMY_TIME
    if vr == "DT":
        return DUMMY_DATETIME
    if vr in _STRING_VRS:
        return DUMMY_TEXT
    if vr in _NUMBER_STRING_VRS:
        return "0"
    if vr in _BINARY_NUMBER_VRS:
        return 0
    if vr == "AS":
        return "000Y"
    if vr in _BYTES_VRS:
        return b"\x00" * 8  # eight zero bytes fit every binary VR's length rules
    return None  # AT and anything unforeseen: empty rather than a value of the wrong type


def _removed_by_group(tag: BaseTag) -> bool:
    """Private groups, curves, overlays, command elements and tags no dictionary knows.

    Overlays go as whole groups: removing only Overlay Data and Comments (the table's rows)
    would leave a broken Overlay Plane module, and an overlay can hold burned-in text.
    Unknown public tags are removed because nothing says what they hold.
    """
    group = tag.group
    if group % 2 == 1 or group == 0x0000:
        return True
    if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:  # not 5200 (functional groups)
        return True
    if tag.element == 0x0000:  # group lengths: retired, recomputed by writers that want them
        return True
    try:
        get_entry(tag)
    except KeyError:
        return True
    return False


class Deidentifier:
    """Callable transform: de-identifies a data set in place and returns it.

    Use one object for all data sets of a job: `warnings` collects what the operator must check,
    and the keyed mappings make UIDs and pseudonyms consistent across instances (they would also
    be consistent across objects built with the same secret and uid_root).
    """

    def __init__(
        self, options: DeidentOptions, *, uid_root: str | None = None, secret: bytes
    ) -> None:
        self.options = options
        self._secret = check_secret(secret)
        self._uids = UidRemapper(secret, uid_root)
        self.warnings: list[DeidentWarning] = []
        """Instances the operator should check (new SOP Instance UIDs only, never PHI)."""

    def remap_uid(self, uid: str) -> str:
        """The new UID this job gives to an original UID (for manifests and references)."""
        return uid if self.options.retain_uids else self._uids(uid)

    def __call__(self, ds: Dataset) -> Dataset:
        """De-identify ds in place (no copy: pixel data can be large) and return it."""
        identifiers = collect_identifiers(ds)
        name, patient_id = self._pseudonyms(ds)
        self._clean(ds)
        # After the table: masks identifiers in whatever text the table and options kept.
        scrub_identifiers(ds, identifiers)
        ds.PatientName = name
        ds.PatientID = patient_id
        self._mark(ds)
        self._fix_file_meta(ds)
        self._collect_warnings(ds)
        return ds

    # --- the action table -------------------------------------------------------------------

    def _clean(self, ds: Dataset, seen: set[int] | None = None) -> None:
        # An item object reachable twice (built by a caller, not read from a file) must be
        # cleaned once: a second pass would map its already-new UIDs again.
        seen = set() if seen is None else seen
        if id(ds) in seen:
            return
        seen.add(id(ds))
        for tag in list(ds.keys()):
            if _removed_by_group(tag):
                del ds[tag]
                continue
            elem = ds[tag]
            self._apply(ds, elem, self._action(elem), seen)

    def _retained(self, tag: int) -> bool:
        o = self.options
        return (
            (o.retain_dates and tag in FULL_DATES_TAGS)
            or (o.retain_device_identity and tag in DEVICE_IDENTITY_TAGS)
            or (o.retain_patient_characteristics and tag in PATIENT_CHARACTERISTICS_TAGS)
            or (o.retain_descriptions and tag in CLEAN_DESCRIPTORS_TAGS)
        )

    def _action(self, elem: DataElement) -> Action:
        """The concrete action (D, Z, X, K or U) for one element."""
        tag = int(elem.tag)
        if elem.VR == "UI":
            # Every UID is an instance reference unless it names a class or syntax: this covers
            # the table's U rows and UIDs the table does not list (e.g. nested references).
            if self.options.retain_uids or tag in KEEP_UID_TAGS:
                return Action.KEEP
            return Action.UID
        rule = BASIC_PROFILE.get(tag)
        if rule is None:
            # PS3.15 E.1.1 note 4: treat dates and times not in the table by their VR.
            if elem.VR in _DATE_VRS and not self.options.retain_dates:
                rule = Action.REMOVE_ZERO_OR_DUMMY
            else:
                return Action.KEEP
        if self._retained(tag):
            return Action.KEEP
        return self._resolve(rule, elem)

    @staticmethod
    def _resolve(rule: Action, elem: DataElement) -> Action:
        """Resolve combined codes without knowing the IOD's attribute types.

        An empty element carries nothing and stays as is. A non-empty value gets a dummy where the
        code allows D (it might be Type 1), else an empty value (it might be Type 2): X is never
        chosen, as removal could break a Type 1 or 2 attribute.

        A non-empty sequence is cleaned instead (PS3.15 E.1.1: the profile applied to each item,
        and a dummy code for a code sequence that allows D): whether a sequence may be absent,
        empty or needs an item depends on the IOD and the nesting (Referenced Study Sequence is
        Type 3 with 1-n items in General Study but Type 2 inside Referenced Request Sequence),
        and a cleaned sequence is valid in every one of them.
        """
        if rule in (Action.DUMMY, Action.ZERO, Action.REMOVE, Action.KEEP, Action.UID):
            return rule
        if rule is Action.CLEAN or elem.is_empty:
            return Action.KEEP  # the scrubber cleans kept text; empty carries nothing
        if elem.VR == "SQ":
            if "D" in rule.value and _is_code_sequence(elem.value):
                return Action.DUMMY
            return Action.KEEP  # K on a sequence recurses: table inside, UIDs replaced
        return Action.DUMMY if "D" in rule.value else Action.ZERO

    def _apply(self, ds: Dataset, elem: DataElement, action: Action, seen: set[int]) -> None:
        if action is Action.REMOVE:
            del ds[elem.tag]
        elif action is Action.ZERO:
            elem.value = Sequence() if elem.VR == "SQ" else None
        elif action is Action.UID:
            self._replace_uids(elem)
        elif elem.VR == "SQ":
            if action is Action.DUMMY and _is_code_sequence(elem.value):
                elem.value = Sequence([_code_item(*DUMMY_CODE)])
            else:
                # K and D on a sequence: apply the table to every item (PS3.15 E.1.1).
                for item in elem.value:
                    self._clean(item, seen)
        elif action is Action.DUMMY:
            elem.value = _dummy(elem.VR)

    def _replace_uids(self, elem: DataElement) -> None:
        value = elem.value
        if isinstance(value, MultiValue | list):
            elem.value = [self._uids(str(v)) for v in value]
        elif value:
            elem.value = self._uids(str(value))

    # --- pseudonyms, markers, file meta, warnings ---------------------------------------------

    def _pseudonyms(self, ds: Dataset) -> tuple[str, str]:
        original_id = str(ds.get("PatientID", "") or "").strip()
        # Without an ID the name is the only thing that tells patients apart on one disc.
        key = original_id or str(ds.get("PatientName", "") or "").strip()
        token = keyed_digest(self._secret, b"patient", key).hex().upper()
        name = self.options.pseudonym_name or f"ANONYMOUS^{token[:8]}"
        patient_id = self.options.pseudonym_id or f"ANON{token[:16]}"
        return name, patient_id

    def _mark(self, ds: Dataset) -> None:
        ds.PatientIdentityRemoved = "YES"
        codes = self.options.method_codes()
        methods = [str(v) for v in _as_list(ds.get("DeidentificationMethod"))]
        for _, meaning in codes:
            if meaning not in methods:
                methods.append(meaning)
        fixed = self.options.pseudonym_id or self.options.pseudonym_name
        how = "operator pseudonym" if fixed else "keyed-hash pseudonym"
        note = f"{IMPLEMENTATION_VERSION_NAME}: Patient Name/ID: {how}"
        if note not in methods:
            methods.append(note)
        ds.DeidentificationMethod = methods if len(methods) > 1 else methods[0]
        # Earlier de-identifications stay listed; ours are added once.
        items = list(ds.get("DeidentificationMethodCodeSequence") or [])
        present = {
            (str(i.get("CodingSchemeDesignator", "")), str(i.get("CodeValue", ""))) for i in items
        }
        for value, meaning in codes:
            if (DCM, value) not in present:
                items.append(_code_item(value, DCM, meaning))
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        if not self.options.retain_dates:
            ds.LongitudinalTemporalInformationModified = "REMOVED"
        elif ds.get("LongitudinalTemporalInformationModified") not in ("MODIFIED", "REMOVED"):
            # An earlier pass that changed dates keeps its word: we cannot undo it.
            ds.LongitudinalTemporalInformationModified = "UNMODIFIED"

    def _fix_file_meta(self, ds: Dataset) -> None:
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            if "SOPInstanceUID" in ds:
                meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            for keyword in _META_PRIVATE:
                if keyword in meta:
                    delattr(meta, keyword)
        if isinstance(ds, FileDataset) and ds.preamble is not None:
            # PS3.15 E.1.1 step 7: the preamble may hold anything (e.g. a TIFF header).
            ds.preamble = b"\x00" * 128

    def _collect_warnings(self, ds: Dataset) -> None:
        sop = str(ds.get("SOPInstanceUID", "") or "")
        if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
            self.warnings.append(DeidentWarning(WarningKind.BURNED_IN_ANNOTATION, sop))
        if str(ds.get("RecognizableVisualFeatures", "")).upper() == "YES":
            self.warnings.append(DeidentWarning(WarningKind.RECOGNIZABLE_VISUAL_FEATURES, sop))
        if "EncapsulatedDocument" in ds:
            self.warnings.append(DeidentWarning(WarningKind.ENCAPSULATED_DOCUMENT, sop))

    @property
    def burned_in_uids(self) -> list[str]:
        """New SOP Instance UIDs of instances flagged with burned-in annotation."""
        return [
            w.sop_instance_uid for w in self.warnings if w.kind is WarningKind.BURNED_IN_ANNOTATION
        ]


def _as_list(value: object) -> list[object]:
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return list(value)
    return [value]
