"""Broker faults, on a private Redis server that the tests kill (the machine's shared Redis is left alone).

An upload is committed to the database before it is sent to the queue, and sent only if its transaction
commits; what a broker loses (killed without persistence, as here: the worst case) the periodic sweep
sends again from the database once it is back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count

from tests.fixtures import WorkerProcess, api_client, wait_for
from tests.webapp import image_bytes, uploaded
from tests.workers.faults import celery_broker, redis_server
from webapp.registry.models import HeadVersion
from webapp.submissions.models import Submission, Verdict
from webapp.submissions.services import submission_create, submission_create_batch, submissions_sweep_stale

BATCH = 8  # images per group (two forward passes of 4)


def statuses(ids: list[int]) -> dict[int, str]:
    return dict(Submission.objects.filter(pk__in=ids).values_list("id", "status"))


@pytest.mark.redis
def test_a_rolled_back_upload_leaves_no_task_behind(transactional_db: None, bob: User, tmp_path: Path) -> None:
    team = bob.membership.team
    with redis_server(tmp_path) as broker, celery_broker(broker.url):
        kept = submission_create(team=team, user=bob, uploaded_file=uploaded("kept.png", image_bytes(seed=900)))
        assert broker.queue_length() == 1

        with pytest.raises(RuntimeError, match="the request failed after the upload"), transaction.atomic():
            submission_create(team=team, user=bob, uploaded_file=uploaded("lost.png", image_bytes(seed=901)))
            raise RuntimeError("the request failed after the upload")

        assert broker.queue_length() == 1  # nothing was sent for the upload that was rolled back
        assert list(Submission.objects.values_list("id", flat=True)) == [kept.pk]


@pytest.mark.worker
@pytest.mark.redis
def test_a_broker_restart_loses_no_upload(
    transactional_db: None, active_head: HeadVersion, bob: User, tmp_path: Path
) -> None:
    team = bob.membership.team
    with redis_server(tmp_path) as broker, celery_broker(broker.url):
        worker = WorkerProcess(env={"REDIS_URL": broker.url, "ATTRIBUTION_BATCH_SIZE": str(BATCH // 2)})
        try:
            worker.wait_ready()
            files = [uploaded(f"b{i}.png", image_bytes("PNG", size=(224, 224), seed=9000 + i)) for i in range(24)]
            ids = [o.submission.pk for o in submission_create_batch(team=team, user=bob, uploaded_files=files)
                   if o.submission]
            assert len(ids) == 24
            wait_for(lambda: "processing" in statuses(ids).values(), timeout=120, interval=0.02,
                     message="a batch in flight")

            broker.kill()  # the queued messages and the one in flight are gone with it
            waiting = [pk for pk, status in statuses(ids).items() if status == "queued"]
            assert waiting, "the broker must die with uploads still queued"

            # Uploads go on while the broker is down: stored and answered, to be sent later.
            response = api_client(bob).post(
                "/api/v1/submissions/", {"image": uploaded("down.png", image_bytes(seed=9100))}, format="multipart"
            )
            assert response.status_code == 201, response.content
            during = response.json()["id"]
            assert statuses([during]) == {during: "queued"}

            broker.start()
            assert broker.queue_length() == 0
            # What the periodic sweep does (beat runs it every SUBMISSION_SWEEP_INTERVAL_S).
            requeued = submissions_sweep_stale(stale_after_s=0)
            assert set(waiting) | {during} <= set(requeued)

            every = [*ids, during]

            def finished() -> dict[int, str] | None:
                now = statuses(every)
                return now if set(now.values()) <= {"done", "failed"} else None

            try:
                final = wait_for(finished, timeout=180, message="every upload done")
            except TimeoutError as error:
                raise AssertionError(f"{error}: {statuses(every)}\n{worker.read_log()[-3000:]}") from None
            assert worker.process.poll() is None
        finally:
            worker.stop()
    assert set(final.values()) == {"done"}
    counts = dict(Verdict.objects.filter(submission_id__in=every, head_version=active_head)
                  .values_list("submission_id").annotate(n=Count("id")))
    assert counts == {pk: 1 for pk in every}
