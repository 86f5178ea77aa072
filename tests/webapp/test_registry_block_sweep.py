"""The per-block sweep of a training job: stored with the head version, drawn on its page (an SVG chart
and a table of the same figures) and on the compare view, and said plainly when a head has none."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files import File
from django.test import Client, override_settings

from tests.fixtures import api_client
from tests.fixtures_registry import head_version_copy
from tests.webapp import head_version_row
from webapp.registry import services
from webapp.registry.charts import block_chart
from webapp.registry.models import HeadVersion, TrainingJob


def browser(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_it_measures_every_block_when_it_trains_a_head(
    active_head: HeadVersion, staff: User, engine  # type: ignore[no-untyped-def]
) -> None:
    backbone, cache = engine
    per_block = active_head.metrics["per_block"]
    assert [row["block"] for row in per_block] == list(range(backbone.num_blocks))
    assert [row["block"] for row in per_block if row["head_block"]] == active_head.blocks == [8]
    for row in per_block:
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["macro_f1"] <= 1.0 and row["auroc"] is None
    # The head's C on the head's folds: at the head's own block the sweep finds the head's accuracy.
    C = active_head.metrics["hyperparameters"]["C"]
    assert active_head.metrics["per_block_protocol"] == {"probe": "linear", "C": C}
    assert per_block[8]["accuracy"] == pytest.approx(active_head.metrics["accuracy"], abs=0.021)
    log = TrainingJob.objects.get(head_version=active_head).log
    assert "features of 50 images ready (blocks 0-11, the head's [8])" in log
    assert "block_sweep: a linear probe" in log and "accuracy by block:" in log and "the head's: block 8" in log
    # Every block came from the same forward pass and waits in the cache for the next training.
    sha256 = active_head.manifest[0]["sha256"]
    assert all(cache.get(sha256, backbone.identity, block) is not None for block in range(backbone.num_blocks))
    # API clients read the same figures.
    detail = api_client(staff).get(f"/api/v1/heads/{active_head.version}/").json()
    assert detail["metrics"]["per_block"] == per_block


# A class of one image is what this test is about: the minimum that training asks for is lowered for it.
@override_settings(TRAINING_MIN_REFERENCES=1)
def test_it_records_why_a_head_has_no_sweep(
    registry_references: dict[str, int], staff: User, synth_dir: Path, engine  # type: ignore[no-untyped-def]
) -> None:
    """A generator with a single reference image: nothing to cross-validate, at any block."""
    backbone, cache = engine
    generator = services.generator_create(actor=staff, name="Lonely", slug="lonely", family="gan")
    path = sorted((synth_dir / "tconv-s2").glob("*.png"))[0]
    with open(path, "rb") as handle:
        services.reference_image_create(
            generator=generator, upload=File(handle, name=path.name), uploaded_by=staff, enqueue=False
        )
    head = services.head_train_now(actor=staff, backbone=backbone, cache=cache)
    assert head.metrics["per_block"] is None and "two samples or more" in head.metrics["per_block_skipped"]
    page = browser(staff).get(f"/registry/heads/{head.version}/").content.decode()
    assert "Not measured for this head:" in page and 'data-testid="block-chart"' not in page


def test_it_draws_the_sweep_on_the_head_page_and_beside_the_active_head(
    active_head: HeadVersion, bob: User, staff: User
) -> None:
    """The head's page: a line per figure, the head's block marked, the same figures in a table. The heads
    page: the candidate's accuracy per block beside the active head's."""
    page = browser(bob).get(f"/registry/heads/{active_head.version}/").content.decode()
    chart = page[page.index('data-testid="block-chart"') : page.index("</figure>")]
    assert 'role="img" aria-labelledby="block-chart-title" aria-describedby="block-chart-desc"' in chart
    assert '<title id="block-chart-title">Accuracy and macro F1 per block</title>' in chart
    lowest_tick = re.findall(r'class="tick"[^>]*>([^<]*)<', chart)[0]
    assert lowest_tick != "0.0"  # the value axis spans the data, not 0 to 1
    description = re.search(r'<desc id="block-chart-desc">([^<]*)</desc>', chart)
    assert description is not None and "Blocks 0 to 11." in description.group(1)
    accuracy_8 = active_head.metrics["per_block"][8]["accuracy"]
    assert f"{accuracy_8:.3f} at block 8, the head&#x27;s" in description.group(1)
    assert chart.count('<polyline class="series') == 2 and chart.count('class="marker solid marked"') == 1
    assert chart.count('<rect class="band"') == 1 and ">head</text>" in chart
    table = page[page.index('data-testid="per-block-table"') :]
    table = table[: table.index("</table>")]
    assert table.count("<tr") == 1 + 12 and table.count('class="marked"') == 1
    assert "8 <strong>(this head)</strong>" in table and f"<td>{accuracy_8:.3f}</td>" in table

    # The compare view, candidate against the active head.
    head_version_copy(active_head, version=2)  # the same figures: a difference of zero at every block
    page = browser(staff).get("/registry/heads/").content.decode()
    assert 'data-testid="compare-block-chart"' in page
    assert '<title id="compare-block-chart-title">Accuracy per block, active head and candidate</title>' in page
    assert "Active v1: highest" in page and "Candidate v2: highest" in page
    table = page[page.index('data-testid="compare-per-block"') :]
    assert table[: table.index("</table>")].count("<tr") == 1 + 12 and "+0.000" in table

    HeadVersion.objects.filter(pk=active_head.pk).update(metrics={"accuracy": 0.5})  # trained before the sweep
    page = browser(staff).get("/registry/heads/").content.decode()
    assert 'data-testid="compare-block-chart"' not in page
    assert re.search(r"v1\s+was trained before figures per block were recorded: no comparison per block", page)


def test_it_says_plainly_when_a_head_was_trained_before_the_sweep(bob: User) -> None:
    head_version_row(1)  # the metrics of a head trained before this change: no "per_block"
    page = browser(bob).get("/registry/heads/1/").content.decode()
    assert "This head was trained before figures per block were recorded, so it has none." in page
    assert 'data-testid="block-chart"' not in page


def test_the_chart_spans_the_data_and_describes_itself() -> None:
    chart = block_chart(
        [("Accuracy", [(0, 0.52), (1, 0.58), (2, None), (3, 0.55)]), ("Macro F1", [(0, 0.5), (1, 0.57)])],
        marked_blocks=[3],
    )
    assert chart is not None
    assert [tick.label for tick in chart.y_ticks] == ["0.4", "0.5", "0.6"]
    assert [tick.label for tick in chart.x_ticks] == ["0", "1", "2", "3"]
    accuracy, f1 = chart.series
    assert [p.block for p in accuracy.points] == [0, 1, 3] and [p.marked for p in accuracy.points] == [0, 0, 1]
    assert accuracy.style == "solid" and f1.style == "dashed"
    # Higher values are drawn higher (SVG's y grows downwards), inside the plot area.
    assert chart.top <= accuracy.points[1].y < accuracy.points[0].y <= chart.bottom
    assert [band.block for band in chart.bands] == [3]
    assert chart.description == (
        "Blocks 0 to 3. Accuracy: highest 0.580 at block 1; 0.550 at block 3, the head's. "
        "Macro F1: highest 0.570 at block 1."
    )
    assert block_chart([("Accuracy", [(0, None)])], marked_blocks=[]) is None
    full = block_chart([("Accuracy", [(0, 0.0), (1, 1.0)])], marked_blocks=[])
    assert full is not None and [tick.label for tick in full.y_ticks] == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
