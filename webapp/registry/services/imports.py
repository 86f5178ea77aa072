"""Bulk import of reference images: a folder on the server (`manage.py registry_import`) or a zip/tar
uploaded through the API (an `ImportJob`, run by a worker).

Files are streamed one at a time, so memory stays flat however many there are. Each file is hashed first
and skipped when its generator already has it (a rerun after a crash costs a hash and one indexed query per
file, no decoding); a new file passes the same checks as a web upload (`upload_validate`, inside
`reference_image_create`). Features are left to a worker task per chunk of new references (or to the
training, which computes whatever is missing).
"""

from __future__ import annotations

import io
import logging
import shutil
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from attribution.genimage import LAYOUTS, class_files, class_folders
from attribution.images import sha256_of
from webapp.audit.services import audit_record
from webapp.common.tasks import task_send_on_commit
from webapp.common.uploads import UploadRejected, display_name
from webapp.registry.models import Generator, ImportJob, ReferenceImage
from webapp.registry.services.errors import Actor, RegistryError
from webapp.registry.services.generators import generator_create, generator_ensure_real
from webapp.registry.services.references import FEATURES_TASK, reference_image_create
from webapp.teams.selectors import user_or_none

logger = logging.getLogger(__name__)

IMPORT_TASK = "workers.tasks.registry_import"
CHUNK_SIZE = 64  # new references per feature task
MAX_REASONS = 20  # distinct refusal reasons kept per class; the rest are counted under "other"
MAX_EXAMPLES = 3  # file names kept per reason
_PROGRESS_SAVE_INTERVAL_S = 0.5


