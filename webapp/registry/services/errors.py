"""Why a registry request cannot be carried out: messages for the user."""

from __future__ import annotations

from typing import TypeAlias

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from webapp.registry.models import TrainingJob

Actor: TypeAlias = AbstractBaseUser | AnonymousUser | None


class RegistryError(ValueError):
    """A registry request that cannot be carried out; the message says why, for the user."""


class TrainingAlreadyRunning(RegistryError):
    def __init__(self, job: TrainingJob) -> None:
        self.job = job
        super().__init__(
            f"Training job {job.pk} is already {job.status} (requested {job.created_at:%Y-%m-%d %H:%M} UTC"
            f"{f' by {job.requested_by}' if job.requested_by else ''}): one training runs at a time. "
            "Wait for it to finish, or cancel it."
        )


class TrainingNotQueued(RegistryError):
    """The task queue could not be reached: the job was ended at once, and a new one may be started."""

    retry_after_s = 30

    def __init__(self, job: TrainingJob) -> None:
        self.job = job
        super().__init__(
            f"Training job {job.pk} could not be queued: the task queue (broker) is not answering. "
            f"Nothing is running; start the training again in a minute."
        )
