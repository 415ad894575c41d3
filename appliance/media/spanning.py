"""Split a job across discs: whole studies where they fit, then whole series, then instances.

First-fit in the order given (studies, series and instances stay in their order), so a patient's
studies stay together and a reader finds series complete on one disc whenever that is possible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby

from appliance.media.errors import MediaError


@dataclass(frozen=True, slots=True)
class SpanItem:
    """One instance to place: its study, its series and its size on disc."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    size: int


@dataclass(slots=True)
class DiscPlan:
    """The instances of one disc."""

    items: list[SpanItem] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Bytes of the instances on this disc."""
        return sum(i.size for i in self.items)


class InstanceTooLargeError(MediaError):
    """One instance alone does not fit on the medium."""


def _groups(items: Sequence[SpanItem], key: str) -> list[list[SpanItem]]:
    return [list(g) for _, g in groupby(items, key=lambda i: getattr(i, key))]


def plan_discs(items: Sequence[SpanItem], capacity: int) -> list[DiscPlan]:
    """Assign instances to discs of `capacity` bytes each (instance sizes must include their
    own overhead; the caller keeps a margin for DICOMDIR and README)."""
    if capacity <= 0:
        raise ValueError("capacity must be positive")
    discs: list[DiscPlan] = [DiscPlan()]

    def room() -> int:
        return capacity - discs[-1].size

    def place(group: list[SpanItem]) -> None:
        size = sum(i.size for i in group)
        if size <= room():
            discs[-1].items.extend(group)
        elif size <= capacity:
            discs.append(DiscPlan(list(group)))
        else:
            raise AssertionError("group larger than a disc reached place()")

    for study in _groups(items, "study_uid"):
        if sum(i.size for i in study) <= capacity:
            place(study)
            continue
        for series in _groups(study, "series_uid"):
            if sum(i.size for i in series) <= capacity:
                place(series)
                continue
            for item in series:
                if item.size > capacity:
                    raise InstanceTooLargeError(
                        f"instance {item.sop_instance_uid} ({item.size} bytes) is larger than "
                        f"the medium ({capacity} bytes); choose a larger medium"
                    )
                place([item])
    return [d for d in discs if d.items]
