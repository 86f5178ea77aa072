"""Fault injection helpers: a private Redis server to kill, this process's Celery app pointed at it, and the
pool processes of a worker (to kill them as the out-of-memory killer would).

The machine's shared Redis is never stopped: each such test starts its own `redis-server` on a free
port, without persistence, so that killing it loses every message it held (the worst case).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """`redis-server` on 127.0.0.1:port with its files in `folder`; start, kill (SIGKILL) and start again."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=0, socket_timeout=5)

    def start(self, timeout: float = 10) -> RedisServer:
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - the server holds it until killed
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise TimeoutError(f"redis-server on port {self.port} did not answer within {timeout}s")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save; whatever the server held is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def queue_length(self, queue: str = "attribution") -> int:
        return int(self.client().llen(queue))


@contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    server = RedisServer(folder).start()
    try:
        yield server
    finally:
        server.kill()


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


def pool_children(pid: int) -> list[int]:
    """The pool processes of the worker whose main process is `pid` (Linux: read from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children
