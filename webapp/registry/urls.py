from django.urls import path

from webapp.registry import api, views

app_name = "registry"

# The head version pages (heads, head_detail, head_activate) are webapp.feedback's `registry_urlpatterns`,
# served in this namespace by webapp/urls.py.
urlpatterns = [
    path("", views.generators, name="generators"),
    path("generators/new/", views.generator_create, name="generator_create"),
    path("generators/<slug:slug>/", views.generator_detail, name="generator_detail"),
    path("generators/<slug:slug>/edit/", views.generator_edit, name="generator_edit"),
    path("generators/<slug:slug>/delete/", views.generator_delete, name="generator_delete"),
    path("generators/<slug:slug>/references/", views.reference_upload, name="reference_upload"),
    path("references/<int:pk>/delete/", views.reference_delete, name="reference_delete"),
    path("heads/train/", views.train, name="train"),
    path("training-jobs/<int:pk>/", views.training_job, name="training_job"),
    path("training-jobs/<int:pk>/cancel/", views.training_job_cancel, name="training_job_cancel"),
]

api_urlpatterns = [
    path("generators/", api.GeneratorListApi.as_view(), name="api-generators"),
    # before generators/<slug>/: "import" is a valid slug
    path("generators/import/", api.ImportJobCreateApi.as_view(), name="api-generators-import"),
    path("generators/import/<int:pk>/", api.ImportJobDetailApi.as_view(), name="api-generators-import-detail"),
    path("generators/<slug:slug>/", api.GeneratorDetailApi.as_view(), name="api-generator-detail"),
    path(
        "generators/<slug:slug>/references/",
        api.ReferenceImageListApi.as_view(),
        name="api-generator-references",
    ),
    path("heads/", api.HeadVersionListApi.as_view(), name="api-heads"),
    path("heads/train/", api.HeadTrainApi.as_view(), name="api-heads-train"),
    path("heads/<int:version>/", api.HeadVersionDetailApi.as_view(), name="api-head-detail"),
    path("heads/<int:version>/activate/", api.HeadVersionActivateApi.as_view(), name="api-head-activate"),
    path("training-jobs/", api.TrainingJobListApi.as_view(), name="api-training-jobs"),
    path("training-jobs/<int:pk>/", api.TrainingJobDetailApi.as_view(), name="api-training-job-detail"),
    path(
        "training-jobs/<int:pk>/cancel/", api.TrainingJobCancelApi.as_view(), name="api-training-job-cancel"
    ),
]
