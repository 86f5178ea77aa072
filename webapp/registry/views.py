"""HTML pages of the registry: generators and their reference images, head versions, training jobs,
re-attribution. Every team member reads them; only registry admins see and use the buttons that write."""

from __future__ import annotations

from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from webapp.core.permissions import ViewFunc, registry_admin_required, request_team
from webapp.registry import selectors, services
from webapp.registry.charts import BlockChart, block_chart
from webapp.registry.forms import GeneratorForm, ReattributeForm, ReferenceUploadForm
from webapp.registry.models import Generator, HeadVersion, ReferenceImage, TrainingJob
from webapp.submissions.validation import UploadRejected
from webapp.teams.selectors import team_for_user, user_is_registry_admin

SHOWN_METRICS = (
    ("accuracy", "Accuracy (cross-validated)"),
    ("macro_f1", "Macro F1"),
    ("auroc", "AUROC (held-out generators)"),
    ("oscr", "OSCR (held-out generators)"),
    ("unknown_rejection_at_threshold", "Unknown rejected at threshold"),
)


def registry_reader_required(view: ViewFunc) -> ViewFunc:
    """A team member or a registry admin (site staff need no team to manage the registry)."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if team_for_user(user=request.user) is None and not user_is_registry_admin(user=request.user):
            raise PermissionDenied("You are not a member of any team. Ask a team admin to add you.")
        return view(request, *args, **kwargs)

    return wrapper


# --- generators -------------------------------------------------------------------------------------


@registry_reader_required
def generators(request: HttpRequest) -> HttpResponse:
    return render(request, "registry/generators.html", {"generators": selectors.generator_list()})


@registry_admin_required
def generator_create(request: HttpRequest) -> HttpResponse:
    form = GeneratorForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            generator = services.generator_create(actor=request.user, **form.cleaned_data)
        except DjangoValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Generator {generator.name} added. Now upload its reference images.")
            return redirect("registry:generator_detail", slug=generator.slug)
    return render(request, "registry/generator_form.html", {"form": form, "generator": None})


@registry_admin_required
def generator_edit(request: HttpRequest, slug: str) -> HttpResponse:
    generator = get_object_or_404(Generator, slug=slug)
    form = GeneratorForm(request.POST or None, instance=Generator.objects.get(pk=generator.pk))
    if request.method == "POST" and form.is_valid():
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        try:
            generator = services.generator_update(actor=request.user, generator=generator, **changes)
        except (services.RegistryError, DjangoValidationError) as error:
            form.add_error(None, error if isinstance(error, DjangoValidationError) else str(error))
        else:
            messages.success(request, f"Generator {generator.name} saved.")
            return redirect("registry:generator_detail", slug=generator.slug)
    return render(request, "registry/generator_form.html", {"form": form, "generator": generator})


@registry_admin_required
@require_POST
def generator_delete(request: HttpRequest, slug: str) -> HttpResponse:
    generator = get_object_or_404(Generator, slug=slug)
    try:
        services.generator_delete(actor=request.user, generator=generator)
    except services.RegistryError as error:
        messages.error(request, str(error))
        return redirect("registry:generator_detail", slug=slug)
    messages.success(request, f"Generator {generator.name} deleted.")
    return redirect("registry:generators")


@registry_reader_required
def generator_detail(request: HttpRequest, slug: str) -> HttpResponse:
    generator = get_object_or_404(selectors.generator_list(), slug=slug)
    context = {
        "generator": generator,
        "references": selectors.reference_image_list(generator=generator),
        "upload_form": ReferenceUploadForm(),
    }
    return render(request, "registry/generator_detail.html", context)


@registry_admin_required
@require_POST
def reference_upload(request: HttpRequest, slug: str) -> HttpResponse:
    """Many files at once; the page comes back with each file's outcome beside its name."""
    generator = get_object_or_404(selectors.generator_list(), slug=slug)
    form = ReferenceUploadForm(request.POST, request.FILES)
    results: list[services.ReferenceUpload] = []
    if form.is_valid():
        try:
            results = services.reference_images_upload(
                generator=generator, files=form.cleaned_data["images"], uploaded_by=request.user
            )
        except UploadRejected as rejected:
            form.add_error("images", str(rejected))
    status = 200 if form.is_valid() and results else 400
    if results:
        added = sum(r.created for r in results)
        refused = sum(bool(r.error) for r in results)
        messages.success(
            request,
            f"{added} reference images added, {len(results) - added - refused} already there, {refused} refused.",
        )
        generator = get_object_or_404(selectors.generator_list(), slug=slug)
    context = {
        "generator": generator,
        "references": selectors.reference_image_list(generator=generator),
        "upload_form": form,
        "upload_results": results,
    }
    return render(request, "registry/generator_detail.html", context, status=status)


