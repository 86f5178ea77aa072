"""A group cannot run for ever, and a database away for a moment is retried a bounded number of times.

Both run in a real worker process. The hung group hangs on a named pipe in place of its stored image (an
`open()` that never returns until someone writes): only the task's time limits, handed to the pool by
`GroupedTask.flush`, end it. Nothing waits for a guessed duration: the test waits for what happens next.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.db import transaction

from tests.fixtures import WorkerProcess, purge_broker, wait_for
from tests.webapp import image_bytes, uploaded
from webapp.registry.models import HeadVersion
from webapp.submissions.models import Submission
from webapp.submissions.services import ATTRIBUTE_TASK, submission_create
from webapp.teams.models import Team
from workers.tasks.attribution import DATABASE_RETRIES

pytestmark = [pytest.mark.redis, pytest.mark.worker]

SOFT_LIMIT_S, HARD_LIMIT_S = 2, 4


def started(env: dict[str, str]) -> Iterator[WorkerProcess]:
    purge_broker()
    process = WorkerProcess(env=env)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
def limited_worker(transactional_db: None) -> Iterator[WorkerProcess]:
    yield from started({
        "CELERY_TASK_SOFT_TIME_LIMIT": str(SOFT_LIMIT_S),
        "CELERY_TASK_TIME_LIMIT": str(HARD_LIMIT_S),
        "ATTRIBUTION_LOADER_THREADS": "0",
    })


def upload(team: Team, user: User, seed: int) -> Submission:
    return submission_create(team=team, user=user, uploaded_file=uploaded(f"{seed}.png", image_bytes(seed=seed)))


def status(submission: Submission) -> str:
    return Submission.objects.values_list("status", flat=True).get(pk=submission.pk)


def test_a_group_over_its_time_limit_is_ended_and_the_worker_goes_on(
    limited_worker: WorkerProcess, team_a: Team, bob: User, active_head: HeadVersion
) -> None:
    # A first upload loads the head in the pool process, so that nothing slow remains but the hang.
    first = upload(team_a, bob, 920)
    wait_for(lambda: status(first) == "done", timeout=120, message="the first verdict")

    with transaction.atomic():  # the message goes out on commit, after the image became a pipe
        hung = upload(team_a, bob, 921)
        path = default_storage.path(hung.image.name)
        os.unlink(path)
        os.mkfifo(path)
    wait_for(lambda: status(hung) == "processing", timeout=30, message="the hung group's claim")

    after = upload(team_a, bob, 922)
    # One pool process: the next group runs only once the hung one has been ended by its time limit.
    wait_for(lambda: status(after) == "done", timeout=120, message="the verdict after the hung group")
    assert re.search(r"TimeLimitExceeded|Time ?limit", limited_worker.read_log()), limited_worker.read_log()
    # The hung submission has no verdict: failed (the soft limit interrupted the image's open, which then
    # counts as unreadable), or still claimed for the sweep (the hard limit killed the process).
    hung.refresh_from_db()
    assert (hung.status, hung.attempts) in (("failed", 1), ("processing", 1)), (hung.status, hung.error)


@pytest.fixture
def worker_without_database(tmp_path: Path, transactional_db: None) -> Iterator[WorkerProcess]:
    # A real database failure: the worker's SQLite file lies in a folder that does not exist.
    yield from started(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'missing' / 'db.sqlite3'}", "ATTRIBUTION_WARMUP": "false"}
    )


def test_a_group_whose_database_is_away_is_sent_again_then_given_up(
    worker_without_database: WorkerProcess,
) -> None:
    from workers.celery import app

    submission_id = 424242
    # The last retry but one: sent again once (after 2**4 s), then the error is raised.
    app.send_task(ATTRIBUTE_TASK, args=[submission_id], kwargs={"retries": DATABASE_RETRIES - 1})

    def gave_up() -> re.Match[str] | None:
        return re.search(r"ERROR/\S+\] Error: OperationalError", worker_without_database.read_log())

    wait_for(gave_up, timeout=90, interval=0.5, message="the worker giving the group up")
    log = worker_without_database.read_log()
    resent = f"database unavailable: submissions [{submission_id}] are sent again"
    assert log.count(resent) == 1, log
    assert log.index(resent) < gave_up().start()  # type: ignore[union-attr]
