"""Fixtures every test package shares: the named users, API clients and worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from webapp.teams.models import Membership, Team
from webapp.teams.services import team_add_member, team_create

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"


def _user(username: str, team: Team | None, role: str = Membership.Role.MEMBER, **extra: object) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, **extra)
    if team is not None:
        team_add_member(team=team, username=username, role=role)
    return user


@pytest.fixture
def team_a(db: None) -> Team:
    return team_create(name="Team A")


@pytest.fixture
def team_b(db: None) -> Team:
    return team_create(name="Team B")


@pytest.fixture
def alice(team_a: Team) -> User:
    """Team admin of team A."""
    return _user("alice", team_a, Membership.Role.ADMIN)


@pytest.fixture
def bob(team_a: Team) -> User:
    """Member of team A."""
    return _user("bob", team_a)


@pytest.fixture
def charlie(team_b: Team) -> User:
    """Member of team B: an outsider to everything of team A."""
    return _user("charlie", team_b)


@pytest.fixture
def staff(db: None) -> User:
    """Site staff: manages the registry and the heads."""
    return _user("staff", None, is_staff=True)


def api_client(user: User | None = None) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def test_database_url() -> str:
    """The URL of the database the tests run on, for worker processes started by the tests."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"


class WorkerProcess:
    """A real `celery -A workers worker` process on the test database and broker."""

    def __init__(self, *, queues: str = "attribution,training", env: dict[str, str] | None = None,
                 pool: str = "prefork", concurrency: int = 1) -> None:
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        self.log_path = Path(os.environ["VAR_DIR"]) / f"worker-{uuid.uuid4().hex[:8]}.log"
        full_env = {**os.environ, "DATABASE_URL": test_database_url(), "PYTHONUNBUFFERED": "1", **(env or {})}
        command = [
            sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", queues, "-n", self.name,
            "--pool", pool, "--concurrency", str(concurrency), "--loglevel", "INFO", "--without-mingle",
            "--without-gossip",
        ]
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=full_env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 90) -> None:
        """Wait until the worker says it is ready (its engine loads at start)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.read_log()}")
            if " ready." in self.read_log():
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.read_log()}")

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int | None = None) -> None:
        if self.process.poll() is None:
            if sig is None:
                self.process.terminate()
            else:
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.log.close()


def purge_broker() -> None:
    from workers.celery import app

    app.control.purge()


@pytest.fixture
def worker(transactional_db: None) -> Iterator[WorkerProcess]:
    """A worker for one test; the test's data must be committed (transactional_db) for it to see."""
    purge_broker()
    process = WorkerProcess()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def wait_for(predicate, timeout: float = 60, interval: float = 0.2, message: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll until predicate() is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{message} not reached after {timeout}s")
