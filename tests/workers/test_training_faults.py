"""Training jobs when the broker is down or a worker dies: never a 500, never a job that blocks the next one.

The broker is a private Redis server that the test stops (the machine's shared Redis is left alone).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from tests.fixtures import api_client
from tests.workers.faults import celery_broker, redis_server
from webapp.registry.models import TrainingJob
from webapp.registry.services import training_jobs_sweep

TRAIN = "/api/v1/heads/train/"


@pytest.mark.redis
def test_a_training_asked_for_while_the_broker_is_down_answers_503_and_blocks_nothing(
    transactional_db: None, registry_references: dict[str, int], staff: User, tmp_path: Path
) -> None:
    client = api_client(staff)
    with redis_server(tmp_path) as broker, celery_broker(broker.url):
        broker.kill()
        refused = client.post(TRAIN)
        assert refused.status_code == 503, refused.content
        assert refused["Content-Type"].startswith("application/json")
        assert "could not be queued" in refused.json()["detail"] and int(refused["Retry-After"]) > 0
        job = TrainingJob.objects.get(pk=refused.json()["job"])
        assert job.status == TrainingJob.Status.FAILED and "broker" in job.error

        broker.start()
        accepted = client.post(TRAIN)
        assert accepted.status_code == 202, accepted.content
        assert broker.queue_length("training") == 1  # the new job's message reached the queue
        assert TrainingJob.objects.get(pk=accepted.json()["id"]).status == TrainingJob.Status.QUEUED


@pytest.mark.redis
def test_the_sweep_sends_a_lost_job_again_and_ends_one_whose_worker_died(
    transactional_db: None, registry_references: dict[str, int], staff: User, tmp_path: Path, settings: object
) -> None:
    now = timezone.now()
    lost = TrainingJob.objects.create(requested_by=staff)  # its message was lost: queued for too long
    TrainingJob.objects.filter(pk=lost.pk).update(created_at=now - timedelta(minutes=10))
    with redis_server(tmp_path) as broker, celery_broker(broker.url):
        swept = training_jobs_sweep(queued_after_s=60)
        assert swept == {"resent": [lost.pk], "failed": []}
        assert broker.queue_length("training") == 1
        # A fresh queued job is left alone: its message may still be on its way.
        TrainingJob.objects.filter(pk=lost.pk).update(status=TrainingJob.Status.CANCELLED)
        TrainingJob.objects.create(requested_by=staff)
        assert training_jobs_sweep(queued_after_s=60) == {"resent": [], "failed": []}

        TrainingJob.objects.update(status=TrainingJob.Status.CANCELLED)
        dead = TrainingJob.objects.create(requested_by=staff, status=TrainingJob.Status.RUNNING, started_at=now)
        limit = settings.CELERY_TASK_TIME_LIMIT  # type: ignore[attr-defined]
        assert training_jobs_sweep(queued_after_s=60)["failed"] == []  # still within its time limit
        TrainingJob.objects.filter(pk=dead.pk).update(started_at=now - timedelta(seconds=limit + 5))
        assert training_jobs_sweep(queued_after_s=60) == {"resent": [], "failed": [dead.pk]}
        dead.refresh_from_db()
        assert dead.status == TrainingJob.Status.FAILED and "stopped answering" in dead.error
        # Nothing blocks the next training any more.
        accepted = api_client(staff).post(TRAIN)
        assert accepted.status_code == 202, accepted.content