@registry_admin_required
@require_POST
def reference_delete(request: HttpRequest, pk: int) -> HttpResponse:
    reference = get_object_or_404(ReferenceImage.objects.select_related("generator"), pk=pk)
    slug = reference.generator.slug
    services.reference_image_delete(actor=request.user, reference=reference)
    messages.success(request, f"Reference image {reference.original_name} deleted.")
    return redirect("registry:generator_detail", slug=slug)


# --- head versions ----------------------------------------------------------------------------------


def _metric_rows(active: HeadVersion | None, candidate: HeadVersion | None) -> list[dict[str, Any]]:
    rows = []
    for key, label in SHOWN_METRICS:
        a = active.metrics.get(key) if active else None
        c = candidate.metrics.get(key) if candidate else None
        delta = c - a if isinstance(a, float | int) and isinstance(c, float | int) else None
        rows.append({"key": key, "label": label, "active": a, "candidate": c, "delta": delta})
    return rows


def _confusion_rows(metrics: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Rows of the confusion matrix with each cell's share of its row, for shading."""
    confusion = metrics.get("confusion") or {}
    labels, matrix = confusion.get("labels") or [], confusion.get("matrix") or []
    rows = []
    for label, counts in zip(labels, matrix, strict=False):
        total = sum(counts) or 1
        cells = [{"count": n, "share": n / total} for n in counts]
        rows.append({"label": label, "cells": cells, "recall": (metrics.get("per_class_recall") or {}).get(label)})
    return labels, rows


def _block_sweep_chart(sweep: selectors.BlockSweep, head: HeadVersion) -> BlockChart | None:
    if sweep.state != "measured":
        return None
    series = [("Accuracy", sweep.values("accuracy")), ("Macro F1", sweep.values("macro_f1"))]
    if sweep.has_auroc:
        series.append(("AUROC", sweep.values("auroc")))
    return block_chart(series, marked_blocks=head.blocks)


def _block_comparison(active: HeadVersion | None, candidate: HeadVersion | None) -> dict[str, Any] | None:
    """Accuracy per block of the active head and the candidate, side by side; None without a candidate.
    A head trained before the per-block sweep existed is named in `unmeasured`, and there is no chart."""
    if active is None or candidate is None:
        return None
    active_sweep = selectors.head_version_block_sweep(head_version=active)
    candidate_sweep = selectors.head_version_block_sweep(head_version=candidate)
    unmeasured = [
        head for head, sweep in ((active, active_sweep), (candidate, candidate_sweep)) if sweep.state != "measured"
    ]
    if unmeasured:
        return {"chart": None, "rows": [], "unmeasured": unmeasured}
    left, right = dict(active_sweep.values("accuracy")), dict(candidate_sweep.values("accuracy"))
    rows = []
    for block in sorted(left.keys() | right.keys()):
        a, c = left.get(block), right.get(block)
        delta = c - a if a is not None and c is not None else None
        marked = block in active.blocks or block in candidate.blocks
        rows.append({"block": block, "active": a, "candidate": c, "delta": delta, "marked": marked})
    chart = block_chart(
        [
            (f"Active v{active.version}", active_sweep.values("accuracy")),
            (f"Candidate v{candidate.version}", candidate_sweep.values("accuracy")),
        ],
        marked_blocks=set(active.blocks) | set(candidate.blocks),
    )
    return {"chart": chart, "rows": rows, "unmeasured": []}


@registry_reader_required
def heads(request: HttpRequest) -> HttpResponse:
    active, candidate = selectors.head_version_active(), selectors.head_version_candidate()
    context = {
        "heads": selectors.head_version_list(),
        "active": active,
        "candidate": candidate,
        "compare_rows": _metric_rows(active, candidate),
        "block_comparison": _block_comparison(active, candidate),
        "current_job": selectors.training_job_current(),
        "recent_jobs": selectors.training_job_list()[:10],
    }
    return render(request, "registry/heads.html", context)


@registry_reader_required
def head_detail(request: HttpRequest, version: int) -> HttpResponse:
    head = get_object_or_404(selectors.head_version_list(), version=version)
    active = selectors.head_version_active()
    labels, confusion_rows = _confusion_rows(head.metrics)
    block_sweep = selectors.head_version_block_sweep(head_version=head)
    context = {
        "head": head,
        "active": active,
        "block_sweep": block_sweep,
        "block_chart": _block_sweep_chart(block_sweep, head),
        "compare_rows": _metric_rows(active, head),
        "confusion_labels": labels,
        "confusion_rows": confusion_rows,
        "per_holdout": sorted((head.metrics.get("per_holdout") or {}).items()),
        "manifest_counts": _manifest_counts(head.manifest),
        "training_job": TrainingJob.objects.filter(head_version=head).first(),
    }
    return render(request, "registry/head_detail.html", context)


def _manifest_counts(manifest: list[dict[str, str]]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for item in manifest:
        counts[item["generator"]] = counts.get(item["generator"], 0) + 1
    return sorted(counts.items())


@registry_admin_required
@require_POST
def head_activate(request: HttpRequest, version: int) -> HttpResponse:
    head = get_object_or_404(HeadVersion, version=version)
    previous = selectors.head_version_active()
    services.head_version_activate(head_version=head, actor=request.user)
    rollback = previous is not None and head.version < previous.version
    messages.success(request, f"Head v{head.version} is active{' again (rollback)' if rollback else ''}.")
    return redirect("registry:heads")


# --- training jobs ----------------------------------------------------------------------------------


@registry_admin_required
@require_POST
def train(request: HttpRequest) -> HttpResponse:
    try:
        job = services.training_job_start(requested_by=request.user)
    except services.TrainingAlreadyRunning as running:
        messages.error(request, str(running))
        return redirect("registry:training_job", pk=running.job.pk)
    except services.RegistryError as error:
        messages.error(request, str(error))
        return redirect("registry:heads")
    messages.success(request, f"Training job {job.pk} queued.")
    return redirect("registry:training_job", pk=job.pk)


@registry_reader_required
def training_job(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(selectors.training_job_list(), pk=pk)
    return render(request, "registry/training_job.html", {"job": job, "active": selectors.head_version_active()})


@registry_admin_required
@require_POST
def training_job_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(TrainingJob, pk=pk)
    try:
        job = services.training_job_cancel(job=job, actor=request.user)
    except services.RegistryError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Cancelled." if job.status == job.Status.CANCELLED else "Cancel requested.")
    return redirect("registry:training_job", pk=pk)


# --- re-attribution ---------------------------------------------------------------------------------


@login_required
def reattribute(request: HttpRequest) -> HttpResponse:
    if not selectors.user_may_reattribute(user=request.user):
        raise PermissionDenied("Only team admins and registry admins may re-attribute submissions.")
    team = request_team(request)
    form = ReattributeForm(request.POST or None, team=team)
    if request.method == "POST" and form.is_valid():
        case, since = form.cleaned_data.get("case"), form.since_datetime
        try:
            queued = services.submissions_reattribute(actor=request.user, team=team, case=case, since=since)
        except services.RegistryError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"{queued} submissions queued for the active head.")
            query = f"?case={case.pk}" if case else f"?since={form.cleaned_data['since']:%Y-%m-%d}"
            return redirect(reverse("registry:verdict_changes") + query)
    return render(request, "registry/reattribute.html", {"form": form, "active": selectors.head_version_active()})


@login_required
def verdict_changes(request: HttpRequest) -> HttpResponse:
    team = request_team(request)
    form = ReattributeForm(request.GET or None, team=team)
    case = since = None
    if form.is_bound and form.is_valid():
        case, since = form.cleaned_data.get("case"), form.since_datetime
    changes = selectors.verdict_changes(team=team, case=case, since=since)
    return render(request, "registry/verdict_changes.html", {"form": form, "changes": changes})
