"""A registry admin in a real browser: register a generator, upload its references, train a head on the
worker while the job's page follows it, read the new head's page (per-class recall, confusion matrix,
accuracy per block), compare the candidate with the active head, activate it, roll back."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from attribution.synth import DEFAULT_UNKNOWN
from tests.browser import assert_accessible, log_in, screenshot, upload_images
from tests.fixtures import WorkerProcess
from webapp.audit.models import AuditEvent
from webapp.registry.models import Generator, HeadVersion, TrainingJob

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.redis]

NEW_SLUG = DEFAULT_UNKNOWN[2]  # bilinear-s2: unknown to the active head until this test registers it
TRAINING_TIMEOUT_MS = 150_000


def record_changes(page: Page) -> None:
    """From now on, every change the page makes to the job's status and percent, in `window.__seen`."""
    page.evaluate(
        """() => {
            window.__seen = [];
            const record = () => window.__seen.push([
                document.getElementById("job-status").textContent,
                Number(document.getElementById("job-percent").textContent)]);
            const observer = new MutationObserver(record);
            for (const id of ["job-status", "job-percent"]) {
                observer.observe(document.getElementById(id), { childList: true, characterData: true, subtree: true });
            }
        }"""
    )


def confirm_activation(page: Page, *, version: int) -> None:
    """The confirmation page of an activation: the metric differences, and the second confirmation that a
    head worse than the active one is wanted (the trained candidate may be worse on a metric or not)."""
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"v{version}?")
    expect(page.get_by_test_id("compare")).to_be_visible()
    assert_accessible(page, f"activation page of v{version}")
    if page.get_by_test_id("activation-worse").count():
        page.get_by_label(f"activate v{version} although it is worse").check()
    page.get_by_test_id("activate-confirm").click()


