"""ATTRIBUTION_BATCH_SIZE=auto: a real worker times batch sizes on its own device when it starts, keeps the
fastest, and says so in its status and on the staff workers page."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.fixtures import WorkerProcess, wait_for


@pytest.mark.worker
@pytest.mark.redis
def test_the_worker_measures_its_batch_size_and_shows_the_table(transactional_db: None, staff: User) -> None:
    from workers.celery import app

    worker = WorkerProcess(env={"ATTRIBUTION_BATCH_SIZE": "auto", "ATTRIBUTION_BATCH_CANDIDATES": "1,2"})
    try:
        worker.wait_ready()

        def measured() -> dict | None:  # type: ignore[type-arg]
            replies = app.control.broadcast("worker_status", reply=True, timeout=5)
            statuses = [info for reply in replies for info in reply.values() if info.get("batch_timings")]
            return statuses[0] if statuses else None

        status = wait_for(measured, timeout=120, interval=0.5, message="a status with the measured sizes")
        timings = status["batch_timings"]
        assert [t["batch_size"] for t in timings] == [1, 2] and all(t["images_per_s"] > 0 for t in timings)
        assert status["batch_size"] == max(timings, key=lambda t: t["images_per_s"])["batch_size"]
        assert f"batch size {status['batch_size']} (auto)" in worker.read_log()
        page = Client()
        page.force_login(staff)
        html = page.get("/workers/").content.decode()
        assert "measured" in html and f"{status['batch_size']}: " in html and "(chosen)" in html
    finally:
        worker.stop()
