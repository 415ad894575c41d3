"""New UIDs for an import, applied consistently to every instance and every reference.

The clerk may ask for new UIDs (e.g. the PACS already holds the disc's study under another
patient). Which UIDs are remapped: the Study, Series and SOP Instance UIDs and the Frame of
Reference UID of every instance of the import (`IDENTIFYING_UIDS`). The Frame of Reference is
included because new UIDs mean a new, independent copy: keeping it would tie the copy's images
spatially to the originals (possibly filed under another patient), and registrations, RT
structure sets or segmentations on the disc refer to it (Referenced Frame of Reference UID),
which the rule below keeps consistent anyway.

The rule for references: any UI element, at any depth of sequences, whose value is one of the
remapped originals is replaced by the same new UID (Referenced SOP Instance UID in a KOS's
evidence or content, a presentation state's Referenced Series Sequence, Source Image Sequence, a
Referenced Frame of Reference UID...). Every other UID (SOP Class UIDs, transfer syntaxes, coding
schemes, references to objects not on the disc) is left alone: only what the import itself
carries is renamed, so a reference to a prior study already in the PACS keeps resolving.

The new UIDs come from `UidRemapper` keyed with a per-job secret: the same job re-run gives the
same UIDs, so forwarding it again is idempotent at the destination.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from appliance.media.uid_remap import UidRemapper

IDENTIFYING_UIDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
)
"""Top-level UIDs of each instance that a plan with new UIDs renames."""


def collect_uids(ds: Dataset) -> set[str]:
    """The identifying UIDs of one instance (its header is enough): feed every instance of the
    import into `UidPlan.new_uids`."""
    found: set[str] = set()
    for keyword in IDENTIFYING_UIDS:
        value = ds.get(keyword)
        if isinstance(value, str) and value.strip("\x00 "):
            found.add(value.strip("\x00 "))
    return found


@dataclass(frozen=True, slots=True)
class UidPlan:
    """Keep every UID (the default), or rename the import's own UIDs consistently."""

    remapper: UidRemapper | None = None
    """Maps an original UID to its new one; None keeps all UIDs."""
    originals: frozenset[str] = frozenset()
    """The UIDs to rename: the identifying UIDs of every instance of the import."""

    @classmethod
    def keep(cls) -> UidPlan:
        """Every UID stays as it is on the disc."""
        return cls()

    @classmethod
    def new_uids(
        cls, secret: bytes, originals: Iterable[str], uid_root: str | None = None
    ) -> UidPlan:
        """Rename `originals` (see `collect_uids`) under the job's secret (>= 16 bytes), as
        `2.25.<uuid>` or under `uid_root` if given."""
        return cls(UidRemapper(secret, uid_root), frozenset(originals))

    @property
    def renames(self) -> bool:
        """True if this plan changes UIDs."""
        return self.remapper is not None and bool(self.originals)

    def new_uid(self, uid: str) -> str:
        """The UID to write for `uid` (itself unless it is one of the originals)."""
        original = uid.strip("\x00 ")
        if self.remapper is None or original not in self.originals:
            return uid
        return self.remapper(original)

    def mentions(self, data: bytes) -> bool:
        """True if raw encoded bytes contain one of the originals (a conservative test for
        bytes we do not decode: a hit may be a longer UID that starts the same way)."""
        return self.renames and any(uid.encode("ascii") in data for uid in self.originals)


def remap_uids(ds: Dataset, plan: UidPlan) -> list[DataElement]:
    """Rename every UI value of ds (recursively) that the plan renames, in place.

    Returns the top-level UI elements that changed (the instance's own Study, Series, SOP
    Instance and Frame of Reference UIDs), as they were before, for Original Attributes Sequence.
    References inside sequences are renamed but not recorded there: each old reference is the
    recorded old UID of the instance it points to, so nothing is lost, while a copy of whole
    reference trees (a KOS's evidence and content, an SR's content) would double such objects
    and leave stale references in them that validators (dciodvfy) and archives that index
    references follow to instances that no longer exist under those UIDs.
    """
    if not plan.renames:
        return []
    previous: list[DataElement] = []
    for tag in list(ds.keys()):
        if not _mentions(ds, tag, plan):
            continue
        if _vr(ds, tag) == "UI":
            previous.append(copy.deepcopy(ds[tag]))
        _rename(ds, tag, plan)
    return previous


def _vr(ds: Dataset, tag: BaseTag) -> str | None:
    """The element's VR without decoding its value; None if unknown (implicit VR private)."""
    vr = ds.get_item(tag).VR
    if vr is not None:
        return str(vr)
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None


def _values(elem: DataElement) -> list[str]:
    value = elem.value
    if isinstance(value, MultiValue | list):
        return [str(v) for v in value]
    return [str(value)] if value is not None else []


def _mentions(ds: Dataset, tag: BaseTag, plan: UidPlan) -> bool:
    vr = _vr(ds, tag)
    if vr == "UI":
        return any(v.strip("\x00 ") in plan.originals for v in _values(ds[tag]))
    if vr == "SQ":
        # Iterating a Dataset yields decoded elements; its keys leave raw values undecoded.
        return any(
            _mentions(item, t, plan)
            for item in ds[tag].value
            for t in item.keys()  # noqa: SIM118
        )
    return False


def _rename(ds: Dataset, tag: BaseTag, plan: UidPlan) -> None:
    vr = _vr(ds, tag)
    if vr == "UI":
        elem = ds[tag]
        new = [plan.new_uid(v) for v in _values(elem)]
        if new:
            elem.value = new[0] if len(new) == 1 else new
    elif vr == "SQ":
        for item in ds[tag].value:
            for inner in list(item.keys()):
                _rename(item, inner, plan)
