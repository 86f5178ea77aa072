"""The analyst's day in a real browser: log in, open a case, drop 20 images on the upload page, watch them
all come back as verdicts without a reload, read one verdict, and find the image again in the history."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from attribution.images import sha256_of
from attribution.synth import DEFAULT_KNOWN, DEFAULT_UNKNOWN
from tests.browser import SOFTWARE_TAG, assert_accessible, drop_files, log_in, upload_images
from tests.fixtures import WorkerProcess
from webapp.cases.models import Case
from webapp.registry.models import HeadVersion
from webapp.submissions.models import Submission

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.redis]

VERDICT_TIMEOUT_MS = 150_000


def test_it_takes_a_case_from_a_dropped_batch_to_a_verdict_found_again_in_the_history(
    page: Page,
    alice: User,
    active_head: HeadVersion,
    browser_worker: WorkerProcess,
    synth_dir: Path,
    tmp_path: Path,
) -> None:
    classes = [*DEFAULT_KNOWN[:3], DEFAULT_UNKNOWN[0]]  # "real", two known generators, one unknown
    images = upload_images(synth_dir, tmp_path, classes, per_class=5)
    assert len(images) == 20

    log_in(page, "alice")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Cases").click()
    page.get_by_text("New case", exact=True).click()  # the <summary> opens the form
    page.get_by_label("Title").fill("Flood photos, 12 May")
    page.get_by_label("Reference").fill("DESK-0512")
    page.get_by_role("button", name="Create the case").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Flood photos, 12 May")
    case = Case.objects.get(title="Flood photos, 12 May")
    assert case.team == alice.membership.team and case.reference == "DESK-0512"

    page.get_by_role("link", name="Upload images to this case").click()
    expect(page.get_by_label("Open case", exact=True)).to_have_value(str(case.pk))
    expect(page.get_by_label("Add to an open case:")).to_be_checked()

    # From here on, everything happens in this one document: a reload would lose the marker.
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    page.evaluate("window.__sameDocument = true")

    drop_files(page, "#dropzone", images)
    expect(page.locator("#selection")).to_contain_text("20 files selected")
    page.get_by_role("button", name="Upload", exact=True).click()

    expect(page.locator("#count-done")).to_have_text("20", timeout=VERDICT_TIMEOUT_MS)
    for status in ("queued", "processing", "failed", "rejected"):
        expect(page.locator(f"#count-{status}")).to_have_text("0")
    progress = page.get_by_label("Analysed")
    assert progress.evaluate("bar => [bar.value, bar.max]") == [20, 20]
    rows = page.locator("#file-rows tr")
    expect(rows).to_have_count(20)
    expect(page.locator("#file-rows td.status-done a")).to_have_count(20)
    assert page.evaluate("window.__sameDocument") is True and navigations == []
    assert_accessible(page, "upload page with 20 verdicts")
    assert Submission.objects.filter(case=case, status="done").count() == 20

    # One verdict: the chart, the evidence and the metadata.
    chosen = images[7]
    row = rows.filter(has=page.get_by_role("rowheader", name=chosen.name, exact=True))
    row.get_by_role("link").click()
    page.wait_for_url("**/submissions/*/")
    expect(page.get_by_role("heading", level=1)).to_have_text(chosen.name)
    submission = Submission.objects.get(case=case, original_name=chosen.name)
    verdict = submission.verdicts.get()
    assert verdict.head_version_id == active_head.pk

    chart = page.get_by_test_id("probability-chart")
    expect(chart.get_by_role("listitem")).to_have_count(len(active_head.classes))
    percents = [float(text.rstrip("%")) for text in chart.locator(".value").all_inner_texts()]
    assert percents == sorted(percents, reverse=True) and abs(sum(percents) - 100) < 1
    bar_widths = chart.locator(".bar > span").evaluate_all("spans => spans.map(s => s.getBoundingClientRect().width)")
    assert bar_widths[0] > 0 and bar_widths == sorted(bar_widths, reverse=True)  # drawn, longest first

    evidence = page.get_by_test_id("evidence").get_by_role("img")
    assert evidence.count() >= 1
    for image in evidence.all():
        image.scroll_into_view_if_needed()
        expect(image).to_have_attribute("alt", re.compile(r"^Reference image of \S"))
        # Lazy images start loading once scrolled into view: wait for the load (or the error), not for a time.
        loaded = image.evaluate(
            """img => img.complete ? img.naturalWidth > 0 : new Promise(done => {
                img.addEventListener("load", () => done(img.naturalWidth > 0), {once: true});
                img.addEventListener("error", () => done(false), {once: true});
            })"""
        )
        assert loaded, "a reference image did not load"

    facts = page.get_by_role("region", name="File")
    expect(facts).to_contain_text(sha256_of(chosen))
    expect(facts.get_by_role("row", name="Software")).to_contain_text(SOFTWARE_TAG)
    expect(page.get_by_test_id("model-versions")).to_contain_text(f"v{active_head.version}")

    # The case's page counts the decisions, and links to a report that stands on its own.
    page.get_by_role("link", name=f"Case: {case.title}").click()
    summary = page.get_by_test_id("case-summary")
    counted = {
        key: int(summary.locator(f'.value[data-key="{key}"]').inner_text())
        for key in ("real", "known_generator", "unknown_generator")
    }
    assert sum(counted.values()) == 20 and counted[verdict.decision] >= 1
    drawn = summary.locator(".bar").evaluate_all(
        "bars => bars.map(b => b.firstElementChild.getBoundingClientRect().width / b.getBoundingClientRect().width)"
    )
    expected = [counted["real"], counted["known_generator"], counted["unknown_generator"], 0, 0]
    assert drawn == pytest.approx([n / 20 for n in expected], abs=0.01)  # each bar its share of the case
    report = page.request.get(page.get_by_role("link", name="Report (HTML)").get_attribute("href") or "")
    assert report.ok and chosen.name in report.text()

    # The next morning: find it again through the history's filters.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="History").click()
    expect(page.get_by_test_id("submission-row")).to_have_count(20)
    page.get_by_label("File name or SHA-256").fill(chosen.stem)
    page.get_by_label("Case", exact=True).select_option(label=case.title)
    page.get_by_label("Decision").select_option(verdict.decision)
    page.get_by_label("Submitted by").select_option("alice")
    page.get_by_label("File name or SHA-256").press("Enter")
    found = page.get_by_test_id("submission-row")
    expect(found).to_have_count(1)
    assert_accessible(page, "history, filtered")
    found.get_by_role("link", name=chosen.name).click()
    page.wait_for_url(f"**/submissions/{submission.pk}/")
    expect(page.get_by_test_id("verdict-summary")).to_be_visible()
