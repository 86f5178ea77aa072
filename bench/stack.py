"""The development stack as real processes on this machine: Redis, a Celery worker and the web server.

The tests (`tests/fixtures.py`, `tests/workers/faults.py`) and the benchmarks (`bench/end_to_end.py`)
start and stop their processes with this one module. Each process runs in a session of its own (its
children, gunicorn's workers and Celery's pool processes, are stopped with it) and writes its output
to a log file, which the waits read to say why a process did not come up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

REPO_ROOT = Path(__file__).resolve().parent.parent
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _parents() -> dict[int, list[int]]:
    """Every process's children, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def child_processes(pid: int) -> list[int]:
    """The direct children of `pid` (a worker's pool processes)."""
    return sorted(_parents().get(pid, []))


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children = _parents()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def high_water_mb(pid: int) -> float:
    """VmHWM (peak resident set) of one process, in MiB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def wait_until(ready: Callable[[], object], *, timeout: float, what: str,
               processes: Sequence[Process] = (), interval: float = 0.2) -> None:
    """Poll `ready()` until it is truthy; fail at once, with its log, if one of `processes` exits."""
    deadline = time.monotonic() + timeout
    while True:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.name} exited with {process.poll()}:\n{process.log_tail()}")
        if ready():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(interval)


def manage(env: Mapping[str, str], *args: str, timeout: float = 900) -> str:
    """`python manage.py ARGS` with `env`; its standard output, or RuntimeError with its output."""
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=dict(env),
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return done.stdout


class Process:
    """A child process in a session of its own, its output (stdout and stderr) in `log_path`."""

    def __init__(self, name: str, command: Sequence[str], *, env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:  # the child holds its own descriptor
            self.process = subprocess.Popen(list(command), cwd=REPO_ROOT, env=dict(env), stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.read_log().splitlines()[-lines:])

    def stop(self, sig: int | None = None, timeout: float = 30) -> None:
        """Without `sig`: SIGTERM to the main process (a graceful stop: a worker finishes what it runs).
        With `sig`: that signal to the whole process group at once (SIGKILL: no shutdown at all).
        Whatever is left of the group after `timeout` seconds, and after the main process, is killed."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if sig is None:
                    self.process.terminate()
                else:
                    os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # children left behind, or a main that hung
        self.process.wait(timeout=30)


class RedisServer:
    """`redis-server` on 127.0.0.1:port without persistence, its files in `folder`: start, kill (SIGKILL:
    whatever it held is lost) and start again on the same port."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=0, socket_timeout=5)

    def start(self, timeout: float = 10) -> RedisServer:
        import redis

        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.folder)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise TimeoutError(f"redis-server on port {self.port} did not answer within {timeout}s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def queue_length(self, queue: str = "attribution", key_prefix: str | None = None) -> int:
        """Messages waiting in `queue`, under the broker's key prefix (CELERY_BROKER_KEY_PREFIX by default)."""
        prefix = os.environ.get("CELERY_BROKER_KEY_PREFIX", "") if key_prefix is None else key_prefix
        return int(self.client().llen(prefix + queue))


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    server = RedisServer(folder).start()
    try:
        yield server
    finally:
        server.kill()


class WorkerProcess(Process):
    """A real `celery -A workers worker` process with `env` (its database, broker and settings)."""

    def __init__(self, *, env: Mapping[str, str], log_dir: Path, queues: str = "attribution,training",
                 pool: str = "prefork", concurrency: int = 1, name_prefix: str = "worker") -> None:
        tag = uuid.uuid4().hex[:8]
        self.hostname = f"{name_prefix}-{tag}@%h"
        command = [
            sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", queues, "-n", self.hostname,
            "--pool", pool, "--concurrency", str(concurrency), "--loglevel", "INFO", "--without-mingle",
            "--without-gossip",
        ]
        super().__init__(self.hostname, command, env={**env, "PYTHONUNBUFFERED": "1"},
                         log_path=log_dir / f"worker-{tag}.log")

    def wait_ready(self, timeout: float = 180) -> None:
        """Until the worker says it is ready (its pool processes load the engine first)."""
        wait_until(lambda: " ready." in self.read_log(), timeout=timeout, what=self.name, processes=[self])


class WebServer(Process):
    """gunicorn serving `webapp.wsgi` on a free localhost port."""

    def __init__(self, *, env: Mapping[str, str], log_dir: Path, workers: int = 2) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "gunicorn", "webapp.wsgi", "--bind", f"127.0.0.1:{self.port}",
                   "--workers", str(workers), "--access-logfile", "-"]
        super().__init__("web", command, env={**env, "PYTHONUNBUFFERED": "1"}, log_path=log_dir / "web.log")

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/healthz", timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 120) -> None:
        wait_until(self.answers, timeout=timeout, what="the web server", processes=[self], interval=0.3)
