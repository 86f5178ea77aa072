from django.urls import path

from webapp.submissions import api, views

app_name = "submissions"

urlpatterns = [
    path("", views.history, name="history"),
    path("upload/", views.upload, name="upload"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/thumbnail/", views.thumbnail, name="thumbnail"),
    path("<int:pk>/confirmation/", views.confirmation_edit, name="confirmation"),
    path("confirmations/", views.confirm_selection, name="confirm_selection"),
    path("reattribute/", views.reattribute, name="reattribute"),
    path("reattribute/changes/", views.verdict_changes_view, name="verdict_changes"),
    path("reattribute/activate/<int:version>/", views.activate_and_reattribute, name="activate_and_reattribute"),
    path("reattribute/progress/", views.reattribution_progress, name="reattribution_progress"),
]

# Included under /api/v1/ without a namespace: the names say which app they belong to.
api_urlpatterns = [
    path("submissions/", api.SubmissionListCreateApi.as_view(), name="api-submission-list"),
    path("submissions/batch/", api.SubmissionBatchCreateApi.as_view(), name="api-submission-batch"),
    path("submissions/progress/", api.SubmissionProgressApi.as_view(), name="api-submission-progress"),
    path("submissions/<int:pk>/", api.SubmissionDetailApi.as_view(), name="api-submission-detail"),
    path(
        "submissions/<int:pk>/confirmation/",
        api.SubmissionConfirmationApi.as_view(),
        name="api-submission-confirmation",
    ),
    path("reattributions/", api.ReattributeApi.as_view(), name="api-reattribute"),
    path("verdict-changes/", api.VerdictChangesApi.as_view(), name="api-verdict-changes"),
]
