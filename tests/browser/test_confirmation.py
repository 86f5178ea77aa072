"""An analyst confirms one verdict and disputes another in a real Chromium: the verdict page's review card (the
"other generator" box that appears when chosen, without inline scripts), the history's review filter and column,
and a selection confirmed from the history."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.files import File
from playwright.sync_api import Page, expect

from tests.browser import artifact_path, assert_accessible, log_in, screenshot
from tests.webapp import head_version_row, image_bytes, uploaded, verdict_row
from webapp.common.uploads import upload_validate
from webapp.registry.models import Generator
from webapp.submissions.models import Confirmation, Submission
from webapp.teams.models import Team

pytestmark = [pytest.mark.browser, pytest.mark.redis]  # the package starts a worker for every browser test


def stored_submission(team: Team, user: User, seed: int, name: str) -> Submission:
    """A submission stored as an upload stores it, but not queued: the test writes its verdict, so the
    package's worker has nothing to do with it."""
    file = uploaded(name, image_bytes(seed=seed, size=(64, 48)))
    upload = upload_validate(uploaded_file=file, name=name)
    submission = Submission(team=team, submitted_by=user, status=Submission.Status.DONE, metadata={})
    submission.describe_upload(upload)
    file.seek(0)
    submission.image.save(f"{upload.sha256[:16]}-{name}", File(file), save=False)
    submission.save()
    return submission


def review_of(submission: Submission) -> tuple[str, str, str]:
    confirmation = Confirmation.objects.get(submission=submission)
    return confirmation.status, confirmation.label, confirmation.note


def test_an_analyst_confirms_one_verdict_and_disputes_another(page: Page, bob: User) -> None:
    Generator.objects.create(name="Stable Diffusion 1.4", slug="sd14", family="diffusion")
    Generator.objects.create(name="ProGAN", slug="progan", family="gan")
    head = head_version_row(classes=("real", "sd14", "progan"))
    team = bob.membership.team
    known = stored_submission(team, bob, 801, "campaign-poster.png")
    verdict_row(known, head, label="sd14", decision="known_generator")
    wrong = stored_submission(team, bob, 802, "harbour-photo.png")
    verdict_row(wrong, head, label="real", decision="real")
    third = stored_submission(team, bob, 803, "street-scene.png")
    verdict_row(third, head, label="progan", decision="known_generator")

    log_in(page, "bob")

    # Confirm: the verdict is right, as it says (Stable Diffusion 1.4), with a note.
    page.goto(f"/submissions/{known.pk}/")
    card = page.get_by_test_id("confirmation-card")
    expect(card.get_by_test_id("confirmation-none")).to_have_text(
        "No analyst has confirmed or disputed this verdict yet."
    )
    expect(card.get_by_label("Other generator's name")).to_be_hidden()  # until "Other generator" is chosen
    card.get_by_label("Confirmed: the verdict is right").check()
    card.get_by_label("Note", exact=True).fill("Matches the prompt the author shared.")
    card.get_by_role("button", name="Save review").click()
    expect(page.get_by_role("status").filter(has_text="Verdict confirmed.")).to_be_visible()
    expect(card.get_by_test_id("confirmation-status")).to_have_text("Confirmed")
    expect(card.get_by_test_id("confirmation-label")).to_have_text("Stable Diffusion 1.4")
    expect(card.get_by_test_id("confirmation-by")).to_have_text("bob")
    expect(card.get_by_test_id("confirmation-note")).to_have_text("Matches the prompt the author shared.")
    expect(card.get_by_label("Confirmed: the verdict is right")).to_be_checked()
    assert_accessible(page, "verdict page with a confirmation")
    assert review_of(known) == ("confirmed", "sd14", "Matches the prompt the author shared.")

    # Dispute: the "real photograph" is the work of a generator the registry does not hold, named in words.
    page.goto(f"/submissions/{wrong.pk}/")
    card.get_by_label("Disputed: the verdict is wrong").check()
    card.get_by_label("What the image is").select_option(label="Other generator (name it)")
    other = card.get_by_label("Other generator's name")
    expect(other).to_be_visible()
    expect(other).to_be_focused()
    other.fill("Midjourney v7")
    card.get_by_role("button", name="Save review").click()
    expect(page.get_by_role("status").filter(has_text="Verdict disputed.")).to_be_visible()
    expect(card.get_by_test_id("confirmation-status")).to_have_text("Disputed")
    expect(card.get_by_test_id("confirmation-label")).to_have_text("Midjourney v7 (unregistered)")
    # The form starts from what was said: the name box is shown with the name in it.
    expect(card.get_by_label("What the image is")).to_have_value("__other__")
    expect(card.get_by_label("Other generator's name")).to_have_value("Midjourney v7")
    assert_accessible(page, "verdict page with a dispute")
    card.screenshot(path=str(artifact_path("confirmation-card-disputed")))
    assert review_of(wrong) == ("disputed", "Midjourney v7", "")

    # A label that contradicts the status is refused with the reason, and the earlier word stands.
    card.get_by_label("Confirmed: the verdict is right").check()
    card.get_by_label("What the image is").select_option(label="ProGAN")
    expect(card.get_by_label("Other generator's name")).to_be_hidden()
    card.get_by_role("button", name="Save review").click()
    refused = page.get_by_role("status").filter(has_text="to say the image is ProGAN, dispute the verdict")
    expect(refused).to_be_visible()
    expect(card.get_by_test_id("confirmation-status")).to_have_text("Disputed")
    assert review_of(wrong) == ("disputed", "Midjourney v7", "")

    # The history: the review column, the filter, and a selection confirmed from there.
    page.goto("/submissions/")
    rows = page.get_by_test_id("submission-row")
    expect(rows).to_have_count(3)
    expect(rows.filter(has_text="street-scene.png").get_by_test_id("review-cell")).to_have_text("Not reviewed")
    page.get_by_label(f"Select #{third.pk} ").check()
    page.get_by_test_id("confirm-selection").click()
    expect(page.get_by_role("status").filter(has_text="1 verdict confirmed.")).to_be_visible()
    expect(rows.filter(has_text="street-scene.png").get_by_test_id("review-cell")).to_have_text("Confirmed progan")
    assert review_of(third) == ("confirmed", "progan", "")
    screenshot(page, "history-reviews")

    page.get_by_label("Analyst review").select_option(label="Disputed by an analyst")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("harbour-photo.png")
    expect(rows.first.get_by_test_id("review-cell")).to_have_text("Disputed Midjourney v7")
    page.get_by_label("Analyst review").select_option(label="Confirmed by an analyst")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="campaign-poster.png")).to_have_count(1)
    expect(rows.filter(has_text="street-scene.png")).to_have_count(1)
    page.get_by_label("Analyst review").select_option(label="Not reviewed")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("history-empty")).to_contain_text("No submission matches these filters")
    assert_accessible(page, "history filtered by review")
