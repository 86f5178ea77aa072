"""Accessibility in a real browser: axe-core on every main page at desktop and phone widths (no serious or
critical violation, no page wider than a phone), and an upload done with the keyboard alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from tests.browser import DESKTOP, PHONE, PageFactory, assert_accessible, log_in, screenshot, upload_images
from tests.fixtures import WorkerProcess, wait_for
from tests.webapp import uploaded
from webapp.cases.services import case_create
from webapp.registry.models import HeadVersion, TrainingJob
from webapp.registry.services import head_train_now
from webapp.submissions.models import Submission
from webapp.submissions.services import submission_create

if TYPE_CHECKING:
    from attribution.backbone import Backbone
    from attribution.features import FeatureCache

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.redis]


@dataclass(frozen=True)
class Site:
    """What the pages show: a case with verdicts, a finished training job and its candidate head."""

    case_id: int
    submission_id: int
    candidate_version: int
    training_job_id: int


@pytest.fixture
def site(
    alice: User,
    staff: User,
    active_head: HeadVersion,
    engine: tuple[Backbone, FeatureCache],
    browser_worker: WorkerProcess,
    synth_dir: Path,
    tmp_path: Path,
) -> Site:
    # alice is a team admin and, here, site staff too: every page shows all of its buttons and forms.
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    team = alice.membership.team
    case = case_create(team=team, user=alice, title="Harbour fire", reference="A-17", notes="Three photos.")
    ids = [
        submission_create(team=team, user=alice, uploaded_file=uploaded(path.name, path.read_bytes()), case=case).pk
        for path in upload_images(synth_dir, tmp_path, ["real", "tconv-s1", "tconv-s2"], per_class=1, start=14)
    ]
    wait_for(
        lambda: Submission.objects.filter(pk__in=ids, status="done").count() == len(ids),
        timeout=120,
        message="the worker's verdicts",
    )
    backbone, cache = engine
    candidate = head_train_now(actor=staff, backbone=backbone, cache=cache)
    return Site(
        case_id=case.pk,
        submission_id=ids[1],
        candidate_version=candidate.version,
        training_job_id=TrainingJob.objects.get(head_version=candidate).pk,
    )


def main_pages(site: Site) -> list[tuple[str, str]]:
    return [
        ("upload", "/submissions/upload/"),
        ("history", "/submissions/"),
        ("verdict", f"/submissions/{site.submission_id}/"),
        ("cases", "/cases/"),
        ("case", f"/cases/{site.case_id}/"),
        ("registry", "/registry/"),
        ("generator", "/registry/generators/tconv-s1/"),
        ("heads", "/registry/heads/"),
        ("head-version", f"/registry/heads/{site.candidate_version}/"),
        ("training-job", f"/registry/training-jobs/{site.training_job_id}/"),
        ("workers", "/workers/"),  # staff only (alice is staff here)
    ]


def check_page(page: Page, name: str, width: str) -> None:
    """axe-core finds no serious or critical violation, and nothing makes the page scroll sideways."""
    assert_accessible(page, name)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name} is {overflow} px wider than the {width} viewport"
    screenshot(page, f"page-{width}-{name}")


def test_it_passes_axe_on_every_main_page_at_desktop_and_phone_widths(new_page: PageFactory, site: Site) -> None:
    for width, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = new_page(viewport)
        page.goto("/accounts/login/")
        check_page(page, "login", width)
        log_in(page, "alice")
        for name, url in main_pages(site):
            page.goto(url)
            expect(page.get_by_role("heading", level=1)).to_be_visible()
            check_page(page, name, width)


def tab_to(page: Page, selector: str, presses: int = 60) -> None:
    """Press Tab until the element matching `selector` has the focus."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} never got the focus with Tab")


def test_it_uploads_with_the_keyboard_alone(
    page: Page,
    alice: User,
    active_head: HeadVersion,
    browser_worker: WorkerProcess,
    synth_dir: Path,
    tmp_path: Path,
) -> None:
    images = upload_images(synth_dir, tmp_path, ["real", "nearest-s1"], per_class=2, start=14)
    # Playwright starts intercepting file choosers when first asked to: a key pressed at once after
    # `expect_file_chooser` can beat it (about one time in three here), a listener set now cannot.
    page.on("filechooser", lambda _chooser: None)
    log_in(page, "alice")
    page.goto("/submissions/upload/")

    tab_to(page, "#new-case-title")  # no case is open yet: "Create a new case" is already chosen
    page.keyboard.type("Keyboard case")
    tab_to(page, "#files")
    # The drop zone shows where the focus is (the file input itself is visually hidden).
    assert page.eval_on_selector("#dropzone", "zone => getComputedStyle(zone).outlineStyle") != "none"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files(images)
    expect(page.locator("#selection")).to_contain_text("4 files selected")
    tab_to(page, "#upload-button")
    page.keyboard.press("Enter")

    expect(page.locator("#count-done")).to_have_text("4", timeout=120_000)
    expect(page.locator("#case-link")).to_have_text("Open the case “Keyboard case”")
    assert Submission.objects.filter(case__title="Keyboard case", status="done").count() == 4
    assert_accessible(page, "upload page with its progress")
    tab_to(page, "#file-rows a")  # the verdicts are reachable by keyboard too
    page.keyboard.press("Enter")
    page.wait_for_url("**/submissions/*/")
    expect(page.get_by_test_id("verdict-summary")).to_be_visible()
