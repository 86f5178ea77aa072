"""Field accuracy in a real browser: images judged by the worker are confirmed by analysts, the worker computes
the candidate's field predictions, and the head pages show each head's accuracy and unknown rejection on them
(with intervals, counts and the warning that there are too few yet); a registry admin of the team adds a
confirmed image to its generator's references from the verdict page."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from attribution.synth import DEFAULT_KNOWN, DEFAULT_UNKNOWN
from tests.browser import assert_accessible, log_in, screenshot
from tests.fixtures import WorkerProcess, wait_for
from tests.fixtures_registry import head_version_copy
from tests.webapp import uploaded
from webapp.common.tasks import task_send_on_commit
from webapp.feedback.models import FieldPrediction
from webapp.feedback.selectors.field import head_version_field_metrics
from webapp.feedback.services.field import FIELD_PREDICTIONS_TASK
from webapp.registry.models import Generator, HeadVersion
from webapp.submissions.models import Confirmation, Submission
from webapp.submissions.services import submission_create
from webapp.teams.models import Team

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.redis]

VERDICT_TIMEOUT_S = 120


def judged(team: Team, user: User, synth_dir: Path, samples: list[tuple[str, int]]) -> list[Submission]:
    """Upload synthetic images (index 12 and up: none is a reference) and wait for the worker's verdicts."""
    submissions = []
    for label, index in samples:
        path = sorted((synth_dir / label).glob("*.png"))[index]
        file = uploaded(path.name, path.read_bytes())
        submissions.append(submission_create(team=team, user=user, uploaded_file=file))
    ids = [s.pk for s in submissions]
    wait_for(
        lambda: Submission.objects.filter(pk__in=ids, status=Submission.Status.DONE).count() == len(ids),
        timeout=VERDICT_TIMEOUT_S, message="the worker's verdicts",
    )
    return submissions


def interval(figure: float | None, ci: tuple[float, float] | None) -> str:
    assert figure is not None and ci is not None
    return f"{figure:.3f} (95 % interval {ci[0]:.3f}–{ci[1]:.3f})"


def test_the_head_pages_show_field_accuracy_on_confirmed_images(
    page: Page,
    bob: User,
    active_head: HeadVersion,
    browser_worker: WorkerProcess,
    synth_dir: Path,
) -> None:
    team = bob.membership.team
    candidate = head_version_copy(active_head, version=2)
    known_a, known_b, other, unlabelled = judged(
        team, bob, synth_dir, [(DEFAULT_KNOWN[1], 12), (DEFAULT_KNOWN[2], 12), (DEFAULT_UNKNOWN[0], 12),
                               (DEFAULT_KNOWN[3], 12)],
    )
    for submission, label, status in [
        (known_a, DEFAULT_KNOWN[1], Confirmation.Status.CONFIRMED),
        (known_b, DEFAULT_KNOWN[2], Confirmation.Status.CONFIRMED),
        (other, "", Confirmation.Status.CONFIRMED),  # from an unregistered source
        (unlabelled, "", Confirmation.Status.DISPUTED),  # wrong, and nobody knows what it is: left out
    ]:
        Confirmation.objects.create(submission=submission, status=status, label=label, confirmed_by=bob)

    # The candidate never judged these images: the worker computes its predictions (as after a training).
    log_in(page, "bob")
    page.goto(f"/registry/heads/{candidate.version}/")
    field = page.get_by_role("region", name="Field accuracy")
    expect(field.get_by_test_id("field-none")).to_contain_text(
        "A worker is computing its predictions on 3 confirmed images"
    )
    task_send_on_commit(FIELD_PREDICTIONS_TASK, candidate.pk)
    wait_for(lambda: FieldPrediction.objects.filter(head_version=candidate).count() == 3,
             timeout=VERDICT_TIMEOUT_S, message="the candidate's field predictions")

    metrics = head_version_field_metrics(head_version=candidate)
    assert (metrics.known_n, metrics.unknown_n, metrics.disputed_unlabelled) == (2, 1, 1)
    page.reload()
    field = page.get_by_role("region", name="Field accuracy")
    expect(field).to_contain_text("trust it over the cross-validated one")
    expect(field.get_by_test_id("field-accuracy-value")).to_contain_text(
        f"{interval(metrics.accuracy, metrics.accuracy_ci)}: {metrics.known_correct} of 2 confirmed images of its"
    )
    expect(field.get_by_test_id("field-unknown-rejection")).to_contain_text(
        f"{interval(metrics.unknown_rejection, metrics.unknown_rejection_ci)}: {metrics.unknown_rejected} of 1"
    )
    expect(field.get_by_test_id("field-too-few")).to_contain_text("Too few confirmations yet to trust either figure")
    expect(field.get_by_test_id("field-counts")).to_contain_text("1 disputed verdict that names no true origin")
    field.get_by_text("Confirmed images per class").click()
    per_class = field.get_by_test_id("field-per-class")
    expect(per_class.get_by_role("row", name=DEFAULT_KNOWN[1])).to_contain_text("1")
    # The comparison with the active head, whose verdicts these are: the same artifact, the same figures.
    active = head_version_field_metrics(head_version=active_head)
    compare = page.get_by_test_id("compare")
    row = compare.get_by_role("row", name="Field accuracy (analysts' confirmations)").get_by_role("cell")
    expect(row.nth(0)).to_contain_text(f"{active.accuracy:.3f}")
    expect(row.nth(1)).to_contain_text(f"{metrics.accuracy:.3f}")
    expect(row.nth(2)).to_contain_text("+0.000")
    screenshot(page, "head-version-field-accuracy")
    assert_accessible(page, "head version page with its field accuracy")

    page.goto("/registry/heads/")
    rejection = page.get_by_test_id("compare-field-unknown_rejection").get_by_role("cell")
    expect(rejection.nth(1)).to_contain_text(f"{metrics.unknown_rejection:.3f}")
    expect(rejection.nth(1)).to_contain_text("1 image)")
    assert_accessible(page, "heads page with field figures")


def test_a_registry_admin_of_the_team_adds_a_confirmed_image_to_the_references(
    page: Page, alice: User, bob: User, active_head: HeadVersion, browser_worker: WorkerProcess, synth_dir: Path
) -> None:
    User.objects.filter(pk=alice.pk).update(is_staff=True)
    generator = Generator.objects.get(slug=DEFAULT_KNOWN[1])
    (submission,) = judged(alice.membership.team, bob, synth_dir, [(DEFAULT_KNOWN[1], 13)])
    Confirmation.objects.create(submission=submission, status="confirmed", label=generator.slug,
                                generator=generator, confirmed_by=bob)
    before = generator.references.count()

    log_in(page, "alice")
    page.goto(f"/submissions/{submission.pk}/")
    page.get_by_role("button", name=f"Add to {generator.name}'s references").click()
    expect(page.get_by_role("status").filter(has_text=f"Added to {generator.name}'s references.")).to_be_visible()
    expect(page.get_by_test_id("promoted")).to_contain_text(f"Added to {generator.name}'s references")
    expect(page.get_by_role("button", name=f"Add to {generator.name}'s references")).to_have_count(0)
    assert generator.references.count() == before + 1
    assert generator.references.filter(sha256=submission.sha256).exists()
    assert_accessible(page, "verdict page after adding the image to the references")
