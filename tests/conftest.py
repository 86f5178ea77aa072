"""Shared fixtures: named users (alice, bob, charlie), real services, a real Celery worker.

The environment is fixed here, before Django reads its settings: a private folder for media,
the feature cache and the model cache, and Redis database 15 as the broker when Redis answers
(REDIS_URL overrides it). Every broker key of this run (queues, unacknowledged messages, the
broadcasts that ask workers for their status) is under a prefix of its own, so that two runs on
one machine, even on the same Redis database, never take, purge or answer each other's messages.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid

_VAR = tempfile.mkdtemp(prefix="attribution-tests-")
os.environ.setdefault("VAR_DIR", _VAR)
os.environ.setdefault("ATTRIBUTION_DEVICE", "cpu")
# A fixed batch size: "auto" times several sizes whenever a worker starts (its own test sets it back).
os.environ.setdefault("ATTRIBUTION_BATCH_SIZE", "8")
# The head's block pinned: "auto" (the default) fits a probe per block at every training, seconds each; the
# tests that are about the choice set it back.
os.environ.setdefault("ATTRIBUTION_BLOCKS", "8")
os.environ.setdefault("CELERY_VISIBILITY_TIMEOUT", "30")


def _redis_reachable(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


REDIS_AVAILABLE = _redis_reachable()
BROKER_KEY_PREFIX = f"attribution-tests-{uuid.uuid4().hex[:12]}:"
if REDIS_AVAILABLE:
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
    os.environ["CELERY_BROKER_KEY_PREFIX"] = BROKER_KEY_PREFIX  # worker processes inherit it
    # The shared cache (login failures, throttles) too: web servers started by a test inherit it.
    os.environ["CACHE_KEY_PREFIX"] = BROKER_KEY_PREFIX + "cache"
else:
    os.environ["REDIS_URL"] = ""  # the filesystem broker; tests marked `redis` are skipped

# Django is set up here, after the environment above, and not by pytest-django from an ini option:
# that would read the settings before this file runs (pytest-django completes its set-up later).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

import django  # noqa: E402
import pytest  # noqa: E402

django.setup()

from django.contrib.auth.hashers import PBKDF2PasswordHasher  # noqa: E402

# Tests make many users: a cheap hash of the same algorithm, which every process still verifies
# (the iteration count is stored in each hash), instead of about a second per user.
PBKDF2PasswordHasher.iterations = 1_000

pytest_plugins = ["tests.fixtures", "tests.fixtures_registry"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if REDIS_AVAILABLE:
        return
    skip = pytest.mark.skip(reason="REDIS UNAVAILABLE: no Redis answers on 127.0.0.1:6379")
    for item in items:
        if "redis" in item.keywords or "worker" in item.keywords:
            item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove this run's broker keys (messages purged or left by a killed worker) from the shared Redis."""
    if not REDIS_AVAILABLE or not os.environ.get("REDIS_URL"):
        return
    import redis

    try:
        client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5)
        keys = list(client.scan_iter(match=BROKER_KEY_PREFIX + "*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass  # a Redis gone by now holds nothing of ours either
