"""Sending Celery tasks from a request or a service: one way, one failure policy.

A task is sent by name once the current transaction commits (a rollback sends nothing), so a worker never
looks for a row that is not there yet. If the broker cannot be reached, the error is logged, never raised:
the rows the task was about are already committed in a state that a periodic sweep notices (a queued
submission, a queued training job) and sends again once the broker is back, and `on_failure`, when given,
lets the caller record the outcome (a training job is ended at once, so that the admin can retry). A broker
outage is therefore never a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)


def tasks_send(name: str, arg_lists: Sequence[Sequence[Any]]) -> bool:
    """Send `name` once per argument list, all through one broker connection, now; returns False (and logs)
    when the broker could not be reached, leaving the re-sending to the sweeps."""
    from workers.celery import app

    try:
        with app.producer_or_acquire() as producer:
            for args in arg_lists:
                app.send_task(name, args=list(args), producer=producer)
    except Exception:
        logger.exception("could not send %d %s task(s); the periodic sweep sends them again", len(arg_lists), name)
        return False
    return True


def task_send_on_commit(name: str, *args: Any, on_failure: Callable[[], None] | None = None) -> None:
    """Send one task after the current transaction commits (at once outside a transaction)."""
    tasks_send_on_commit(name, [args], on_failure=on_failure)


def tasks_send_on_commit(
    name: str, arg_lists: Sequence[Sequence[Any]], *, on_failure: Callable[[], None] | None = None
) -> None:
    """Send `name` once per argument list after the current transaction commits; `on_failure()` is called
    when the broker could not be reached."""
    if arg_lists:
        transaction.on_commit(partial(_send, name, [list(args) for args in arg_lists], on_failure))


def _send(name: str, arg_lists: list[list[Any]], on_failure: Callable[[], None] | None) -> None:
    if not tasks_send(name, arg_lists) and on_failure is not None:
        on_failure()
