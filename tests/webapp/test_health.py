"""/healthz (liveness: database and broker), /readyz (and at least one worker answering with its engine),
and the JSON error answers of the API. Anonymous callers learn only ok / error; staff (logged in or with
their token) and a monitor with HEALTH_TOKEN get the detail (issue #18, finding 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

from tests.fixtures import WorkerProcess, api_client, wait_for
from tests.webapp import image_bytes, uploaded
from tests.workers.faults import celery_broker, free_port, redis_server
from webapp.accounts.services import token_create
from webapp.registry.models import HeadVersion
from webapp.submissions.models import Submission


def staff_client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.redis
def test_healthz_says_ok_when_the_database_and_the_broker_answer(staff: User) -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]
    detailed = staff_client(staff).get("/healthz")
    assert detailed.json() == {"status": "ok", "database": "ok", "broker": "ok"}


@pytest.mark.redis
def test_healthz_fails_when_the_broker_is_gone(staff: User, bob: User) -> None:
    with celery_broker(f"redis://127.0.0.1:{free_port()}/0"):
        anonymous = Client().get("/healthz")
        member = staff_client(bob).get("/healthz")
        response = staff_client(staff).get("/healthz")
    # Neither the anonymous nor a team member learns the error, with its host and port.
    assert (anonymous.status_code, anonymous.json()) == (503, {"status": "error"})
    assert (member.status_code, member.json()) == (503, {"status": "error"})
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"]) == ("error", "ok")
    assert "Connection refused" in body["broker"]


@pytest.mark.redis
def test_readyz_fails_while_no_worker_answers(staff: User, tmp_path: Path) -> None:
    with redis_server(tmp_path) as broker, celery_broker(broker.url):
        anonymous = Client().get("/readyz")
        response = staff_client(staff).get("/readyz")
    assert (anonymous.status_code, anonymous.json()) == (503, {"status": "error"})
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "ok", "broker": "ok", "workers": {}}


@pytest.mark.redis
def test_a_monitor_with_the_health_token_or_a_staff_token_gets_the_detail(
    staff: User, bob: User, settings: Settings
) -> None:
    settings.HEALTH_TOKEN = "monitor-secret-" + "x" * 20
    assert Client().get("/healthz", HTTP_AUTHORIZATION=f"Bearer {settings.HEALTH_TOKEN}").json()["broker"] == "ok"
    assert Client().get("/healthz", HTTP_AUTHORIZATION="Bearer wrong").json() == {"status": "ok"}
    staff_token = f"Token {token_create(user=staff).key}"
    assert Client().get("/healthz", HTTP_AUTHORIZATION=staff_token).json()["database"] == "ok"
    member_token = f"Token {token_create(user=bob).key}"
    assert Client().get("/healthz", HTTP_AUTHORIZATION=member_token).json() == {"status": "ok"}


@pytest.mark.redis
@pytest.mark.worker
def test_readyz_names_each_workers_device_backbone_and_head(
    worker: WorkerProcess, bob: User, staff: User, request: pytest.FixtureRequest
) -> None:
    # Ready before any task: the worker answers, with nothing loaded yet.
    response = staff_client(staff).get("/readyz")
    assert response.status_code == 200, response.content
    (status,) = response.json()["workers"].values()
    assert (status["backbone"], status["head_version"]) == (None, None)
    # The anonymous learn that it is ready, and nothing about the workers or their processes.
    anonymous = Client().get("/readyz")
    assert (anonymous.status_code, anonymous.json()) == (200, {"status": "ok"})
    assert str(worker.process.pid) not in anonymous.content.decode()

    head: HeadVersion = request.getfixturevalue("active_head")
    created = api_client(bob).post("/api/v1/submissions/", {"image": uploaded("r.png", image_bytes(seed=850))},
                                   format="multipart")
    pk = created.json()["id"]
    wait_for(lambda: Submission.objects.get(pk=pk).status == "done", timeout=120, message="the verdict")

    def loaded() -> dict[str, object] | None:
        (now,) = staff_client(staff).get("/readyz").json()["workers"].values()
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
