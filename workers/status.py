"""The workers' status: what each process has loaded and done, answered to a `worker_status` broadcast.

A broadcast is answered by a worker's main process, but under the prefork pool the engine lives in its child
processes. Each child writes what it holds (device, backbone, head version) to a small file after it starts
and after every task; the main process answers with what its children wrote. Imported by the Celery app, so
that the signal handlers and the control command are registered in every worker.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from celery.signals import task_postrun, worker_process_init, worker_shutdown
from celery.worker.control import control_command
from django.conf import settings

from workers import runtime

logger = logging.getLogger(__name__)

_main_pid = os.getpid()  # the worker's main process; a prefork child learns it when it starts


def _status_folder(main_pid: int) -> Path:
    return Path(settings.VAR_DIR) / "worker-status" / f"{socket.gethostname()}-{main_pid}"


def engine_status() -> dict[str, Any]:
    """What this process has loaded (device, precision, backbone identity, pretrained, head version:
    None until loaded), its batch size and what it has attributed since it started."""
    backbone = runtime.get_backbone() if runtime.get_backbone.cache_info().currsize else None
    choice = runtime.batch_choice()
    return {
        "pid": os.getpid(),
        "device": str(backbone.device) if backbone else settings.ATTRIBUTION_DEVICE,
        "precision": backbone.precision if backbone else None,
        "backbone": backbone.identity if backbone else None,
        "pretrained": backbone.pretrained if backbone else None,
        "head_version": runtime.loaded_head_version(),
        # A fixed size, or the one "auto" measured in this process (None until it has).
        "batch_size": settings.ATTRIBUTION_BATCH_SIZE or (choice.batch_size if choice else None),
        "batch_timings": [timing.as_dict() for timing in choice.timings] if choice else [],
        "throughput": runtime.throughput.to_dict(),
        "updated_at": time.time(),
    }


def status_publish() -> None:
    folder = _status_folder(_main_pid)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{os.getpid()}.json"
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(engine_status()))
    partial.replace(path)  # readers never see half a file


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status_collect(main_pid: int) -> list[dict[str, Any]]:
    """The statuses the worker's live processes wrote, newest first (files of dead ones are removed)."""
    statuses = []
    for path in _status_folder(main_pid).glob("*.json"):
        if not _alive(int(path.stem)):
            path.unlink(missing_ok=True)
            continue
        try:
            statuses.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # removed or replaced under us: the next answer has it
    return sorted(statuses, key=lambda status: -status["updated_at"])


@worker_process_init.connect
def _child_started(**kwargs: Any) -> None:
    global _main_pid
    _main_pid = os.getppid()
    if settings.ATTRIBUTION_WARMUP:
        try:
            runtime.warm_up()
        except Exception:
            # The process still starts: its tasks fail with the same error, and /readyz shows no backbone.
            logger.exception("warm-up failed")
    status_publish()


@task_postrun.connect
def _task_finished(**kwargs: Any) -> None:
    try:
        status_publish()
    except OSError:
        logger.warning("could not write the worker status", exc_info=True)


@worker_shutdown.connect
def _worker_stopped(**kwargs: Any) -> None:
    shutil.rmtree(_status_folder(os.getpid()), ignore_errors=True)


@control_command()
def worker_status(state: Any) -> dict[str, Any]:
    """`app.control.broadcast("worker_status", reply=True)`: the device, backbone and head version of the
    worker's most recently active process (its pool's child, or itself under the solo and thread pools),
    and each live process's own under `processes`."""
    processes = status_collect(os.getpid())
    return {**(processes[0] if processes else engine_status()), "processes": processes}