@dataclass
class ClassImport:
    """What became of one class's files."""

    generator: str = ""
    added: int = 0
    present: int = 0
    refused: dict[str, dict[str, Any]] = field(default_factory=dict)  # reason -> {"count", "examples"}

    @property
    def refused_count(self) -> int:
        return sum(int(entry["count"]) for entry in self.refused.values())

    def refuse(self, name: str, reason: str) -> None:
        if reason not in self.refused and len(self.refused) >= MAX_REASONS:
            reason = "other reasons"
        entry = self.refused.setdefault(reason, {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < MAX_EXAMPLES:
            entry["examples"].append(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator,
            "added": self.added,
            "present": self.present,
            "refused": self.refused_count,
            "reasons": self.refused,
        }


@dataclass
class ImportSummary:
    """Per class: added, already present, refused (with reasons); generators created; dry run or not."""

    layout: str
    dry_run: bool
    classes: dict[str, ClassImport] = field(default_factory=dict)
    created_generators: list[str] = field(default_factory=list)
    skipped_entries: dict[str, int] = field(default_factory=dict)  # archive entries that are not files, etc.

    @property
    def added(self) -> int:
        return sum(c.added for c in self.classes.values())

    @property
    def present(self) -> int:
        return sum(c.present for c in self.classes.values())

    @property
    def refused(self) -> int:
        return sum(c.refused_count for c in self.classes.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "layout": self.layout,
            "dry_run": self.dry_run,
            "added": self.added,
            "present": self.present,
            "refused": self.refused,
            "created_generators": self.created_generators,
            "skipped_entries": self.skipped_entries,
            "classes": {name: entry.as_dict() for name, entry in self.classes.items()},
        }

    def lines(self) -> list[str]:
        """The summary as a table for a terminal."""
        verb = "would add" if self.dry_run else "added"
        width = max([5, *(len(name) for name in self.classes)])
        out = [f"{'class':<{width}}  {'generator':<24} {verb:>9} {'present':>8} {'refused':>8}"]
        for name, entry in self.classes.items():
            out.append(
                f"{name:<{width}}  {entry.generator or '-':<24} {entry.added:>9} {entry.present:>8} "
                f"{entry.refused_count:>8}"
            )
            for reason, detail in entry.refused.items():
                out.append(
                    f"{'':<{width}}    refused {detail['count']}: {reason} (e.g. {', '.join(detail['examples'])})"
                )
        out.append(f"{'total':<{width}}  {'':<24} {self.added:>9} {self.present:>8} {self.refused:>8}")
        if self.created_generators:
            out.append(f"created generators: {', '.join(self.created_generators)}")
        for what, count in self.skipped_entries.items():
            out.append(f"skipped {count} archive entr{'y' if count == 1 else 'ies'}: {what}")
        return out


@dataclass(frozen=True)
class ImportItem:
    """One file to import: its class (folder name), a name for messages, and how to open it."""

    class_name: str
    name: str
    open: Callable[[], IO[bytes]]


class _Importer:
    """The per-file work shared by the folder and the archive import; holds per-class counters only."""

    def __init__(
        self,
        *,
        actor: Actor,
        layout: str,
        per_class: int | None,
        create_generators: bool,
        dry_run: bool,
        enqueue: bool,
        family: str,
        description: str,
    ) -> None:
        if per_class is not None and per_class < 1:
            raise RegistryError("per_class must be at least 1")
        self.actor, self.per_class, self.create_generators = actor, per_class, create_generators
        self.dry_run, self.enqueue, self.family, self.description = dry_run, enqueue, family, description
        self.summary = ImportSummary(layout=layout, dry_run=dry_run)
        self.generators: dict[str, Generator | None] = {}
        self.pending: list[int] = []
        self.seen: dict[str, set[str]] = {}  # dry run only: what this run would have added, per class

    def full(self, class_name: str) -> bool:
        entry = self.summary.classes.get(class_name)
        return self.per_class is not None and entry is not None and entry.added + entry.present >= self.per_class

    def generator(self, class_name: str) -> Generator | None:
        """The generator of a folder: "real" is the built-in class; otherwise the generator whose slug is
        the folder name (or its slugified form); created only when asked to. None: refused."""
        if class_name in self.generators:
            return self.generators[class_name]
        entry = self.summary.classes.setdefault(class_name, ClassImport())
        slug = slugify(class_name)
        generator: Generator | None
        if class_name == Generator.REAL_SLUG:
            generator = generator_ensure_real()
        else:
            generator = Generator.objects.filter(slug__in=[class_name, slug]).order_by("pk").first()
            if generator is None and self.create_generators and slug:
                if self.dry_run:
                    generator = Generator(name=class_name, slug=slug, family=self.family)
                else:
                    generator = generator_create(
                        actor=self.actor, name=class_name, slug=slug, family=self.family,
                        description=self.description,
                    )  # fmt: skip
                self.summary.created_generators.append(slug)
        entry.generator = generator.slug if generator is not None else ""
        self.generators[class_name] = generator
        return generator

    def add(self, item: ImportItem) -> None:
        if self.full(item.class_name):
            return
        generator = self.generator(item.class_name)
        entry = self.summary.classes[item.class_name]
        if generator is None:
            hint = "" if self.create_generators else " (use --create-generators to make it)"
            entry.refuse(item.name, f"no generator with slug {slugify(item.class_name) or item.class_name!r}{hint}")
            return
        try:
            with item.open() as handle:
                self._add_file(generator, entry, item, handle)
        except UploadRejected as rejected:
            entry.refuse(item.name, str(rejected))
        except OSError as error:
            entry.refuse(item.name, f"cannot be read: {error.strerror or error}")
        if len(self.pending) >= CHUNK_SIZE:
            self.flush()

    def _add_file(self, generator: Generator, entry: ClassImport, item: ImportItem, handle: IO[bytes]) -> None:
        sha256 = sha256_of(handle)
        handle.seek(0)
        # A rerun skips what is there at the price of a hash and an indexed lookup: no decoding, no storage.
        if generator.pk is not None and ReferenceImage.objects.filter(generator=generator, sha256=sha256).exists():
            entry.present += 1
            return
        if self.dry_run:
            from webapp.common.uploads import upload_validate

            upload_validate(uploaded_file=handle, name=item.name)
            seen = self.seen.setdefault(item.class_name, set())
            if sha256 in seen:
                entry.present += 1
            else:
                seen.add(sha256)
                entry.added += 1
            return
        reference, created = reference_image_create(
            generator=generator, upload=File(handle, name=item.name), uploaded_by=self.actor, enqueue=False
        )
        if created:
            entry.added += 1
            self.pending.append(reference.pk)
        else:
            entry.present += 1

    def flush(self) -> None:
        """Send the features task for the new references so far (one task per chunk)."""
        if self.pending and self.enqueue:
            task_send_on_commit(FEATURES_TASK, list(self.pending))
        self.pending.clear()

    def finish(self) -> ImportSummary:
        self.flush()
        if not self.dry_run:
            for name, entry in self.summary.classes.items():
                generator = self.generators.get(name)
                if entry.added and generator is not None:
                    audit_record(
                        actor=self.actor, action="reference_import", target=generator,
                        detail={"added": entry.added, "present": entry.present, "refused": entry.refused_count},
                    )  # fmt: skip
        return self.summary


def _open_path(path: Path) -> Callable[[], IO[bytes]]:
    return lambda: open(path, "rb")  # noqa: SIM115 - closed by the caller's `with`


def registry_import_folder(
    *,
    root: Path,
    actor: Actor,
    layout: str = "imagefolder",
    phase: str = "train",
    classes: list[str] | None = None,
    per_class: int | None = None,
    create_generators: bool = False,
    dry_run: bool = False,
    enqueue: bool = True,
    family: str = Generator.Family.OTHER,
    description: str = "",
    progress: Callable[[str], None] | None = None,
) -> ImportSummary:
    """Import the images of an ImageFolder (`root/<generator slug>/**`) or of the GenImage layout
    (`root/<generator>/[<sub>/]<phase>/ai|nature`, `nature` being "real") as reference images.

    Any accepted image format; each file passes the web's upload checks; files the generator already has
    are counted as present (a second run adds nothing); at most `per_class` per class (present ones
    count); missing generators are created only with `create_generators` (family `family`); `classes`
    limits the import to those folders; `dry_run` checks everything and writes nothing. One features task
    per CHUNK_SIZE new references with `enqueue`. `progress(class_name)` is called after each file."""
    if layout not in LAYOUTS:
        raise RegistryError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    try:
        folders = class_folders(root, layout=layout, phase=phase, real_label=Generator.REAL_SLUG)
    except ValueError as error:
        raise RegistryError(str(error)) from None
    if classes is not None:
        if missing := [name for name in classes if name not in folders]:
            raise RegistryError(f"{root} has no folder for {', '.join(missing)}")
        folders = {name: folders[name] for name in classes}
    importer = _Importer(
        actor=actor, layout=layout, per_class=per_class, create_generators=create_generators,
        dry_run=dry_run, enqueue=enqueue, family=family, description=description,
    )  # fmt: skip
    for class_name, class_dirs in folders.items():
        importer.summary.classes.setdefault(class_name, ClassImport())
        for path in class_files(class_dirs):
            if importer.full(class_name):
                break
            importer.add(ImportItem(class_name, str(path.relative_to(root)), _open_path(path)))
            if progress is not None:
                progress(class_name)
    return importer.finish()


# --- archives through the API -----------------------------------------------------------------------

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def import_job_create(
    *,
    archive: File,
    requested_by: Actor,
    per_class: int | None = None,
    create_generators: bool = False,
) -> ImportJob:
    """Store an uploaded zip or tar of an ImageFolder (`<generator slug>/**`, optionally under one top
    folder) through the storage API and queue its import on a worker. Raises `RegistryError` for something
    that is not a zip or tar, or a bad option."""
    if per_class is not None and per_class < 1:
        raise RegistryError("per_class must be at least 1")
    name = display_name(archive.name)
    if _archive_kind(archive) is None:
        raise RegistryError(f"{name} is not a zip or tar archive")
    if archive.size is not None and archive.size > settings.IMPORT_MAX_ARCHIVE_BYTES:
        raise RegistryError(
            f"{name} is {archive.size} bytes, over the limit of {settings.IMPORT_MAX_ARCHIVE_BYTES} bytes"
        )
    archive.seek(0)
    job = ImportJob(
        original_name=name,
        per_class=per_class,
        create_generators=create_generators,
        requested_by=user_or_none(requested_by),
    )
    job.archive.save(f"import-{timezone.now():%Y%m%d-%H%M%S}{_suffix(name)}", archive, save=False)
    job.save()
    audit_record(actor=requested_by, action="reference_import_queued", target=job, detail={"archive": name})
    task_send_on_commit(IMPORT_TASK, job.pk)
    return job


def _suffix(name: str) -> str:
    lower = name.lower()
    return next((suffix for suffix in ARCHIVE_SUFFIXES if lower.endswith(suffix)), "")


def _archive_kind(file: IO[bytes]) -> str | None:
    """ "zip", "tar" (plain or compressed) or None, from the bytes, not the name."""
    file.seek(0)
    head = file.read(262)
    file.seek(0)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00" or head[257:262] == b"ustar":
        return "tar"
    return None


def import_job_run(*, job_id: int) -> ImportJob:
    """Run a queued import job (on a worker): copy the archive from storage to a temporary file, walk its
    entries within the caps (IMPORT_MAX_ENTRIES entries, IMPORT_MAX_TOTAL_BYTES uncompressed), and import
    each image file as `registry_import_folder` does. Only a queued job starts, so a second delivery does
    nothing twice; any failure ends the job with its reason."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        if job.status != ImportJob.Status.QUEUED:
            return job
        job.status, job.started_at = ImportJob.Status.RUNNING, timezone.now()
        job.save(update_fields=["status", "started_at"])
    try:
        summary = _run(job)
    except Exception as error:  # the admin reads why on the job
        logger.exception("import job %s failed", job.pk)
        job.status, job.error = ImportJob.Status.FAILED, str(error) if isinstance(error, ValueError) else repr(error)
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "finished_at", "processed", "summary"])
        return job
    job.status, job.summary, job.finished_at = ImportJob.Status.DONE, summary.as_dict(), timezone.now()
    job.processed = job.total
    job.save(update_fields=["status", "summary", "finished_at", "processed"])
    return job


def import_jobs_sweep(*, queued_after_s: int | None = None) -> dict[str, list[int]]:
    """Import jobs a lost message or a dead worker left behind: one queued for longer than `queued_after_s`
    (TRAINING_RESEND_AFTER_S) is sent again; one running past IMPORT_TIME_LIMIT_S has lost its worker and is
    failed (uploading the archive again imports the rest: what is there is skipped). Returns the ids."""
    from datetime import timedelta

    from webapp.common.tasks import tasks_send

    after = settings.TRAINING_RESEND_AFTER_S if queued_after_s is None else queued_after_s
    now = timezone.now()
    queued = list(
        ImportJob.objects.filter(
            status=ImportJob.Status.QUEUED, created_at__lt=now - timedelta(seconds=after)
        ).values_list("pk", flat=True)
    )
    failed = list(
        ImportJob.objects.filter(
            status=ImportJob.Status.RUNNING, started_at__lt=now - timedelta(seconds=settings.IMPORT_TIME_LIMIT_S)
        ).values_list("pk", flat=True)
    )
    ImportJob.objects.filter(pk__in=failed, status=ImportJob.Status.RUNNING).update(
        status=ImportJob.Status.FAILED,
        finished_at=now,
        error="the worker running this import stopped; upload the archive again (imported files are skipped)",
    )
    if queued:
        tasks_send(IMPORT_TASK, [[pk] for pk in queued])
    return {"resent": queued, "failed": failed}


@contextmanager
def _local_copy(name: str) -> Iterator[Path]:
    """The stored archive as a local file (an object store's file is not seekable; zip needs seeking)."""
    with tempfile.TemporaryDirectory(prefix="import-") as folder:
        target = Path(folder) / "archive"
        with default_storage.open(name, "rb") as source, open(target, "wb") as out:
            shutil.copyfileobj(source, out, length=1024 * 1024)
        yield target


def _run(job: ImportJob) -> ImportSummary:
    importer = _Importer(
        actor=job.requested_by, layout="imagefolder", per_class=job.per_class,
        create_generators=job.create_generators, dry_run=False, enqueue=True,
        family=Generator.Family.OTHER, description="",
    )  # fmt: skip
    saved_at = 0.0
    with _local_copy(str(job.archive.name)) as path:
        with open(path, "rb") as handle:
            kind = _archive_kind(handle)
        if kind is None:
            raise RegistryError("the stored file is not a zip or tar archive")
        entries = _zip_entries(path) if kind == "zip" else _tar_entries(path)
        job.total = next(entries)  # type: ignore[assignment]  # the first item is the count of file entries
        job.save(update_fields=["total"])
        for entry in entries:
            assert not isinstance(entry, int)
            job.processed += 1
            if isinstance(entry, str):
                importer.summary.skipped_entries[entry] = importer.summary.skipped_entries.get(entry, 0) + 1
            else:
                importer.add(entry)
            now = time.monotonic()
            if now - saved_at >= _PROGRESS_SAVE_INTERVAL_S:
                job.summary = importer.summary.as_dict()
                job.save(update_fields=["processed", "summary"])
                saved_at = now
    return importer.finish()


def _class_of(parts: tuple[str, ...], strip_top: bool) -> str | None:
    """The class (first folder) of an archive member from its path parts, an optional top folder stripped."""
    parts = parts[1:] if strip_top else parts
    return parts[0] if len(parts) >= 2 else None


def _safe_parts(name: str) -> tuple[str, ...] | None:
    """The parts of a member's path, or None when it could escape a folder (absolute, `..`, drive)."""
    if "\\" in name or "\x00" in name:
        return None
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("..", "") for part in path.parts) or ":" in path.parts[0]:
        return None
    parts = tuple(part for part in path.parts if part != ".")
    if any(part.startswith(".") or part == "__MACOSX" for part in parts):
        return ()  # hidden files and macOS resource forks: not images, skipped quietly
    return parts


def _bounded_read(handle: IO[bytes], declared: int) -> bytes:
    limit = settings.UPLOAD_MAX_BYTES
    if declared > limit:
        raise UploadRejected(f"the file is {declared} bytes, over the limit of {limit} bytes")
    data = handle.read(limit + 1)  # a header that lies about the size cannot make us read more
    if len(data) > limit:
        raise UploadRejected(f"the file is over the limit of {limit} bytes")
    return data


class _Budget:
    """The caps on an archive: entries and total uncompressed bytes actually read."""

    def __init__(self) -> None:
        self.entries = 0
        self.bytes = 0

    def entry(self) -> None:
        self.entries += 1
        if self.entries > settings.IMPORT_MAX_ENTRIES:
            raise RegistryError(f"the archive has more than {settings.IMPORT_MAX_ENTRIES} entries")

    def read(self, data: bytes) -> bytes:
        self.bytes += len(data)
        if self.bytes > settings.IMPORT_MAX_TOTAL_BYTES:
            raise RegistryError(f"the archive holds more than {settings.IMPORT_MAX_TOTAL_BYTES} bytes uncompressed")
        return data


def _strip_top(names: list[tuple[str, ...]]) -> bool:
    """True when every entry sits under one top folder and some are two folders deep (`data/<class>/x.png`):
    the top folder is then a wrapper, not a class. (A one-class archive with subfolders must therefore put
    its files straight in the class folder or under a wrapper.)"""
    tops = {parts[0] for parts in names if parts}
    return len(tops) == 1 and any(len(parts) >= 3 for parts in names)


def _zip_entries(path: Path) -> Iterator[int | str | ImportItem]:
    """The count of file entries, then per entry an `ImportItem` or a reason it is skipped."""
    budget = _Budget()
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if len(infos) > settings.IMPORT_MAX_ENTRIES:
            raise RegistryError(f"the archive has {len(infos)} entries, more than {settings.IMPORT_MAX_ENTRIES}")
        declared = sum(info.file_size for info in infos)
        if declared > settings.IMPORT_MAX_TOTAL_BYTES:
            raise RegistryError(
                f"the archive holds {declared} bytes uncompressed, over {settings.IMPORT_MAX_TOTAL_BYTES}"
            )
        files = [info for info in infos if not info.is_dir()]
        parts = {info.filename: _safe_parts(info.filename) for info in files}
        strip = _strip_top([p for p in parts.values() if p])
        yield len(files)
        for info in files:
            budget.entry()

            def opener(info: zipfile.ZipInfo = info) -> IO[bytes]:
                return archive.open(info)

            yield from _member(info.filename, parts[info.filename], strip, info.file_size, budget, opener)


def _tar_entries(path: Path) -> Iterator[int | str | ImportItem]:
    budget = _Budget()
    with tarfile.open(path, "r:*") as archive:
        members = []
        for member in archive:  # reads headers only; stops at the cap before listing a huge archive
            members.append(member)
            if len(members) > settings.IMPORT_MAX_ENTRIES:
                raise RegistryError(f"the archive has more than {settings.IMPORT_MAX_ENTRIES} entries")
        files = [m for m in members if not m.isdir()]
        parts = {m.name: _safe_parts(m.name) for m in files}
        strip = _strip_top([p for p in parts.values() if p])
        yield len(files)
        for member in files:
            budget.entry()
            if not member.isfile():  # links, devices, fifos: never followed
                yield "not a regular file (link or device)"
                continue

            def opener(member: tarfile.TarInfo = member) -> IO[bytes]:
                extracted = archive.extractfile(member)
                if extracted is None:
                    raise OSError("cannot read this entry")
                return extracted

            yield from _member(member.name, parts[member.name], strip, member.size, budget, opener)


def _member(
    name: str,
    parts: tuple[str, ...] | None,
    strip: bool,
    size: int,
    budget: _Budget,
    opener: Callable[[], IO[bytes]],
) -> Iterator[str | ImportItem]:
    if parts is None:
        yield "unsafe path (absolute, .. or backslash)"
        return
    if not parts:
        yield "hidden file"
        return
    class_name = _class_of(parts, strip)
    if class_name is None:
        yield "not inside a class folder"
        return

    def read() -> IO[bytes]:
        with opener() as handle:
            return io.BytesIO(budget.read(_bounded_read(handle, size)))

    yield ImportItem(class_name, "/".join(parts), read)
