"""Safe model switches (issue #16): a confirmation page with the metric differences, a second confirmation
for a head worse than the active one, activation with re-attribution of the open cases as one action, and
a minimum of reference images per generator before a training starts."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

from tests.fixtures import api_client
from tests.webapp import head_version_row, image_bytes, uploaded, verdict_row
from webapp.cases.models import Case
from webapp.registry import services as registry
from webapp.registry.models import HeadVersion, TrainingJob
from webapp.submissions.models import Submission
from webapp.submissions.services import submission_create

CLASSES = ("real", "gen-x")


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def heads(db: None) -> tuple[HeadVersion, HeadVersion]:
    active, candidate = head_version_row(1, classes=CLASSES), head_version_row(2, classes=CLASSES)
    HeadVersion.objects.filter(pk=active.pk).update(metrics={"accuracy": 0.9, "macro_f1": 0.9, "auroc": 0.8})
    # Better accuracy, worse macro F1 and AUROC.
    HeadVersion.objects.filter(pk=candidate.pk).update(metrics={"accuracy": 0.95, "macro_f1": 0.85, "auroc": 0.7})
    active.refresh_from_db()
    candidate.refresh_from_db()
    return active, candidate


def test_the_heads_page_links_to_a_confirmation_page_instead_of_activating(
    heads: tuple[HeadVersion, HeadVersion], staff: User
) -> None:
    page = logged_in(staff).get("/registry/heads/").content.decode()
    assert 'href="/registry/heads/2/activate/" data-testid="activate-candidate"' in page
    confirmation = logged_in(staff).get("/registry/heads/2/activate/").content.decode()
    assert "Activate head v2?" in confirmation
    assert "Worse than the active head on 2 metrics:</strong> Macro F1, AUROC (held-out generators)." in confirmation
    assert "+0.050" in confirmation and "-0.100" in confirmation
    assert HeadVersion.objects.get(version=1).status == HeadVersion.Status.ACTIVE


def test_a_worse_head_needs_the_second_confirmation(heads: tuple[HeadVersion, HeadVersion], staff: User) -> None:
    client = logged_in(staff)
    refused = client.post("/registry/heads/2/activate/")
    assert refused.status_code == 400
    assert "v2 is worse than the active v1 on 2 metrics" in refused.content.decode()
    assert HeadVersion.objects.get(version=1).status == HeadVersion.Status.ACTIVE
    confirmed = client.post("/registry/heads/2/activate/", {"confirm_worse": "on"})
    assert confirmed.status_code == 302
    assert HeadVersion.objects.get(version=2).status == HeadVersion.Status.ACTIVE
    # Rolling back to v1, better on those metrics but worse on accuracy, asks again.
    back = client.get("/registry/heads/1/activate/").content.decode()
    assert "Roll back to head v1?" in back and "Worse than the active head on 1 metric:" in back


def test_activating_and_reattributing_the_open_cases_is_one_action(
    heads: tuple[HeadVersion, HeadVersion], staff: User, bob: User
) -> None:
    team = bob.membership.team
    open_case = Case.objects.create(team=team, title="Open", created_by=bob)
    closed_case = Case.objects.create(team=team, title="Closed", created_by=bob)
    active = heads[0]
    judged = []
    for seed, case in ((1, open_case), (2, open_case), (3, closed_case)):
        submission = submission_create(
            team=team, user=bob, uploaded_file=uploaded(f"{seed}.png", image_bytes(seed=seed)), case=case
        )
        verdict_row(submission, active, label="real", decision="real")
        judged.append(submission)
    Case.objects.filter(pk=closed_case.pk).update(status=Case.Status.CLOSED)
    client = logged_in(staff)
    refused = client.post("/submissions/reattribute/activate/2/")
    assert refused.status_code == 302 and refused["Location"] == "/registry/heads/2/activate/"
    assert HeadVersion.objects.get(version=1).status == HeadVersion.Status.ACTIVE

    done = client.post("/submissions/reattribute/activate/2/", {"confirm_worse": "on"})
    assert done.status_code == 302 and done["Location"] == "/submissions/reattribute/progress/"
    assert HeadVersion.objects.get(version=2).status == HeadVersion.Status.ACTIVE
    statuses = dict(Submission.objects.filter(pk__in=[s.pk for s in judged]).values_list("pk", "status"))
    assert [statuses[s.pk] for s in judged] == ["queued", "queued", "done"]
    progress = client.get(done["Location"]).content.decode()
    assert "0 of 2 images of open cases judged by the active head" in progress
    assert '<meta http-equiv="refresh" content="3">' in progress

    Submission.objects.filter(pk=judged[0].pk).update(status=Submission.Status.PROCESSING)
    verdict_row(judged[0], HeadVersion.objects.get(version=2), label="gen-x", decision="known_generator")
    Submission.objects.filter(pk=judged[1].pk).update(status=Submission.Status.FAILED)
    progress = client.get(done["Location"]).content.decode()
    assert "1 of 2 images of open cases judged by the active head, 1 failed" in progress
    assert 'value="100"' in progress and "http-equiv" not in progress


def test_training_needs_the_minimum_of_references_per_generator(
    registry_references: dict[str, int], staff: User
) -> None:
    with override_settings(TRAINING_MIN_REFERENCES=11):
        response = api_client(staff).post("/api/v1/heads/train/")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "Training needs at least 11 reference images per generator (10 to 50 give a useful head); too few: "
        "bilinear-s1 (10), nearest-s1 (10), pixelshuffle-s1 (10), real (10), tconv-s1 (10)."
    )
    assert not TrainingJob.objects.exists()
    page = logged_in(staff)
    with override_settings(TRAINING_MIN_REFERENCES=11):
        shown = page.post("/registry/heads/train/", follow=True).content.decode()
    assert "Training needs at least 11 reference images per generator" in shown
    assert registry.training_job_start(requested_by=staff, enqueue=False).status == TrainingJob.Status.QUEUED
