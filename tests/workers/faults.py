"""Fault injection helpers: a private Redis server to kill, this process's Celery app pointed at it, and the
pool processes of a worker (to kill them as the out-of-memory killer would).

The machine's shared Redis is never stopped: each such test starts its own `redis-server` on a free
port, without persistence, so that killing it loses every message it held (the worst case).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bench.stack import RedisServer, free_port, redis_server
from bench.stack import child_processes as pool_children

__all__ = ["RedisServer", "celery_broker", "free_port", "pool_children", "redis_server"]


def _drop_connections() -> None:
    from kombu import pools

    from workers.celery import app

    pools.reset()  # closes kombu's pools and forgets them (they are shared by broker URL)
    app._after_fork()  # the app forgets its connection and producer pools
    app.control.mailbox.__dict__.pop("producer_pool", None)


@contextmanager
def celery_broker(url: str, **transport_options: object) -> Iterator[None]:
    """Send this process's tasks and broadcasts to `url` for the duration (the settings' broker after)."""
    from workers.celery import app

    # The app reads Django's settings under the CELERY_ namespace: the keys to change are those.
    saved = app.conf.CELERY_BROKER_URL, app.conf.CELERY_BROKER_TRANSPORT_OPTIONS
    app.conf.update(
        CELERY_BROKER_URL=url, CELERY_BROKER_TRANSPORT_OPTIONS={**saved[1], **transport_options}
    )
    _drop_connections()
    try:
        yield
    finally:
        app.conf.update(CELERY_BROKER_URL=saved[0], CELERY_BROKER_TRANSPORT_OPTIONS=saved[1])
        _drop_connections()
