"""Worker death and shutdown, with real worker processes and Redis: no upload is lost, none is judged twice.

A worker killed with SIGKILL in the middle of a group never acknowledged its messages, so Redis gives them to
another worker after the visibility timeout (5 s here). A worker process killed over and over by the same
image (the out-of-memory killer, a crashing decoder) has its message handed back each time, and the image
ends as failed after SUBMISSION_MAX_ATTEMPTS claims instead of looping. A worker told to stop (SIGTERM,
what `docker stop` sends) finishes the group it runs first and leaves the rest on the queue. The worker's test
gate (`workers/test_gate.py`) holds a group at a known point, so that each signal lands where the test says.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Count

from tests.fixtures import REPO_ROOT, WorkerProcess, broker_queue_length, purge_broker, wait_for
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
        "s.CELERY_WORKER_PREFETCH_MULTIPLIER // s.ATTRIBUTION_GROUP_SIZE, s.SUBMISSION_MAX_ATTEMPTS, "
        "s.CELERY_WORKER_MAX_MEMORY_PER_CHILD)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "SUBMISSION_", "ATTRIBUTION_"))}
    env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    visibility, hard, soft, stale = (int(x) for x in out[:4])
    assert soft < hard < visibility and hard < stale
    # A worker holds two groups (one running, one filling), unacknowledged.
    assert out[4:] == ["True", "True", "2", "3", "4000000"]


def test_a_worker_killed_mid_group_loses_nothing_and_a_stopped_one_finishes_its_group(
    transactional_db: None, active_head: HeadVersion, bob: User, tmp_path: Path
) -> None:
    # Each worker has a feature cache of its own, fresh: every group is a real forward pass. The gate holds
    # a group once its submissions are claimed, until the test lets it go: the kill and the stop land in
    # the middle of a group whatever the machine's speed.
    purge_broker()
    first = WorkerProcess(env={**FAST_REDELIVERY, "FEATURE_CACHE_DIR": str(tmp_path / "cache-1")}, gate_open=False)
    try:
        first.wait_ready()
        ids = upload(bob, noise(2 * BATCH, first_seed=6000), "killed")
        _, held = first.gate.wait_held()
        at_kill = rows(ids)
    finally:
        first.stop(signal.SIGKILL)  # the whole process group: no warm shutdown, no acknowledgement
    # One pool process: the held group is the only one claimed, and nothing is done yet.
    assert 0 < len(held) <= BATCH and set(held) <= set(ids)
    assert at_kill == {pk: ("processing", 1) if pk in held else ("queued", 0) for pk in ids}

    second = WorkerProcess(env={**FAST_REDELIVERY, "FEATURE_CACHE_DIR": str(tmp_path / "cache-2")})
    try:
        second.wait_ready()
        assert set(wait_all(ids, {"done", "failed"}, second).values()) == {"done"}
        # Exactly one verdict each: the interrupted group was redelivered and redone, never twice stored.
        assert verdicts_per_submission(ids, active_head) == {pk: 1 for pk in ids}
        assert {pk: attempts for pk, (_, attempts) in rows(ids).items()} == {
            pk: 2 if pk in held else 1 for pk in ids
        }

        # Warm shutdown: SIGTERM to the main process while a group is held; it finishes that group first.
        second.gate.close()
        more = upload(bob, noise(BATCH, first_seed=7000), "stopped")
        held_file, running = second.gate.wait_held()
        second.process.send_signal(signal.SIGTERM)
        wait_for(lambda: "Warm shutdown" in second.read_log(), timeout=60, message="the warm shutdown")
        assert second.poll() is None, "the worker must wait for the group it runs"
        assert {pk: status for pk, (status, _) in rows(running).items()} == dict.fromkeys(running, "processing")
        second.gate.open()  # anything the worker still starts before it leaves is not held
        second.gate.release(held_file)
        second.process.wait(timeout=120)
    finally:
        second.stop()
    assert second.process.returncode == 0, second.log_tail()
    final = rows(more)
    assert {pk: final[pk] for pk in running} == dict.fromkeys(running, ("done", 1))
    # The others are not lost: each was either finished before the worker left or never started, its
    # message then back on the broker for the next worker.
    rest = [pk for pk in more if pk not in running]
    assert all(final[pk] in {("done", 1), ("queued", 0)} for pk in rest), final
    waiting = [pk for pk in rest if final[pk] == ("queued", 0)]
    assert broker_queue_length() == len(waiting)
    done = [pk for pk in more if final[pk][0] == "done"]
    assert verdicts_per_submission(more, active_head) == dict.fromkeys(done, 1)


def test_an_image_that_kills_its_worker_every_time_ends_as_failed_after_the_attempts(
    transactional_db: None, active_head: HeadVersion, bob: User
) -> None:
    # The test plays the out-of-memory killer: whenever the gate holds a claim of the "poison" image, it kills
    # the worker's pool processes; the claims of the others it lets go.
    purge_broker()
    worker = WorkerProcess(env=FAST_REDELIVERY, gate_open=False)
    try:
        worker.wait_ready()
        *innocent, poison = upload(bob, noise(3, first_seed=8000), "poison")
        kills = 0
        while kills < settings.SUBMISSION_MAX_ATTEMPTS:
            held_file, _ = worker.gate.wait_held()
            status, attempts = rows([poison])[poison]
            if (status, attempts) == ("processing", kills + 1):  # claimed again, by the group held now
                children = pool_children(worker.process.pid)
                assert children, worker.log_tail()
                for child in children:
                    os.kill(child, signal.SIGKILL)
                kills += 1
            worker.gate.release(held_file)
        worker.gate.open()
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
