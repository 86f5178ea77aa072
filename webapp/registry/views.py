"""HTML pages of the registry: generators and their reference images, training jobs (the head version pages
are in webapp.feedback.views.heads).
Every team member reads them; only registry admins see and use the buttons that write."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from webapp.common.permissions import registry_admin_required, registry_reader_required
from webapp.common.uploads import UploadRejected
from webapp.registry import selectors, services
from webapp.registry.forms import GeneratorForm, ReferenceUploadForm
from webapp.registry.models import Generator, ReferenceImage, TrainingJob

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
        "references": selectors.reference_image_list(generator=generator, user=request.user),
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
        "references": selectors.reference_image_list(generator=generator, user=request.user),
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


# --- training jobs ----------------------------------------------------------------------------------
# (The head version pages show each head's field accuracy: they are webapp.feedback.views.heads, served in
# this app's `registry:` namespace by webapp/urls.py.)


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
