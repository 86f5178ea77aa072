"""HTML pages of the registry: generators and their reference images, head versions, training jobs.
Every team member reads them; only registry admins see and use the buttons that write."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from webapp.common.permissions import registry_admin_required, registry_reader_required
from webapp.common.uploads import UploadRejected
from webapp.registry import selectors, services
from webapp.registry.charts import BlockChart, block_chart
from webapp.registry.forms import ActivationForm, GeneratorForm, ReferenceUploadForm
from webapp.registry.models import Generator, HeadVersion, ReferenceImage, TrainingJob

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


def _block_sweep_chart(sweep: selectors.BlockSweep, head: HeadVersion) -> BlockChart | None:
    if sweep.state != "measured":
        return None
    series = [("Accuracy", sweep.values("accuracy")), ("Macro F1", sweep.values("macro_f1"))]
    if sweep.has_auroc:
        series.append(("AUROC", sweep.values("auroc")))
    return block_chart(series, marked_blocks=head.blocks)


@registry_reader_required
def heads(request: HttpRequest) -> HttpResponse:
    active, candidate = selectors.head_version_active(), selectors.head_version_candidate()
    context = {
        "heads": selectors.head_version_list(),
        "active": active,
        "candidate": candidate,
        "compare_rows": selectors.head_version_metric_rows(active=active, candidate=candidate),
        "block_comparison": selectors.head_version_block_comparison(active=active, candidate=candidate),
        "current_job": selectors.training_job_current(),
        "recent_jobs": selectors.training_job_list()[:10],
    }
    return render(request, "registry/heads.html", context)


@registry_reader_required
def head_detail(request: HttpRequest, version: int) -> HttpResponse:
    head = get_object_or_404(selectors.head_version_list(), version=version)
    active = selectors.head_version_active()
    labels, confusion_rows = selectors.head_version_confusion_rows(head_version=head)
    block_sweep = selectors.head_version_block_sweep(head_version=head)
    context = {
        "head": head,
        "method": selectors.head_version_method(head_version=head),
        "active": active,
        "block_sweep": block_sweep,
        "block_chart": _block_sweep_chart(block_sweep, head),
        "compare_rows": selectors.head_version_metric_rows(active=active, candidate=head),
        "confusion_labels": labels,
        "confusion_rows": confusion_rows,
        "per_holdout": sorted((head.metrics.get("per_holdout") or {}).items()),
        "manifest_counts": selectors.head_version_manifest_counts(head_version=head),
        "training_job": TrainingJob.objects.filter(head_version=head).first(),
    }
    return render(request, "registry/head_detail.html", context)


@registry_admin_required
@require_http_methods(["GET", "POST"])
def head_activate(request: HttpRequest, version: int) -> HttpResponse:
    """GET: the confirmation page (the metrics beside the active head's, a warning when the head is worse on
    any of them); POST: activate, with the second confirmation where it is worse."""
    head = get_object_or_404(HeadVersion, version=version)
    review = selectors.head_version_activation_review(head_version=head)
    form = ActivationForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            services.head_version_activate_reviewed(
                head_version=head, actor=request.user, confirm_worse=form.cleaned_data["confirm_worse"]
            )
        except services.RegistryError as error:
            form.add_error("confirm_worse", str(error))
        else:
            rollback = review.rollback
            messages.success(request, f"Head v{head.version} is active{' again (rollback)' if rollback else ''}.")
            return redirect("registry:heads")
    return render(
        request,
        "registry/head_activate.html",
        {"head": head, "review": review, "form": form},
        status=400 if form.errors else 200,
    )


# --- training jobs ----------------------------------------------------------------------------------


@registry_admin_required
@require_POST
def train(request: HttpRequest) -> HttpResponse:
    try:
        job = services.training_job_start(requested_by=request.user)
    except (services.TrainingAlreadyRunning, services.TrainingNotQueued) as refused:
        messages.error(request, str(refused))
        return redirect("registry:training_job", pk=refused.job.pk)
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
