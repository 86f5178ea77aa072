"""submissions_sweep_stale and submissions_requeue: nothing stays queued or processing for ever."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import User
from django.utils import timezone

from tests.webapp import image_bytes, uploaded
from tests.webapp.test_submission_create import queued_groups
from webapp.submissions.models import Submission
from webapp.submissions.services import submission_create, submissions_requeue, submissions_sweep_stale
from webapp.teams.models import Team

Status = Submission.Status


def make(team: Team, user: User, seed: int, **fields: object) -> Submission:
    submission = submission_create(
        team=team, user=user, uploaded_file=uploaded(f"{seed}.png", image_bytes(seed=seed))
    )
    Submission.objects.filter(pk=submission.pk).update(**fields)
    return submission


def test_it_requeues_what_was_left_queued_or_processing_too_long(
    team_a: Team, bob: User, settings, django_capture_on_commit_callbacks
) -> None:
    long_ago = timezone.now() - timedelta(seconds=settings.SUBMISSION_STALE_AFTER_S + 60)
    lost_message = make(team_a, bob, 1, status=Status.QUEUED, queued_at=long_ago)
    dead_worker = make(team_a, bob, 2, status=Status.PROCESSING, started_at=long_ago, attempts=1)
    recent = make(team_a, bob, 3, status=Status.PROCESSING, started_at=timezone.now(), attempts=1)
    fresh = make(team_a, bob, 4)
    finished = make(team_a, bob, 5, status=Status.DONE, queued_at=long_ago, started_at=long_ago)

    with django_capture_on_commit_callbacks() as callbacks:
        requeued = submissions_sweep_stale()

    assert sorted(requeued) == sorted([lost_message.pk, dead_worker.pk])
    assert queued_groups(callbacks) == [sorted(requeued)]
    dead_worker.refresh_from_db()
    # Attempts are kept: an image that kills its worker each time runs out of them.
    assert (dead_worker.status, dead_worker.attempts) == (Status.QUEUED, 1)
    assert dead_worker.queued_at > long_ago
    for untouched, status in ((recent, Status.PROCESSING), (fresh, Status.QUEUED), (finished, Status.DONE)):
        untouched.refresh_from_db()
        assert untouched.status == status


def test_a_requeue_for_a_new_head_resets_the_attempts_and_skips_duplicates(
    team_a: Team, bob: User, django_capture_on_commit_callbacks
) -> None:
    done = make(team_a, bob, 6, status=Status.DONE, attempts=3)
    duplicate = submission_create(
        team=team_a, user=bob, uploaded_file=uploaded("again.png", image_bytes(seed=6))
    )
    with django_capture_on_commit_callbacks() as callbacks:
        assert submissions_requeue(submission_ids=[done.pk, duplicate.pk], reset_attempts=True) == [done.pk]
    done.refresh_from_db()
    assert (done.status, done.attempts, done.error) == (Status.QUEUED, 0, "")
    assert queued_groups(callbacks) == [[done.pk]]
