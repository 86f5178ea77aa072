"""Checks of the services the platform depends on, for /healthz and /readyz."""

from __future__ import annotations

from typing import Any

from django.db import connection

from workers.celery import app as celery_app


def database_ok() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True, "ok"
    except Exception as exc:  # any driver error means "not reachable"
        return False, f"{type(exc).__name__}: {exc}"


def broker_ok(timeout: float = 2.0) -> tuple[bool, str]:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
        return True, "ok"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


def workers_status(timeout: float = 2.0) -> dict[str, dict[str, Any]]:
    """Each worker that answers within `timeout`, by name: device, precision, backbone, head version,
    batch size and throughput (see workers/tasks/attribution.py). Raises when the broker cannot be asked."""
    replies = celery_app.control.broadcast("worker_status", reply=True, timeout=timeout)
    return {name: info for reply in replies or [] for name, info in sorted(reply.items())}


def workers_ok(timeout: float = 2.0) -> tuple[bool, dict[str, object]]:
    """Ping the workers; each answers with its device and loaded head version."""
    try:
        workers = workers_status(timeout)
    except Exception as exc:
        return False, {"error": f"{type(exc).__name__}: {exc}"}
    return bool(workers), dict(workers)
