"""/healthz (liveness: database and broker), /readyz (and at least one worker answering with its engine),
and the JSON error answers of the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.fixtures import WorkerProcess, api_client, wait_for
from tests.webapp import image_bytes, uploaded
from tests.workers.faults import celery_broker, free_port, redis_server
from webapp.registry.models import HeadVersion
from webapp.submissions.models import Submission

pytestmark = pytest.mark.redis


def test_healthz_says_ok_when_the_database_and_the_broker_answer(db: None) -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_healthz_fails_when_the_broker_is_gone(db: None) -> None:
    with celery_broker(f"redis://127.0.0.1:{free_port()}/0"):
        response = Client().get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"]) == ("error", "ok")
    assert "Connection refused" in body["broker"]


def test_readyz_fails_while_no_worker_answers(db: None, tmp_path: Path) -> None:
    with redis_server(tmp_path) as broker, celery_broker(broker.url):
        response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "ok", "broker": "ok", "workers": {}}


@pytest.mark.worker
def test_readyz_names_each_workers_device_backbone_and_head(
    worker: WorkerProcess, bob: User, request: pytest.FixtureRequest
) -> None:
    # Ready before any task: the worker answers, with nothing loaded yet.
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    (status,) = response.json()["workers"].values()
    assert (status["backbone"], status["head_version"]) == (None, None)

    head: HeadVersion = request.getfixturevalue("active_head")
    created = api_client(bob).post("/api/v1/submissions/", {"image": uploaded("r.png", image_bytes(seed=850))},
                                   format="multipart")
    pk = created.json()["id"]
    wait_for(lambda: Submission.objects.get(pk=pk).status == "done", timeout=120, message="the verdict")

    def loaded() -> dict[str, object] | None:
        (now,) = Client().get("/readyz").json()["workers"].values()
        return now if now["head_version"] == head.version else None

    status = wait_for(loaded, timeout=30, interval=0.5, message="the worker's status after its first task")
    # The answer comes from the pool process that ran the task, not from the worker's main process.
    assert status["pid"] != worker.process.pid and status["pid"] in [p["pid"] for p in status["processes"]]
    assert (status["device"], status["backbone"], status["pretrained"]) == ("cpu", "ViT-S-16/random-seed0", False)


def test_an_api_url_that_names_nothing_gets_a_json_404(db: None) -> None:
    for path in ("/api/v1/no-such-thing/", "/api/v1/cases/not-a-number/", "/api/v2/"):
        response = Client().get(path)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "Not found."}
    assert Client().get("/no-such-page/")["Content-Type"].startswith("text/html")


def test_a_nul_character_in_the_url_is_a_bad_request(bob: User) -> None:
    response = api_client(bob).get("/api/v1/submissions/", {"q": "x\x00y"})
    assert response.status_code == 400
    assert response.json() == {"detail": "NUL characters are not allowed in the URL."}
    client = Client()
    client.force_login(bob)
    assert client.get("/submissions/", {"q": "\x00"}).status_code == 400
