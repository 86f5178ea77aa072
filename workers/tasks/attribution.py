"""Attribution tasks (queue `attribution`) and the workers' status answer to a broadcast."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.signals import task_postrun, worker_process_init, worker_shutdown
from celery.worker.control import control_command
from django.conf import settings
from django.db import InterfaceError, OperationalError

from webapp.registry.selectors import head_version_active
from webapp.submissions.services import submissions_sweep_stale, verdict_create_batch
from workers import runtime
from workers.batching import GroupedTask, SimpleRequest

__all__ = ["attribute_submission", "sweep_stale_submissions", "worker_status"]

logger = logging.getLogger(__name__)


DATABASE_RETRIES = 5  # sends of a group whose database was away, before the sweep takes over


@shared_task(
    base=GroupedTask,
    name="workers.tasks.attribute_submission",
    acks_late=True,
    flush_every=2 * settings.ATTRIBUTION_BATCH_SIZE,
    flush_interval=settings.ATTRIBUTION_BATCH_WINDOW_MS / 1000,
)
def attribute_submission(requests: list[SimpleRequest]) -> int:
    """Attribute the submissions of a group of messages (one id each) with the active head, in
    forward passes of ATTRIBUTION_BATCH_SIZE. Called as `attribute_submission.delay(submission_id)`."""
    submission_ids = [int(request.args[0]) for request in requests]
    started = time.perf_counter()
    try:
        count = _attribute_group(submission_ids)
    except (OperationalError, InterfaceError):
        # The database away for a moment: send the ids again a little later; the claims make a
        # repeat harmless, and the sweep catches whatever is still queued after that.
        retries = max(int(request.kwargs.get("retries", 0)) for request in requests)
        if retries >= DATABASE_RETRIES:
            raise
        logger.warning("database unavailable: submissions %s are sent again", submission_ids, exc_info=True)
        for submission_id in submission_ids:
            attribute_submission.apply_async(
                (submission_id,), {"retries": retries + 1}, countdown=min(2**retries, 60)
            )
        return 0
    seconds = time.perf_counter() - started
    if count:
        runtime.throughput.record(count, seconds)
        logger.info(
            "attributed %d of %d submissions in %.2f s (%.1f images/s, %.1f since start) on %s, batch size %d",
            count, len(submission_ids), seconds, count / seconds, runtime.throughput.images_per_s,
            runtime.get_backbone().device, settings.ATTRIBUTION_BATCH_SIZE,
        )
    return count


def _attribute_group(submission_ids: list[int]) -> int:
    head = head_version_active()
    if head is None:
        # Not a failure: they stay queued, and the sweep sends them again after an activation.
        logger.warning("no active head version: submissions %s stay queued", submission_ids)
        return 0
    loaded = runtime.load_attributor(
        head_version_id=head.pk, version=head.version, artifact_name=head.artifact.name
    )
    verdicts = verdict_create_batch(
        submission_ids=submission_ids,
        head_version=head,
        attributor=loaded.attributor,
        feature_cache=runtime.get_feature_cache(),
        batch_size=settings.ATTRIBUTION_BATCH_SIZE,
        loader_threads=settings.ATTRIBUTION_LOADER_THREADS,
    )
    return len(verdicts)


@shared_task(name="workers.tasks.sweep_stale_submissions")
def sweep_stale_submissions() -> int:
    """Re-queue submissions a lost message or a dead worker left queued or processing (beat runs it)."""
    return len(submissions_sweep_stale())


# --- the workers' status ------------------------------------------------------------------------------
# A broadcast is answered by a worker's main process, but under the prefork pool the engine lives in
# its child processes. Each child writes what it holds (device, backbone, head version) to a small file
# after it starts and after every task; the main process answers with what its children wrote.

_main_pid = os.getpid()  # the worker's main process; a prefork child learns it when it starts


def _status_folder(main_pid: int) -> Path:
    return Path(settings.VAR_DIR) / "worker-status" / f"{socket.gethostname()}-{main_pid}"


def engine_status() -> dict[str, Any]:
    """What this process has loaded (device, precision, backbone identity, pretrained, head version:
    None until loaded), its batch size and what it has attributed since it started."""
    backbone = runtime.get_backbone() if runtime.get_backbone.cache_info().currsize else None
    return {
        "pid": os.getpid(),
        "device": str(backbone.device) if backbone else settings.ATTRIBUTION_DEVICE,
        "precision": backbone.precision if backbone else None,
        "backbone": backbone.identity if backbone else None,
        "pretrained": backbone.pretrained if backbone else None,
        "head_version": runtime.loaded_head_version(),
        "batch_size": settings.ATTRIBUTION_BATCH_SIZE,
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
