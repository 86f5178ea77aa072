"""The batch size a backbone runs fastest at: measured on the real (offline) backbone, chosen by the data."""

from __future__ import annotations

import pytest

from attribution.backbone import Backbone, load_backbone
from attribution.config import OFFLINE_BACKBONE
from attribution.tuning import BatchTiming, fastest_batch_size, pick_fastest, time_batch_size


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return load_backbone(OFFLINE_BACKBONE)


def test_it_times_real_forward_passes(backbone: Backbone) -> None:
    timing = time_batch_size(backbone, 2, [1], min_seconds=0.0)
    assert timing.batch_size == 2 and timing.passes >= 2 and timing.images_per_s > 0


def test_it_keeps_the_fastest_size_measured(backbone: Backbone) -> None:
    choice = fastest_batch_size(backbone, [1], candidates=[4, 1, 2], min_seconds=0.0, patience=5)
    assert [t.batch_size for t in choice.timings] == [1, 2, 4]  # in increasing order
    assert choice.batch_size == max(choice.timings, key=lambda t: t.images_per_s).batch_size
    assert choice.as_dict()["timings"][0]["batch_size"] == 1


def test_it_stops_once_larger_sizes_keep_getting_slower() -> None:
    # A device whose speed peaks at 8 images a pass: the sizes past the peak are not all timed.
    rates = {1: 10.0, 2: 18.0, 4: 30.0, 8: 41.0, 16: 35.0, 32: 30.0, 64: 20.0, 128: 10.0}
    timed: list[int] = []

    def measure(size: int) -> BatchTiming:
        timed.append(size)
        return BatchTiming(batch_size=size, images_per_s=rates[size], passes=2)

    choice = pick_fastest(list(rates), measure, patience=2)
    assert choice.batch_size == 8
    assert timed == [1, 2, 4, 8, 16, 32]  # two slower sizes in a row after the best: stop
    # A dip that recovers is followed while the patience lasts.
    rates.update({16: 35.0, 32: 50.0})
    assert pick_fastest(list(rates), measure, patience=2).batch_size == 32


def test_it_refuses_an_empty_list_of_sizes(backbone: Backbone) -> None:
    with pytest.raises(ValueError, match="no batch size"):
        fastest_batch_size(backbone, [1], candidates=[0, -1])
