"""Celery tasks. Each takes ids, calls one service and only handles retries."""

from workers import status  # noqa: F401  (registers the status signal handlers and control command)
from workers.tasks.attribution import *  # noqa: F403
from workers.tasks.clusters import *  # noqa: F403
from workers.tasks.field import *  # noqa: F403
from workers.tasks.registry_import import *  # noqa: F403
from workers.tasks.training import *  # noqa: F403
