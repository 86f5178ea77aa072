"""Issue #18, findings 4 and 6: every page carries a Content-Security-Policy that names no other origin and
loads nothing from another host (the API docs come from our static files), inline scripts carry the
request's nonce, and a body over REQUEST_MAX_BYTES is refused with 413 before it is read."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.test import Client, override_settings

from tests.fixtures import REPO_ROOT
from tests.webapp import image_bytes, uploaded
from tests.workers.faults import free_port
from webapp.registry import services as registry
from webapp.registry.models import TrainingJob
from webapp.submissions.services import submission_create

URL = re.compile(r"""(?:https?:)?//([A-Za-z0-9.\-]+(?::\d+)?)""")


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def check_page(client: Client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["default-src"] == "'self'" and directives["object-src"] == "'none'", policy
    assert directives["frame-ancestors"] == "'none'", policy
    sources = " ".join(directives.values())
    assert "http" not in sources and "*" not in sources, f"{path}: another origin in {policy}"
    html = response.content.decode()
    # Nothing in the page comes from (or points at) another host (an XML namespace is a name, not a load).
    text = re.sub(r'\sxmlns(:\w+)?="[^"]*"', "", html)
    assert [m.group(0) for m in URL.finditer(text) if m.group(1) != "testserver"] == [], path
    nonce = re.search(r"'nonce-([^']+)'", directives["script-src"])
    for tag in re.findall(r"<script\b[^>]*>", html):
        if "src=" in tag:
            assert re.search(r'src="/(?!/)', tag), f"{path}: {tag}"  # this origin
        else:  # an inline script runs only with this response's nonce
            assert nonce and f'nonce="{nonce.group(1)}"' in tag, f"{path}: {tag} under {policy}"
    assert not re.search(r"\son[a-z]+=", html), f"{path}: an inline event handler, which the policy blocks"
    return html


def test_every_main_page_has_a_policy_with_no_other_origin(bob: User, staff: User) -> None:
    team = bob.membership.team
    submission = submission_create(team=team, user=bob, uploaded_file=uploaded("s.png", image_bytes(seed=1810)))
    generator = registry.generator_create(actor=staff, name="Gen Y", slug="gen-y", family="gan")
    job = TrainingJob.objects.create(requested_by=staff, status=TrainingJob.Status.RUNNING)
    check_page(Client(), "/accounts/login/")
    for path in ("/submissions/", "/submissions/upload/", f"/submissions/{submission.pk}/", "/cases/",
                 "/registry/", "/registry/heads/", "/accounts/tokens/", "/api/docs/"):
        check_page(logged_in(bob), path)
    for path in (f"/registry/generators/{generator.slug}/", f"/registry/training-jobs/{job.pk}/", "/workers/",
                 "/audit/", "/django-admin/"):
        html = check_page(logged_in(staff), path)
        if "generators" in path:  # the delete button asks through app.js, not an inline handler
            assert 'data-confirm="Delete Gen Y and its reference images?"' in html


def test_the_api_docs_come_from_our_static_files(db: None) -> None:
    html = Client().get("/api/docs/").content.decode()
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert any("swagger-ui-bundle.js" in src for src in scripts)
    for src in scripts:
        if src.startswith("/static/"):
            assert finders.find(src.removeprefix("/static/")), src  # shipped by drf-spectacular-sidecar
    (start_up,) = [src for src in scripts if "script" in src and not src.startswith("/static/")]
    script = Client().get(start_up)
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


# --- the request body cap


@override_settings(REQUEST_MAX_BYTES=1024 * 1024)
def test_a_body_over_the_cap_is_refused_with_413(bob: User) -> None:
    client = logged_in(bob)
    big = uploaded("big.png", b"\x89PNG" + b"\0" * (2 * 1024 * 1024))
    response = client.post("/api/v1/submissions/", {"image": big})
    assert response.status_code == 413
    assert "over the limit" in response.json()["detail"]
    assert client.post("/api/v1/submissions/", {"image": uploaded("ok.png", image_bytes(seed=1811))}).status_code == 201


def test_a_real_server_answers_413_before_the_body_is_sent(tmp_path: Path) -> None:
    """runserver on the default cap (256 MB): a request that announces 300 MB and sends nothing of it gets
    its 413 at once. The server would otherwise wait for the body, and the read below would time out."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        from tests.fixtures import wait_for

        def connect() -> socket.socket | None:
            try:
                return socket.create_connection(("127.0.0.1", port), timeout=30)
            except OSError:
                return None

        sock = wait_for(connect, timeout=60, interval=0.2, message="runserver")
        with sock:
            sock.sendall(
                b"POST /api/v1/submissions/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 314572800\r\n\r\n"
            )
            answer = sock.recv(4096).decode(errors="replace")
        assert answer.startswith("HTTP/1.1 413"), answer
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("name", ["web", "nginx"])
def test_compose_puts_nginx_in_front_and_publishes_no_gunicorn_port(name: str) -> None:
    import yaml

    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    if name == "web":
        assert "ports" not in services["web"]
        assert services["web"]["environment"]["NUM_PROXIES"] == "1"
    else:
        assert services["nginx"]["ports"]
        config = (REPO_ROOT / "deploy" / "nginx.conf").read_text()
        assert "client_max_body_size" in config and "proxy_pass http://web:8000" in config
        for header in ("X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options"):
            assert header in config
