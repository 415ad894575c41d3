"""The change itself, on a decoded data set: UID plan, identity, and the UID checks around them.

Shared by the two ways `rewrite_instance` encodes its output: the header path decodes the whole
header and applies this to it; the splice path (`rewrite_fast`) applies it to a small data set
holding only the elements it touches. Both must make exactly the same change, so it lives here.
"""

from __future__ import annotations

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from appliance.errors import InvalidUIDError
from appliance.importer.rewrite_errors import RewriteError
from appliance.importer.uid_plan import UidPlan, remap_uids
from appliance.media.identity_errors import IdentityTransformError
from appliance.media.reidentify import Reidentifier
from appliance.store.layout import validate_uid

KEEP_UIDS_BOUNDARY = 0x04010000
"""First tag after every attribute the identity changes (patient 0010, request 0040 and 0032,
Specific Character Set and Instance Coercion DateTime 0008, Original Attributes 0400): with UIDs
kept, elements from here on are copied undecoded (functional groups, overlays, pixel data)."""

UID_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
"""The UIDs every rewritten instance must have, in the order `check_uids` returns them."""


def check_uids(ds: Dataset, name: str, where: str) -> tuple[str, str, str, str]:
    """SOP Class, SOP Instance, Study and Series Instance UIDs, each a valid UID; RewriteError
    (naming the file and `where`) if one is missing or invalid."""
    found = []
    for keyword in UID_KEYWORDS:
        try:
            found.append(validate_uid(ds.get(keyword), keyword))
        except InvalidUIDError as exc:
            raise RewriteError(f"{name}: {exc} {where}") from None
    return found[0], found[1], found[2], found[3]


def apply_identity(
    ds: Dataset, reidentifier: Reidentifier | None, plan: UidPlan
) -> tuple[str, ...]:
    """Apply the UID plan and the identity to ds in place; the keywords of what changed.

    RewriteError if the identity cannot be applied (its message holds no patient data).
    """
    charset = ds.get("SpecificCharacterSet")
    history = ds.get("OriginalAttributesSequence")
    recorded = len(history) if isinstance(history, Sequence) else 0
    if reidentifier is None:
        return ()
    if plan.renames and reidentifier.switches_to_utf8(ds):
        # Copies of changed sequences are taken before the switch: decode them with the
        # character set they were written in.
        ds.walk(lambda _ds, _elem: None)
    try:
        previous = remap_uids(ds, plan)
        reidentifier(ds, also_modified=previous)
    except IdentityTransformError as exc:
        raise RewriteError(str(exc)) from None
    history = ds.get("OriginalAttributesSequence")
    if not isinstance(history, Sequence) or len(history) == recorded:
        return ()
    changed: list[str] = []
    for old in history[-1].ModifiedAttributesSequence[0]:
        new = ds.get(old.tag)
        if old.VR != "SQ" and _text(new) == _text(old):
            continue  # recorded for context only (the issuer of a replaced Patient ID)
        changed.append(keyword_for_tag(old.tag) or str(old.tag))
    if ds.get("SpecificCharacterSet") != charset:
        changed.append("SpecificCharacterSet")
    changed += ["InstanceCoercionDateTime", "OriginalAttributesSequence"]
    return tuple(sorted(set(changed)))


def _text(elem: DataElement | None) -> str:
    """An element's value as text; absent and empty are the same."""
    return "" if elem is None or elem.value is None else str(elem.value)
