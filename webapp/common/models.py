"""Abstract models shared by the apps (no tables of their own)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models

if TYPE_CHECKING:
    from webapp.common.uploads import ValidatedUpload


class StoredImage(models.Model):
    """An image file that passed the upload checks, with what they found. Submissions and reference images
    are stored images; each declares its own `image` file field (where it is stored differs)."""

    original_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.PositiveBigIntegerField()
    image_format = models.CharField(max_length=10)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()

    class Meta:
        abstract = True

    def describe_upload(self, upload: ValidatedUpload) -> None:
        """Fill the fields above from a checked upload (the file itself is saved by the caller)."""
        self.original_name = upload.name
        self.sha256 = upload.sha256
        self.size_bytes = upload.size_bytes
        self.image_format = upload.info.format
        self.width = upload.info.width
        self.height = upload.info.height
