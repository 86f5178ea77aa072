"""The whole path through a real Celery worker process and Redis: upload, queue, verdict, failure."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.test import Client

from attribution.synth import DEFAULT_KNOWN, DEFAULT_UNKNOWN
from tests.fixtures import WorkerProcess, api_client, broker_queue_length, wait_for
from tests.webapp import image_bytes, uploaded
from webapp.submissions.models import Submission, Verdict
from webapp.submissions.services import submission_create, submissions_sweep_stale

pytestmark = [pytest.mark.worker, pytest.mark.redis]


def synth_image(synth_dir: Path, label: str, index: int = 0) -> Path:
    return sorted((synth_dir / label).glob("*.png"))[index]


def api_upload(user: User, path: Path) -> int:
    response = api_client(user).post(
        "/api/v1/submissions/", {"image": uploaded(path.name, path.read_bytes())}, format="multipart"
    )
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


def groups_logged(log: str) -> list[int]:
    """The size of each group the worker attributed, in order, from its log."""
    return [int(n) for n in re.findall(r"attributed \d+ of (\d+) submissions", log)]


def statuses(ids: list[int]) -> dict[int, str]:
    return dict(Submission.objects.filter(pk__in=ids).values_list("id", "status"))


def test_uploads_come_back_as_verdicts_and_an_unreadable_file_fails(
    worker: WorkerProcess, bob: User, synth_dir: Path, request: pytest.FixtureRequest
) -> None:
    # Before any head is active, the worker leaves an upload queued instead of failing it.
    early = api_upload(bob, synth_image(synth_dir, DEFAULT_UNKNOWN[0]))
    wait_for(
        lambda: "no active head version" in worker.read_log(), timeout=120, message="the worker's warning"
    )
    assert statuses([early]) == {early: "queued"}

    head = request.getfixturevalue("active_head")
    assert submissions_sweep_stale(stale_after_s=0) == [early]  # what the periodic sweep does
    known = api_upload(bob, synth_image(synth_dir, DEFAULT_KNOWN[2]))
    real = api_upload(bob, synth_image(synth_dir, "real", 5))
    # The stored bytes are damaged after the upload was checked and before the worker reads them. (An
    # image whose features are cached under its SHA-256 is never read again: this one is new.)
    with transaction.atomic():
        broken = submission_create(
            team=bob.membership.team,
            user=bob,
            uploaded_file=uploaded("x.png", image_bytes("PNG", size=(64, 48), seed=4242)),
        )
        default_storage.delete(broken.image.name)
        default_storage.save(broken.image.name, ContentFile(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40))
    ids = [early, known, real, broken.pk]

    def finished() -> dict[int, str] | None:
        now = statuses(ids)
        return now if set(now.values()) <= {"done", "failed"} else None

    try:
        final = wait_for(finished, timeout=180, message="every upload done or failed")
    except TimeoutError as error:
        raise AssertionError(f"{error}: {statuses(ids)}\n{worker.read_log()[-4000:]}") from None

    assert final == {early: "done", known: "done", real: "done", broken.pk: "failed"}
    client = api_client(bob)
    for pk in (early, known, real):
        body = client.get(f"/api/v1/submissions/{pk}/").json()
        verdict = body["verdict"]
        assert body["status"] == "done" and body["error"] == ""
        assert verdict["head_version"] == head.version
        assert verdict["decision"] in ("real", "known_generator", "unknown_generator")
        assert set(verdict["probabilities"]) == set(head.classes)
        assert (verdict["backbone"], verdict["pretrained"]) == ("ViT-S-16/random-seed0", False)
        assert Verdict.objects.filter(submission_id=pk).count() == 1
    # The known generator's image is one of its own references: the worker finds it as evidence.
    nearest = client.get(f"/api/v1/submissions/{known}/").json()["verdict"]["nearest_references"][0]
    assert (nearest["label"], nearest["similarity"]) == (DEFAULT_KNOWN[2], pytest.approx(1.0, abs=1e-2))
    failed = client.get(f"/api/v1/submissions/{broken.pk}/").json()
    assert failed["verdict"] is None
    assert failed["error"] == "the stored image could not be read: not a recognised image file"

    # The worker answers the status broadcast that /readyz sends.
    from workers.celery import app

    replies = app.control.broadcast("worker_status", reply=True, timeout=10, limit=1)
    (status,) = [info for reply in replies for info in reply.values()]
    assert (
        status["device"] == "cpu" and "head_version" in status and status["backbone"].startswith("ViT-S-16")
    )


def test_single_uploads_are_grouped_into_forward_passes_and_the_worker_reports_its_rate(
    transactional_db: None, active_head: object, bob: User, staff: User
) -> None:
    from tests.fixtures import purge_broker
    from workers.celery import app

    purge_broker()
    # Ten uploads of one image each: ten messages, queued before the worker starts.
    ids = [
        submission_create(
            team=bob.membership.team, user=bob, uploaded_file=uploaded(f"one-{i}.png", image_bytes(seed=7700 + i))
        ).pk
        for i in range(10)
    ]
    # Passes of 4 images, groups of up to two passes (8). The gate holds the first group, whatever its size,
    # until the worker has taken every other message off the queue: those wait, however many, while the
    # pool process is busy, and then go together as one group instead of trickling in as tiny passes.
    worker = WorkerProcess(env={"ATTRIBUTION_BATCH_SIZE": "4", "ATTRIBUTION_BATCH_WINDOW_MS": "500"},
                           gate_open=False)
    try:
        worker.wait_ready()
        held_file, first = worker.gate.wait_held()
        wait_for(lambda: broker_queue_length() == 0, timeout=60, interval=0.05, message="every message taken")
        worker.gate.open()  # the next group is not held
        worker.gate.release(held_file)
        wait_for(lambda: set(statuses(ids).values()) == {"done"}, timeout=180, message="every upload done")
        wait_for(lambda: len(groups_logged(worker.read_log())) == 2, timeout=30, message="the second group's log")
        log = worker.read_log()
        replies = app.control.broadcast("worker_status", reply=True, timeout=10, limit=1)
        page = Client()
        page.force_login(staff)
        html = page.get("/workers/").content.decode()
    finally:
        worker.stop()
    size = len(first)
    assert 0 < size <= 8 and set(first) <= set(ids)
    assert groups_logged(log) == [size, 10 - size], log[-3000:]
    assert "images/s" in log
    prefix = worker.name.split("@")[0] + "@"  # the name with its %h expanded
    (status,) = [info for reply in replies for name, info in reply.items() if name.startswith(prefix)]
    assert status["batch_size"] == 4 and status["device"] == "cpu" and status["precision"] == "fp32"
    throughput = status["throughput"]
    assert (throughput["groups"], throughput["images"], throughput["last_group_size"]) == (2, 10, 10 - size)
    assert throughput["images_per_s"] > 0 and throughput["busy_s"] > 0
    # The staff page shows the same.
    assert "1 worker answering" in html and prefix in html and "cpu (fp32)" in html, html
    assert "ViT-S-16/random-seed0" in html and "not pretrained" in html and "10 in 2 groups" in html
    assert f"{10 - size} images at" in html
