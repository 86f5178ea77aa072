"""Small JPEG thumbnails of submitted images for the history, made once and kept in the storage.

A thumbnail is named after a digest of the stored image's name (duplicates share the stored file, and so
the thumbnail), never after the content: a name derived from the bytes would tell one team that another
sent the same image. It is served by a view that checks the team (`submissions:thumbnail`), not as media.
"""

from __future__ import annotations

import hashlib
import io
import logging

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import Http404, HttpResponse

from attribution.images import ImageRejected, open_image
from webapp.submissions.models import Submission

logger = logging.getLogger(__name__)

THUMBNAIL_PX = 96  # the longer side; the history shows them at 48 CSS pixels (sharp on 2x screens)
THUMBNAIL_DIR = "thumbnails"


def thumbnail_name(*, submission: Submission) -> str:
    digest = hashlib.sha256(f"{submission.image.name}:{THUMBNAIL_PX}".encode()).hexdigest()
    return f"{THUMBNAIL_DIR}/{digest[:2]}/{digest}.jpg"


def submission_thumbnail(*, submission: Submission) -> bytes | None:
    """The submission's thumbnail (JPEG bytes), made and stored on first use; None when the stored image is
    gone or cannot be read."""
    name = thumbnail_name(submission=submission)
    try:
        with default_storage.open(name, "rb") as stored:
            return bytes(stored.read())
    except OSError:
        pass
    try:
        with default_storage.open(str(submission.image.name), "rb") as source:
            image = open_image(source, max_pixels=settings.UPLOAD_MAX_PIXELS)
    except (OSError, ImageRejected) as error:
        logger.info("no thumbnail for submission %s: %r", submission.pk, error)
        return None
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=82, optimize=True)
    data = buffer.getvalue()
    if not default_storage.exists(name):  # two requests at once: the first one stored it
        default_storage.save(name, ContentFile(data))
    return data


def thumbnail_response(*, submission: Submission | None) -> HttpResponse:
    """The thumbnail of a submission the caller has checked the user may see, as a private JPEG response;
    404 when there is no such submission or its image cannot be read."""
    data = submission_thumbnail(submission=submission) if submission is not None else None
    if data is None:
        raise Http404("No such image")
    response = HttpResponse(data, content_type="image/jpeg")
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=86400"
    return response
