"""Grouping single-submission messages into one forward pass, on top of celery-batches.

Each upload is one message on the `attribution` queue, so a worker decides how many images go
into a pass (a GPU worker takes more than a CPU one). celery-batches buffers the messages in
the worker's main process and hands a list of them to a pool process. This subclass adds what
the attribution queue needs from it:

- Buffered messages are handed on when `flush_every` have arrived, or after `flush_interval`
  seconds when the queue is short; but while every pool process is busy a partial group keeps
  filling instead of queueing behind the running one as a handful of tiny passes.
- After a lost broker connection, the buffer and the flush timer start afresh (the broker hands
  the unacknowledged messages out again), as Celery does with its own reserved tasks.
- Acknowledgement stays late: messages are acknowledged when their group has run. A group whose
  pool process died (WorkerLostError) is handed back to the queue, like a plain task under
  `task_reject_on_worker_lost`: the submissions' claims and attempts make the second delivery
  safe, and an image that kills its worker every time ends as failed.
- The task's time limits apply to the group (celery-batches sets none).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Collection
from typing import Any

from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery.worker.request import Request
from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task

__all__ = ["GroupedTask", "SimpleRequest"]

logger = logging.getLogger(__name__)


class GroupedTask(Batches):
    """A celery-batches task that waits for a free pool process before handing on a partial group."""

    abstract = True

    def __init__(self) -> None:
        super().__init__()
        # The groups handed to the pool and not finished: token -> whether a pool process took it.
        self._groups: dict[object, bool] = {}

    def Strategy(self, task: Batches, app: Any, consumer: Any) -> Any:  # noqa: N802 - Celery's name
        # Called again each time the consumer (re)connects. After a lost broker connection the pool has
        # dropped the groups no process had taken yet, and the buffered messages can no longer be
        # acknowledged on the new channel: the broker hands them all out again, so forget them here.
        self._groups = {token: taken for token, taken in self._groups.items() if taken}
        for queue in (self._buffer, self._pending):
            while not queue.empty():
                queue.get_nowait()
        flush_timer = getattr(self, "_tref", None)  # celery-batches' repeating flush, started by a message
        if flush_timer is not None:
            flush_timer.cancel()
        self._tref = None
        self._count = itertools.count(1)
        return super().Strategy(task, app, consumer)

    def _pool_is_busy(self) -> bool:
        processes = getattr(self._pool, "num_processes", None) or getattr(self._pool, "limit", None) or 1
        return len(self._groups) >= processes

    def _do_flush(self) -> None:
        # The repeating timer: a partial group waits while the pool is busy (a full one is handed on
        # by the message handler at once, since it cannot grow).
        if self._pool_is_busy() and self._buffer.qsize() < self.flush_every:
            return
        super()._do_flush()

    def flush(self, requests: Collection[Request]) -> Any:
        requests = list(requests)
        conf = self.app.conf
        hard_limit = self.time_limit or conf.task_time_limit
        soft_limit = self.soft_time_limit or conf.task_soft_time_limit
        reject_on_worker_lost = bool(
            self.reject_on_worker_lost if self.reject_on_worker_lost is not None else conf.task_reject_on_worker_lost
        )
        token = object()
        self._groups[token] = False

        def on_accepted(pid: int, time_accepted: float) -> None:
            if token in self._groups:
                self._groups[token] = True
            for request in requests:
                if not request.task.acks_late:
                    request.acknowledge()

        def on_return(result: Any) -> None:
            self._groups.pop(token, None)
            for request in requests:
                if request.task.acks_late:
                    request.acknowledge()

        def on_error(einfo: ExceptionInfo) -> None:
            self._groups.pop(token, None)
            error = einfo.exception
            if isinstance(error, ExceptionWithTraceback):  # how billiard carries it across processes
                error = error.exc
            lost = isinstance(error, WorkerLostError)
            logger.error("a group of %d %s messages failed: %r", len(requests), self.name, error)
            for request in requests:
                if not request.task.acks_late:
                    continue
                if lost and reject_on_worker_lost:
                    request.reject(requeue=True)
                else:
                    # A time limit: the submissions stay claimed, and the sweep queues them again.
                    request.acknowledge()

        return self._pool.apply_async(
            apply_batches_task,
            (self, ([SimpleRequest.from_request(request) for request in requests],), 0, None),
            accept_callback=on_accepted,
            callback=on_return,
            error_callback=on_error,
            timeout=hard_limit,
            soft_timeout=soft_limit,
        )
