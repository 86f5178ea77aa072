from django.urls import path

from webapp.submissions import api, views

app_name = "submissions"

urlpatterns = [
    path("", views.history, name="history"),
    path("upload/", views.upload, name="upload"),
    path("<int:pk>/", views.detail, name="detail"),
]

# Included under /api/v1/ without a namespace: the names say which app they belong to.
api_urlpatterns = [
    path("submissions/", api.SubmissionListCreateApi.as_view(), name="api-submission-list"),
    path("submissions/batch/", api.SubmissionBatchCreateApi.as_view(), name="api-submission-batch"),
    path("submissions/progress/", api.SubmissionProgressApi.as_view(), name="api-submission-progress"),
    path("submissions/<int:pk>/", api.SubmissionDetailApi.as_view(), name="api-submission-detail"),
]
