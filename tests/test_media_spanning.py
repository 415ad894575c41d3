"""Spanning: studies, then series, then instances; every instance on exactly one disc."""

from __future__ import annotations

import pytest

from appliance.media.spanning import InstanceTooLargeError, SpanItem, plan_discs


def _items(layout: dict[str, dict[str, list[int]]]) -> list[SpanItem]:
    return [
        SpanItem(study, series, f"{series}.{n}", size)
        for study, series_map in layout.items()
        for series, sizes in series_map.items()
        for n, size in enumerate(sizes)
    ]


def test_everything_on_one_disc_when_it_fits() -> None:
    items = _items({"1": {"1.1": [10, 10], "1.2": [5]}, "2": {"2.1": [20]}})
    (disc,) = plan_discs(items, 100)
    assert disc.items == items


def test_whole_studies_stay_together() -> None:
    items = _items({"1": {"1.1": [40]}, "2": {"2.1": [30, 40]}, "3": {"3.1": [20]}})
    discs = plan_discs(items, 100)
    # study 2 (70) does not fit beside study 1 (40): it starts disc 2, where study 3 joins it
    assert [[i.study_uid for i in d.items] for d in discs] == [["1"], ["2", "2", "3"]]


def test_large_study_splits_at_series_then_instances() -> None:
    items = _items({"1": {"1.1": [30, 30], "1.2": [60], "1.3": [50, 50, 50]}})
    discs = plan_discs(items, 100)
    placed = [i for d in discs for i in d.items]
    assert placed == items  # order kept, nothing lost or doubled
    assert all(d.size <= 100 for d in discs)
    # series 1.1 and 1.2 fit a disc each when whole; 1.3 (150) had to be split by instance
    assert {i.series_uid for i in discs[0].items} == {"1.1"}
    assert {i.series_uid for i in discs[1].items} == {"1.2"}
    assert len(discs) == 4


def test_instance_larger_than_disc_is_refused() -> None:
    with pytest.raises(InstanceTooLargeError, match="larger than the medium"):
        plan_discs(_items({"1": {"1.1": [10, 200]}}), 100)