def test_it_registers_a_generator_trains_compares_activates_and_rolls_back(
    page: Page,
    staff: User,
    active_head: HeadVersion,
    browser_worker: WorkerProcess,
    synth_dir: Path,
    tmp_path: Path,
) -> None:
    references = upload_images(synth_dir, tmp_path, [NEW_SLUG], per_class=10, start=0)
    log_in(page, "staff", next_url="/registry/")

    page.get_by_role("link", name="Add a generator").click()
    page.get_by_label("Name").fill("Bilinear s2")
    page.get_by_label("Slug").fill(NEW_SLUG)
    page.get_by_label("Family").select_option(label="GAN")
    page.get_by_label("Release").fill("2026-05")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Bilinear s2")
    expect(page.get_by_test_id("reference-count")).to_have_text("0")

    page.get_by_role("region", name="Add reference images").get_by_label("Reference images").set_input_files(references)
    page.get_by_role("button", name="Upload").click()
    results = page.get_by_test_id("upload-results")
    expect(results.locator("tbody tr")).to_have_count(10)
    expect(results.get_by_text("Added", exact=True)).to_have_count(10)
    expect(page.get_by_test_id("reference-count")).to_have_text("10")
    gallery = page.get_by_test_id("gallery").get_by_role("img")
    expect(gallery).to_have_count(10)
    assert Generator.objects.get(slug=NEW_SLUG).references.count() == 10
    assert_accessible(page, "generator page with the upload's results")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Heads").click()
    # The worker holds the job before it starts until the page watches it: however fast the training, the
    # page follows it from the start.
    browser_worker.gate.close()
    try:
        page.get_by_role("button", name="Train a new head").click()
        page.wait_for_url("**/registry/training-jobs/*/")
        job = TrainingJob.objects.get(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]))
        held_file, held_ids = browser_worker.gate.wait_held("training")
        assert held_ids == [job.pk]
        # What the server drew, then every change the page makes to it while it polls the job.
        first = page.locator("#job-status").inner_text()
        record_changes(page)
        browser_worker.gate.release(held_file)
        expect(page.locator("#job-status")).to_have_text("Done", timeout=TRAINING_TIMEOUT_MS)
    finally:
        browser_worker.gate.open()
    assert first == "Queued"
    seen = page.evaluate("window.__seen")
    assert seen and seen[-1] == ["Done", 100], seen
    percents = [percent for _, percent in seen]
    assert percents == sorted(percents), f"progress went backwards: {seen}"
    expect(page.get_by_role("progressbar", name="Training progress")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("#job-log")).to_contain_text("done")
    job.refresh_from_db()
    candidate = job.head_version
    assert job.status == "done" and candidate is not None and candidate.version == 2
    assert NEW_SLUG in candidate.classes and candidate.status == HeadVersion.Status.CANDIDATE

    # The head's own page: its pictures (per-class recall, confusion matrix, accuracy per block).
    page.locator("#job-head-link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Head v2")
    recall = page.get_by_test_id("recall-chart")
    expect(recall.get_by_role("listitem")).to_have_count(len(candidate.classes))
    confusion = page.get_by_test_id("confusion")
    expect(confusion.locator("tbody tr")).to_have_count(len(candidate.classes))
    # Accuracy per block, the paper's key figure: a line per figure, the head's block marked, and the
    # same numbers in a table.
    per_block = candidate.metrics["per_block"]
    expect(page.get_by_role("img", name="Accuracy and macro F1 per block")).to_be_visible()
    chart = page.get_by_test_id("block-chart")
    expect(chart.locator("polyline")).to_have_count(2)
    expect(chart.locator("circle.marker.marked")).to_have_count(2)  # the head's block on each line
    page.get_by_text("The figures per block").click()
    figures = page.get_by_test_id("per-block-table")
    expect(figures.locator("tbody tr")).to_have_count(len(per_block))
    expect(figures.get_by_role("row", name="(this head)")).to_contain_text(f"{per_block[8]['accuracy']:.3f}")
    page.get_by_role("region", name="Accuracy per block").scroll_into_view_if_needed()
    screenshot(page, "registry-admin-head-version-per-block")
    assert_accessible(page, "head version page with its per-block chart")

    # Compare the candidate with the active head, activate it, then roll back.
    page.get_by_role("link", name="Heads").first.click()
    compare = page.get_by_test_id("compare")
    expect(compare.get_by_role("columnheader", name="Active (v1)")).to_be_visible()
    expect(compare.get_by_role("columnheader", name="Candidate (v2)")).to_be_visible()
    accuracy = compare.get_by_role("row", name="Accuracy (cross-validated)").get_by_role("cell")
    expect(accuracy.nth(0)).to_have_text(f"{active_head.metrics['accuracy']:.3f}")
    expect(accuracy.nth(1)).to_have_text(f"{candidate.metrics['accuracy']:.3f}")
    expect(page.get_by_role("img", name="Accuracy per block, active head and candidate")).to_be_visible()
    expect(page.get_by_test_id("compare-block-chart").locator("polyline")).to_have_count(2)

    page.get_by_test_id("activate-candidate").click()
    confirm_activation(page, version=2)
    expect(page.get_by_role("status").filter(has_text="Head v2 is active.")).to_be_visible()
    heads = page.get_by_test_id("heads")
    expect(heads.get_by_role("row", name="v2").get_by_text("Active", exact=True)).to_be_visible()
    assert HeadVersion.objects.get(version=2).status == HeadVersion.Status.ACTIVE

    heads.get_by_role("link", name="Roll back to v1").click()
    confirm_activation(page, version=1)
    expect(page.get_by_role("status").filter(has_text="Head v1 is active again (rollback).")).to_be_visible()
    expect(page.get_by_test_id("heads").get_by_role("row", name="v1").get_by_text("Active", exact=True)).to_be_visible()
    assert dict(HeadVersion.objects.values_list("version", "status")) == {1: "active", 2: "retired"}
    assert_accessible(page, "heads page after a rollback")
    audited = AuditEvent.objects.filter(action__in=["activate", "rollback"], actor=staff).order_by("id")
    assert list(audited.values_list("action", "detail__version"))[-2:] == [("activate", 2), ("rollback", 1)]
