"""Storage SOP classes we accept: the reference list, private classes included."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import _STORAGE_CLASSES, register_uid, uid_to_service_class

VERIFICATION = "1.2.840.10008.1.1"


@dataclass(frozen=True, slots=True)
class SopClass:
    """A storage SOP class and its name."""

    uid: str
    name: str


@cache
def reference_sop_classes() -> tuple[SopClass, ...]:
    """The reference list (spec/storage-sop-classes.csv), private and retired classes included."""
    text = resources.files("appliance.dicom").joinpath("data/storage-sop-classes.csv").read_text()
    return tuple(
        SopClass(row["sop_class_uid"], row["name"]) for row in csv.DictReader(text.splitlines())
    )


def _split_camel(keyword: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", keyword)


@cache
def storage_sop_classes() -> tuple[SopClass, ...]:
    """Every storage SOP class we accept: the reference list, then every further standard
    storage class pynetdicom knows (segmentation, newer SR, whole-slide, ...)."""
    classes = list(reference_sop_classes())
    seen = {c.uid for c in classes}
    for keyword, uid in _STORAGE_CLASSES.items():
        if uid not in seen:
            seen.add(uid)
            classes.append(SopClass(uid, _split_camel(keyword)))
    return tuple(classes)


def _keyword(name: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", name)
    keyword = "Kiosk" + "".join(w[:1].upper() + w[1:] for w in words)
    return keyword


def register_storage_classes() -> None:
    """Teach pynetdicom that private and retired classes it does not know are storage classes.

    Without this, pynetdicom routes their C-STORE requests to no service (and fails them).
    Idempotent.
    """
    for sop in storage_sop_classes():
        if not issubclass(uid_to_service_class(sop.uid), StorageServiceClass):
            register_uid(sop.uid, _keyword(sop.name), StorageServiceClass)
