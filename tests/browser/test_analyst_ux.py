"""Issue #16 in a real Chromium, at 1280 and 390 pixels: the verdict card (real, known, unrecognised, low
confidence), the history (thumbnails, sorting, one decision filter, a selection added to a case and
exported, an empty state that leads to the upload page, no sideways scrolling on a phone), add-to-case on
the verdict page, the safe activation of a head, the site's 403 page on staff pages, the navigation's
aria-current, the audit log, and the offline API docs. Every request of every page is recorded: none may go
to another host."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.core.files import File
from playwright.sync_api import Page, ViewportSize, expect

from tests.browser import DESKTOP, PHONE, PageFactory, artifact_path, assert_accessible, log_in, screenshot
from webapp.cases.models import Case
from webapp.common.uploads import upload_validate
from webapp.registry.models import Generator, HeadVersion
from webapp.submissions.models import Submission
from webapp.submissions.services import verdict_store
from webapp.teams.models import Team

CLASSES = ["real", "bilinear-s1", "nearest-s1", "tconv-s1"]
VIEWPORTS = [pytest.param(DESKTOP, id="1280"), pytest.param(PHONE, id="390")]


@dataclass(frozen=True)
class Shown:
    """A submission and the verdict it was given, for the pages to show."""

    kind: str
    submission: Submission


def stored_submission(team: Team, user: User, path: Path, name: str) -> Submission:
    """A submission stored as an upload stores it, already done: its verdict is written by the test, so the
    worker has nothing to do with it."""
    with open(path, "rb") as handle:
        upload = upload_validate(uploaded_file=File(handle, name=name), name=name)
        submission = Submission(team=team, submitted_by=user, status=Submission.Status.DONE, metadata={})
        submission.describe_upload(upload)
        handle.seek(0)
        submission.image.save(f"{upload.sha256[:16]}-{name}", File(handle), save=False)
    submission.save()
    return submission


def judged(submission: Submission, head: HeadVersion, label: str, decision: str, score: float,
           probabilities: dict[str, float]) -> None:
    verdict_store(
        submission=submission, head_version=head, label=label, decision=decision, score=score, threshold=0.6,
        probabilities=probabilities, backbone=head.backbone, pretrained=head.pretrained, elapsed_ms=41.0,
    )


@pytest.fixture
def shown(bob: User, synth_dir: Path) -> list[Shown]:
    for slug, name in (("bilinear-s1", "Bilinear S1"), ("nearest-s1", "Nearest S1"), ("tconv-s1", "TConv S1")):
        Generator.objects.get_or_create(slug=slug, defaults={"name": name, "family": "gan"})
    head = HeadVersion.objects.create(
        version=1, status=HeadVersion.Status.ACTIVE, artifact="heads/ux-v1.npz", head_kind="linear",
        classes=CLASSES, blocks=[8], backbone="ViT-S-16/random-seed0", pretrained=False, threshold=0.6,
        metrics={"accuracy": 0.9, "macro_f1": 0.9, "auroc": 0.8},
    )
    team = bob.membership.team
    images = {c: sorted((synth_dir / c).glob("*.png")) for c in ("real", "bilinear-s1", "tconv-s2")}
    verdicts = [
        ("real", images["real"][-1], "real", "real", 0.93, {"real": 0.93, "bilinear-s1": 0.04, "nearest-s1": 0.02,
                                                            "tconv-s1": 0.01}),
        ("known", images["bilinear-s1"][-1], "bilinear-s1", "known_generator", 0.88,
         {"bilinear-s1": 0.88, "nearest-s1": 0.07, "real": 0.03, "tconv-s1": 0.02}),
        ("unknown", images["tconv-s2"][-1], "tconv-s1", "unknown_generator", 0.31,
         {"tconv-s1": 0.31, "real": 0.29, "bilinear-s1": 0.22, "nearest-s1": 0.18}),
        ("low-confidence", images["bilinear-s1"][-2], "nearest-s1", "known_generator", 0.62,
         {"nearest-s1": 0.52, "bilinear-s1": 0.44, "real": 0.03, "tconv-s1": 0.01}),
    ]
    made = []
    for kind, path, label, decision, score, probabilities in verdicts:
        # Two files called 0003.png: the history tells them apart by thumbnail, id and SHA-256.
        submission = stored_submission(team, bob, path, "0003.png" if kind in ("known", "unknown") else path.name)
        judged(submission, head, label, decision, score, probabilities)
        made.append(Shown(kind, submission))
    return made


def record_requests(page: Page) -> list[str]:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    return requests


def assert_same_host(requests: list[str], page: Page) -> None:
    here = urlsplit(page.url).netloc
    elsewhere = [url for url in requests if urlsplit(url).scheme in ("http", "https", "ws", "wss")
                 and urlsplit(url).netloc != here]
    assert requests and not elsewhere, f"requests to another host: {elsewhere}"


def assert_no_sideways_scroll(page: Page, where: str) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth")
    viewport = page.viewport_size
    assert viewport is not None and width <= viewport["width"], f"{where} scrolls sideways: {width} px"


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_the_analyst_reads_verdicts_and_gathers_images_into_a_case(
    new_page: PageFactory, viewport: ViewportSize, bob: User, charlie: User, shown: list[Shown]
) -> None:
    width = viewport["width"]
    case = Case.objects.create(team=bob.membership.team, title="Harbour fire", created_by=bob)
    page = new_page(viewport=viewport)
    requests = record_requests(page)
    log_in(page, "bob")

    # The verdict card of each kind of verdict.
    words = {
        "real": ("Real photograph", "high confidence", "Bilinear S1 (0.040)"),
        "known": ("Generated by Bilinear S1", "high confidence", "Nearest S1 (0.070)"),
        "unknown": ("Unrecognised source: matches neither real photographs nor a registered generator",
                    "high confidence", None),
        "low-confidence": ("Generated by Nearest S1", "low confidence", "Bilinear S1 (0.440)"),
    }
    for item in shown:
        headline, band, runner_up = words[item.kind]
        page.goto(f"/submissions/{item.submission.pk}/")
        card = page.get_by_test_id("verdict-card")
        expect(card.get_by_test_id("verdict-headline")).to_have_text(headline)
        expect(card.get_by_test_id("verdict-band")).to_have_text(band)
        if runner_up is None:
            expect(card.get_by_test_id("closest-known")).to_have_text("TConv S1 (0.310)")
            expect(card).not_to_contain_text("Synthetic")
        else:
            expect(card.get_by_test_id("runner-up")).to_have_text(runner_up)
        expect(card.get_by_test_id("verdict-score")).not_to_have_text(card.get_by_test_id("verdict-threshold")
                                                                       .inner_text())
        assert_accessible(page, f"verdict card ({item.kind})")
        card.scroll_into_view_if_needed()
        card.screenshot(path=str(artifact_path(f"verdict-card-{item.kind}-{width}")))
        assert_no_sideways_scroll(page, f"verdict page ({item.kind})")

    # Add to case from the verdict page.
    unknown = next(item.submission for item in shown if item.kind == "unknown")
    page.goto(f"/submissions/{unknown.pk}/")
    page.get_by_label("Add to case").select_option(label="Harbour fire")
    page.get_by_test_id("verdict-add-to-case").get_by_role("button", name="Add to case").click()
    expect(page.get_by_role("status").filter(has_text="1 image added to the case “Harbour fire”.")).to_be_visible()
    assert Submission.objects.get(pk=unknown.pk).case_id == case.pk

    # The history: thumbnails, one decision filter, sorting, no sideways scrolling.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="History").click()
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="History")).to_have_attribute(
        "aria-current", "page"
    )
    rows = page.get_by_test_id("submission-row")
    expect(rows).to_have_count(4)
    page.wait_for_function("() => [...document.querySelectorAll('img.thumb')].every((i) => i.complete"
                           " && i.naturalWidth > 0)")
    assert_no_sideways_scroll(page, "history")
    expect(page.get_by_label("Unknown generators only")).to_have_count(0)
    page.get_by_label("Decision").select_option(label="Unrecognised source")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Unrecognised source")
    page.get_by_label("Decision").select_option(label="Any")
    page.get_by_label("Generator").select_option(label="TConv S1")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("history-empty")).to_contain_text("No submission matches these filters")
    page.goto("/submissions/")
    page.get_by_role("columnheader", name="Score").get_by_role("link").click()
    expect(page.get_by_role("columnheader", name="Score")).to_have_attribute("aria-sort", "descending")
    expect(rows.first).to_contain_text("Real photograph")
    page.get_by_role("columnheader", name="Score").get_by_role("link").click()
    expect(page.get_by_role("columnheader", name="Score")).to_have_attribute("aria-sort", "ascending")
    expect(rows.first).to_contain_text("Unrecognised source")
    screenshot(page, f"history-{width}")
    assert_accessible(page, "history")

    # A selection: exported as CSV, then added to the case.
    real, known = (next(i.submission for i in shown if i.kind == kind) for kind in ("real", "known"))
    page.get_by_label(f"Select #{real.pk} ").check()
    page.get_by_label(f"Select #{known.pk} ").check()
    with page.expect_download() as download:
        page.get_by_test_id("export-selection").click()
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert sorted(int(row["id"]) for row in exported) == sorted([real.pk, known.pk])
    page.get_by_label("Add the selected to the case").select_option(label="Harbour fire")
    page.get_by_test_id("add-to-case").click()
    expect(page.get_by_role("status").filter(has_text="2 images added to the case")).to_be_visible()
    assert set(case.submissions.values_list("pk", flat=True)) == {real.pk, known.pk, unknown.pk}
    assert_same_host(requests, page)

    # An empty history leads to the upload page.
    other = new_page(viewport=viewport)
    other_requests = record_requests(other)
    log_in(other, "charlie")
    other.goto("/submissions/")
    empty = other.get_by_test_id("history-empty")
    expect(empty).to_contain_text("No images yet")
    assert_no_sideways_scroll(other, "empty history")
    assert_accessible(other, "empty history")
    empty.get_by_role("link", name="Upload images").click()
    expect(other).to_have_url(f"{urlsplit(other.url).scheme}://{urlsplit(other.url).netloc}/submissions/upload/")
    assert_same_host(other_requests, other)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_the_admin_switches_heads_safely_and_reads_the_audit_log(
    new_page: PageFactory, viewport: ViewportSize, alice: User, staff: User, shown: list[Shown]
) -> None:
    HeadVersion.objects.create(
        version=2, status=HeadVersion.Status.CANDIDATE, artifact="heads/ux-v2.npz", head_kind="linear",
        classes=CLASSES, blocks=[8], backbone="ViT-S-16/random-seed0", pretrained=False, threshold=0.55,
        metrics={"accuracy": 0.93, "macro_f1": 0.86, "auroc": 0.7},
    )
    width = viewport["width"]

    # A team admin who is not staff gets the site's 403 page on staff pages, not Django admin's login.
    member = new_page(viewport=viewport)
    member_requests = record_requests(member)
    log_in(member, "alice")
    for path in ("/audit/", "/workers/"):
        member.goto(path)
        expect(member.get_by_test_id("error-403")).to_contain_text("Only site staff may open this page.")
        assert "/django-admin/" not in member.url
    assert_accessible(member, "403 page")
    assert_same_host(member_requests, member)

    page = new_page(viewport=viewport)
    requests = record_requests(page)
    log_in(page, "staff")
    page.goto("/registry/heads/")
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Heads")).to_have_attribute(
        "aria-current", "page"
    )
    page.get_by_test_id("activate-candidate").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Activate head v2?")
    warning = page.get_by_test_id("activation-worse")
    expect(warning).to_contain_text("Worse than the active head on 2 metrics")
    expect(page.get_by_test_id("compare")).to_contain_text("-0.040")
    assert_no_sideways_scroll(page, "activation page")
    assert_accessible(page, "activation page")
    screenshot(page, f"head-activation-{width}")
    page.get_by_test_id("activate-confirm").click()
    expect(page.get_by_role("alert").filter(has_text="v2 is worse than the active v1 on 2 metrics")).to_be_visible()
    assert HeadVersion.objects.get(version=1).status == HeadVersion.Status.ACTIVE
    assert_accessible(page, "activation page with its error")
    page.get_by_label("activate v2 although it is worse on 2 metrics").check()
    page.get_by_test_id("activate-confirm").click()
    expect(page.get_by_role("status").filter(has_text="Head v2 is active.")).to_be_visible()
    assert HeadVersion.objects.get(version=2).status == HeadVersion.Status.ACTIVE

    # The audit log: filtered, linked, in words, exported.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    table = page.get_by_test_id("audit-table")
    page.get_by_label("Action").select_option("activate")
    page.get_by_role("button", name="Filter").click()
    expect(table.get_by_role("row")).to_have_count(2)
    row = table.get_by_role("row").nth(1)
    expect(row).to_contain_text("previous")
    expect(row.get_by_role("link")).to_have_attribute("href", "/registry/heads/2/")
    assert_no_sideways_scroll(page, "audit log")
    assert_accessible(page, "audit log")
    screenshot(page, f"audit-log-{width}")
    with page.expect_download() as download:
        page.get_by_test_id("audit-export").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [(r["actor"], r["action"]) for r in rows] == [("staff", "activate")]
    assert_same_host(requests, page)

    # The API docs render from the site's own static files.
    docs = new_page(viewport=viewport)
    docs_requests = record_requests(docs)
    docs.goto("/api/docs/")
    expect(docs.locator(".opblock").first).to_be_visible()
    assert_same_host(docs_requests, docs)
