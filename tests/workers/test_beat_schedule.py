"""The periodic sweep: beat's schedule names registered tasks, the stale-submission sweep is on it at an
interval that catches a stale submission soon after it becomes stale, and the sweep runs as the Celery
task beat sends (not only as the service function)."""

from __future__ import annotations

from datetime import timedelta

from celery.beat import Scheduler
from celery.schedules import schedule as interval_schedule
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from tests.webapp.test_submission_sweep import make
from webapp.submissions.models import Submission
from webapp.teams.models import Team
from workers.celery import app

SWEEP = "workers.tasks.sweep_stale_submissions"
Status = Submission.Status


def beat_entries() -> dict[str, object]:
    """What a `celery beat` process would schedule, read by Celery's own scheduler from the settings."""
    app.loader.import_default_modules()  # the tasks, as a worker or beat imports them
    scheduler = Scheduler(app=app, lazy=True)
    scheduler.setup_schedule()
    return {name: entry for name, entry in scheduler.schedule.items() if not name.startswith("celery.")}


def test_every_scheduled_task_is_a_registered_task_on_a_known_queue() -> None:
    entries = beat_entries()
    assert entries, "beat has nothing to schedule"
    for name, entry in entries.items():
        task = entry.task  # type: ignore[attr-defined]
        assert task in app.tasks, f"{name} schedules {task!r}, which no worker knows"
        # Where Celery's own router sends it (a route, or the default queue): a queue the workers consume.
        queue = app.amqp.router.route({}, task)["queue"].name
        assert queue in ("attribution", "training"), f"{name}: {task} goes to {queue!r}"


def test_the_stale_sweep_runs_often_enough_to_catch_a_stale_submission_soon() -> None:
    (sweep,) = [entry for entry in beat_entries().values() if entry.task == SWEEP]  # type: ignore[attr-defined]
    assert isinstance(sweep.schedule, interval_schedule)  # type: ignore[attr-defined]
    every = sweep.schedule.run_every.total_seconds()  # type: ignore[attr-defined]
    # At least every few seconds would hammer the database; a sweep rarer than the stale age would leave a
    # lost upload waiting up to twice as long as it should.
    assert 10 <= every <= settings.SUBMISSION_STALE_AFTER_S / 2


def test_the_sweep_task_requeues_stale_submissions(
    team_a: Team, bob: User, django_capture_on_commit_callbacks  # type: ignore[no-untyped-def]
) -> None:
    long_ago = timezone.now() - timedelta(seconds=settings.SUBMISSION_STALE_AFTER_S + 60)
    lost = make(team_a, bob, 910, status=Status.QUEUED, queued_at=long_ago)
    dead = make(team_a, bob, 911, status=Status.PROCESSING, started_at=long_ago, attempts=1)
    recent = make(team_a, bob, 912, status=Status.PROCESSING, started_at=timezone.now(), attempts=1)

    with django_capture_on_commit_callbacks():
        app.loader.import_default_modules()
        result = app.tasks[SWEEP].apply()  # through Celery's task machinery, as a worker runs beat's message

    assert result.successful(), result.traceback
    assert result.get() == 2
    statuses = dict(Submission.objects.filter(pk__in=[lost.pk, dead.pk, recent.pk]).values_list("pk", "status"))
    assert statuses == {lost.pk: Status.QUEUED, dead.pk: Status.QUEUED, recent.pk: Status.PROCESSING}
    assert Submission.objects.get(pk=dead.pk).queued_at > long_ago


def test_the_unknown_pile_is_reclustered_on_the_training_queue_at_its_interval() -> None:
    (entry,) = [
        e for e in beat_entries().values() if e.task == "workers.tasks.refresh_unknown_clusters"  # type: ignore[attr-defined]
    ]
    assert entry.schedule.run_every.total_seconds() == settings.UNKNOWN_CLUSTER_INTERVAL_S  # type: ignore[attr-defined]
    assert app.amqp.router.route({}, entry.task)["queue"].name == "training"  # type: ignore[attr-defined]
