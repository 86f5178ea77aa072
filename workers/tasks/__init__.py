"""Celery tasks. Each takes ids, calls one service and only handles retries."""

from workers.tasks.attribution import *  # noqa: F403
from workers.tasks.training import *  # noqa: F403
