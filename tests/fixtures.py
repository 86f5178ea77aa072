"""Fixtures every test package shares: the named users, API clients and worker processes."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from bench import stack
from webapp.teams.models import Membership, Team
from webapp.teams.services import team_add_member, team_create
from workers import test_gate

REPO_ROOT = stack.REPO_ROOT
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


class WorkerGate:
    """The test side of `workers.test_gate`: a folder where a worker's tasks say that they are held, and
    where the test lets them go. Open (nothing held) unless the test closes it."""

    def __init__(self, folder: Path, *, open_: bool = True) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._seen: set[str] = set()
        if open_:
            self.open()

    def open(self) -> None:
        (self.folder / "open").touch()

    def close(self) -> None:
        (self.folder / "open").unlink(missing_ok=True)

    def wait_held(self, kind: str = "attribution", timeout: float = 120) -> tuple[Path, list[int]]:
        """The next hold of `kind` not returned before (its file and its ids), once a task is held."""

        def next_hold() -> Path | None:
            fresh = [p for p in self.folder.glob(f"{kind}-*.held") if p.name not in self._seen]
            return min(fresh, key=lambda p: p.stat().st_mtime_ns) if fresh else None

        held = wait_for(next_hold, timeout=timeout, interval=0.02, message=f"a held {kind} task")
        self._seen.add(held.name)
        return held, [int(i) for i in json.loads(held.read_text())]

    def release(self, held: Path) -> None:
        held.unlink(missing_ok=True)


class WorkerProcess(stack.WorkerProcess):
    """A real `celery -A workers worker` process on the test database and broker, with a gate
    (`self.gate`, open unless `gate_open=False`) that lets the test hold its tasks at known points."""

    def __init__(self, *, queues: str = "attribution,training", env: dict[str, str] | None = None,
                 pool: str = "prefork", concurrency: int = 1, gate_open: bool = True) -> None:
        var_dir = Path(os.environ["VAR_DIR"])
        self.gate = WorkerGate(Path(tempfile.mkdtemp(prefix="gate-", dir=var_dir)), open_=gate_open)
        full_env = {**os.environ, "DATABASE_URL": test_database_url(), test_gate.ENV: str(self.gate.folder),
                    **(env or {})}
        super().__init__(env=full_env, log_dir=var_dir, queues=queues, pool=pool, concurrency=concurrency,
                         name_prefix="test")


def broker_queue_length(queue: str = "attribution") -> int:
    """Messages waiting in `queue` on the tests' Redis, under this run's key prefix."""
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5)
    return int(client.llen(os.environ.get("CELERY_BROKER_KEY_PREFIX", "") + queue))


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
