"""Worker death and shutdown, with real worker processes and Redis: no upload is lost, none is judged twice.

A worker killed with SIGKILL in the middle of a batch never acknowledged its message, so Redis gives it to
another worker after the visibility timeout (5 s here). A worker process killed over and over by the same
image (the out-of-memory killer, a crashing decoder) has its message handed back each time, and the image
ends as failed after SUBMISSION_MAX_ATTEMPTS claims instead of looping. A worker told to stop (SIGTERM,
what `docker stop` sends) finishes the batch it holds first.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Count
from PIL import Image

from tests.fixtures import REPO_ROOT, WorkerProcess, purge_broker, wait_for
from tests.webapp import image_bytes, uploaded
from tests.workers.faults import pool_children
from webapp.registry.models import HeadVersion
from webapp.submissions.models import Submission, Verdict
from webapp.submissions.services import submission_create_batch

pytestmark = [pytest.mark.worker, pytest.mark.redis]

BATCH = 16  # images per group (two forward passes of 8): long enough to be killed in the middle of one
FAST_REDELIVERY = {"CELERY_VISIBILITY_TIMEOUT": "5", "ATTRIBUTION_BATCH_SIZE": str(BATCH // 2)}


def upload(user: User, images: list[bytes], prefix: str) -> list[int]:
    """Store and queue the images as one upload (committed: the workers see it), one message each."""
    files = [uploaded(f"{prefix}-{i}.png", data) for i, data in enumerate(images)]
    outcomes = submission_create_batch(team=user.membership.team, user=user, uploaded_files=files)
    assert all(o.submission is not None for o in outcomes), [o.error for o in outcomes]
    return [o.submission.pk for o in outcomes if o.submission is not None]


def noise(count: int, first_seed: int) -> list[bytes]:
    # Images no other test makes: their features are not in the shared cache, so each batch is a real pass.
    return [image_bytes("PNG", size=(224, 224), seed=first_seed + i) for i in range(count)]


def rows(ids: list[int]) -> dict[int, tuple[str, int]]:
    return {pk: (status, attempts) for pk, status, attempts in
            Submission.objects.filter(pk__in=ids).values_list("id", "status", "attempts")}


def verdicts_per_submission(ids: list[int], head: HeadVersion) -> dict[int, int]:
    counts = (Verdict.objects.filter(submission_id__in=ids, head_version=head)
              .values("submission_id").annotate(n=Count("id")))
    return {row["submission_id"]: row["n"] for row in counts}


def wait_all(ids: list[int], statuses: set[str], worker: WorkerProcess, timeout: float = 150) -> dict[int, str]:
    def finished() -> dict[int, str] | None:
        now = {pk: status for pk, (status, _) in rows(ids).items()}
        return now if set(now.values()) <= statuses else None

    try:
        return wait_for(finished, timeout=timeout, interval=0.2, message=f"every upload {statuses}")
    except TimeoutError as error:
        raise AssertionError(f"{error}: {rows(ids)}\n{worker.read_log()[-3000:]}") from None


def test_the_defaults_keep_a_message_hidden_longer_than_a_task_may_run() -> None:
    # The settings a deployment gets with nothing set (the tests shorten some of them).
    code = (
        "import webapp.settings as s; o = s.CELERY_BROKER_TRANSPORT_OPTIONS; "
        "print(o['visibility_timeout'], s.CELERY_TASK_TIME_LIMIT, s.CELERY_TASK_SOFT_TIME_LIMIT, "
        "s.SUBMISSION_STALE_AFTER_S, s.CELERY_TASK_ACKS_LATE, s.CELERY_TASK_REJECT_ON_WORKER_LOST, "
        "s.CELERY_WORKER_PREFETCH_MULTIPLIER // s.ATTRIBUTION_BATCH_SIZE, s.SUBMISSION_MAX_ATTEMPTS, "
        "s.CELERY_WORKER_MAX_MEMORY_PER_CHILD)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "SUBMISSION_", "ATTRIBUTION_"))}
    env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    visibility, hard, soft, stale = (int(x) for x in out[:4])
    assert soft < hard < visibility and hard < stale
    # A worker holds two groups of two forward passes (one running, one filling), unacknowledged.
    assert out[4:] == ["True", "True", "4", "3", "4000000"]


def test_a_worker_killed_mid_batch_loses_nothing_and_a_stopped_one_finishes_its_batch(
    transactional_db: None, active_head: HeadVersion, bob: User
) -> None:
    purge_broker()
    first = WorkerProcess(env=FAST_REDELIVERY)
    try:
        first.wait_ready()
        ids = upload(bob, noise(2 * BATCH, first_seed=6000), "killed")
        wait_for(lambda: any(s == "processing" for s, _ in rows(ids).values()), timeout=120, interval=0.02,
                 message="a batch in progress")
    finally:
        first.stop(signal.SIGKILL)  # the whole process group: no warm shutdown, no acknowledgement
    at_kill = rows(ids)
    in_flight = [pk for pk, (status, _) in at_kill.items() if status == "processing"]
    assert in_flight, f"the worker was not killed in the middle of a batch: {at_kill}"
    assert all(status != "done" for pk, (status, _) in at_kill.items() if pk in in_flight)

    second = WorkerProcess(env=FAST_REDELIVERY)
    try:
        second.wait_ready()
        assert set(wait_all(ids, {"done", "failed"}, second).values()) == {"done"}
        # Exactly one verdict each: the interrupted batch was redelivered and redone, never twice stored.
        assert verdicts_per_submission(ids, active_head) == {pk: 1 for pk in ids}
        attempts = {pk: attempts for pk, (_, attempts) in rows(ids).items()}
        assert {attempts[pk] for pk in in_flight} == {2}
        assert {attempts[pk] for pk in ids if pk not in in_flight} == {1}

        # Warm shutdown: SIGTERM to the main process in the middle of a batch; it finishes the batch first.
        more = upload(bob, noise(BATCH, first_seed=7000), "stopped")
        wait_for(lambda: any(s == "processing" for s, _ in rows(more).values()), timeout=120, interval=0.02,
                 message="the next batch in progress")
        stopped_at = time.monotonic()
        second.process.send_signal(signal.SIGTERM)
        second.process.wait(timeout=120)
        assert time.monotonic() - stopped_at < 120
    finally:
        second.stop()
    assert {status for status, _ in rows(more).values()} == {"done"}, rows(more)
    assert verdicts_per_submission(more, active_head) == {pk: 1 for pk in more}
    assert "Warm shutdown" in second.read_log()


def poison_png(side: int = 8000) -> bytes:
    """A legal image (64 million pixels, under the limit) that is slow to decode: the image that kills
    its worker here, every time it is on it."""
    buffer = io.BytesIO()
    Image.new("L", (side, side), 128).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def test_an_image_that_kills_its_worker_every_time_ends_as_failed_after_the_attempts(
    transactional_db: None, active_head: HeadVersion, bob: User
) -> None:
    purge_broker()
    worker = WorkerProcess(env=FAST_REDELIVERY)
    try:
        worker.wait_ready()
        *innocent, poison = upload(bob, [*noise(2, first_seed=8000), poison_png()], "poison")
        for attempt in range(1, settings.SUBMISSION_MAX_ATTEMPTS + 1):
            # A process that dies under a task is replaced, and the task handed back to the queue.
            try:
                wait_for(lambda a=attempt: rows([poison])[poison] == ("processing", a), timeout=120,
                         interval=0.02, message=f"attempt {attempt} on the poison image")
            except TimeoutError as error:
                raise AssertionError(f"{error}: {rows([*innocent, poison])}\n{worker.read_log()[-4000:]}") from None
            for child in pool_children(worker.process.pid):
                os.kill(child, signal.SIGKILL)
        final = wait_all([*innocent, poison], {"done", "failed"}, worker, timeout=120)
        assert worker.process.poll() is None, "the worker's main process must outlive its children"
    finally:
        worker.stop()
    assert final == {innocent[0]: "done", innocent[1]: "done", poison: "failed"}
    failed = Submission.objects.get(pk=poison)
    assert failed.attempts == settings.SUBMISSION_MAX_ATTEMPTS
    assert failed.error == f"gave up after {settings.SUBMISSION_MAX_ATTEMPTS} attempts: no worker finished this image"
    assert verdicts_per_submission([*innocent, poison], active_head) == {pk: 1 for pk in innocent}
    assert worker.read_log().count("WorkerLostError") >= settings.SUBMISSION_MAX_ATTEMPTS
