"""The checks every uploaded file passes before it is stored: size, format, pixels, hash.

The size is read from what Django already knows about the upload (it streamed the body to
memory up to FILE_UPLOAD_MAX_MEMORY_SIZE and to a temporary file beyond), so an oversized
file is refused before any of it is read again; the image is then decoded once, by the
engine's guarded opener, which refuses bombs, truncated files and formats outside the list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO

from django.conf import settings

from attribution.images import ALLOWED_FORMATS, ImageInfo, ImageRejected, inspect_image, sha256_of

# The extension a stored file gets from its real format, so that the media view's content type
# follows what the bytes are, not what the uploader called them.
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}
MAX_NAME_LENGTH = 255


class UploadRejected(ValueError):
    """A file (or a whole request) that is refused; the message says why, for the user."""


@dataclass(frozen=True)
class ValidatedUpload:
    name: str
    size_bytes: int
    sha256: str
    info: ImageInfo

    @property
    def extension(self) -> str:
        return EXTENSIONS.get(self.info.format, ".img")


def display_name(raw_name: str | None) -> str:
    """The file's own name, without any folder a browser or a script put in front of it."""
    name = os.path.basename((raw_name or "").replace("\\", "/")).strip().replace("\x00", "")
    return (name or "unnamed")[:MAX_NAME_LENGTH]


def _size_of(file: IO[bytes]) -> int:
    size = getattr(file, "size", None)
    if isinstance(size, int):
        return size
    # A plain file object: its length from the end position, without reading it.
    position = file.tell()
    file.seek(0, os.SEEK_END)
    end = file.tell()
    file.seek(position)
    return end


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def upload_validate(*, uploaded_file: IO[bytes], name: str | None = None) -> ValidatedUpload:
    """Check one uploaded file; raises UploadRejected with a message for the user."""
    size = _size_of(uploaded_file)
    if size == 0:
        raise UploadRejected("the file is empty (0 bytes)")
    if size > settings.UPLOAD_MAX_BYTES:
        raise UploadRejected(
            f"the file is {_megabytes(size)}, over the limit of {_megabytes(settings.UPLOAD_MAX_BYTES)}"
        )
    try:
        info = inspect_image(
            uploaded_file, allowed_formats=ALLOWED_FORMATS, max_pixels=settings.UPLOAD_MAX_PIXELS
        )
    except ImageRejected as rejected:
        raise UploadRejected(str(rejected)) from None
    sha256 = sha256_of(uploaded_file)
    uploaded_file.seek(0)
    return ValidatedUpload(
        name=display_name(name if name is not None else getattr(uploaded_file, "name", None)),
        size_bytes=size,
        sha256=sha256,
        info=info,
    )


def upload_count_validate(*, count: int) -> None:
    if count == 0:
        raise UploadRejected("no file was sent")
    if count > settings.UPLOAD_MAX_FILES:
        raise UploadRejected(
            f"{count} files in one request: at most {settings.UPLOAD_MAX_FILES} are accepted at a time"
        )
