"""URLs of the feedback app, one set of lists per job; webapp/urls.py includes what the last lines gather:
`urlpatterns` under /feedback/ (namespace `feedback`), `registry_urlpatterns` under /registry/ in the
`registry:` namespace (pages of head versions that show field accuracy), `api_urlpatterns` under /api/v1/."""

from django.urls import URLPattern, path

from webapp.feedback.api import clusters as clusters_api
from webapp.feedback.api import field as field_api
from webapp.feedback.api import promotions as promotions_api
from webapp.feedback.views import clusters as clusters_views
from webapp.feedback.views import heads as heads_views
from webapp.feedback.views import promotions as promotions_views

app_name = "feedback"

# --- field accuracy of head versions -------------------------------------------------------------------
field_registry_urlpatterns: list[URLPattern] = [
    path("heads/", heads_views.heads, name="heads"),
    path("heads/<int:version>/", heads_views.head_detail, name="head_detail"),
    path("heads/<int:version>/activate/", heads_views.head_activate, name="head_activate"),
]
field_api_urlpatterns: list[URLPattern] = [
    path(
        "heads/<int:version>/field-metrics/",
        field_api.HeadVersionFieldMetricsApi.as_view(),
        name="api-head-field-metrics",
    ),
]

# --- confirmed submissions promoted into references ----------------------------------------------------
promotion_urlpatterns: list[URLPattern] = [
    path("submissions/<int:pk>/promote/", promotions_views.promote, name="promote_submission"),
]
promotion_api_urlpatterns: list[URLPattern] = [
    path("references/promote/", promotions_api.ReferencePromoteApi.as_view(), name="api-references-promote"),
]

# --- the unknown pile's clusters (site staff) ------------------------------------------------------------
cluster_urlpatterns: list[URLPattern] = [
    path("unknown-clusters/", clusters_views.unknown_clusters, name="unknown_clusters"),
    path("unknown-clusters/refresh/", clusters_views.unknown_clusters_refresh_now, name="unknown_clusters_refresh"),
    path("unknown-clusters/<int:pk>/", clusters_views.unknown_cluster, name="unknown_cluster"),
    path(
        "unknown-clusters/<int:pk>/register/",
        clusters_views.unknown_cluster_register_view,
        name="unknown_cluster_register",
    ),
    path(
        "unknown-clusters/<int:pk>/dismiss/",
        clusters_views.unknown_cluster_dismiss_view,
        name="unknown_cluster_dismiss",
    ),
    path(
        "unknown-clusters/<int:pk>/members/<int:submission_id>/thumbnail/",
        clusters_views.unknown_cluster_thumbnail,
        name="unknown_cluster_thumbnail",
    ),
]
cluster_api_urlpatterns: list[URLPattern] = [
    path("unknown-clusters/", clusters_api.UnknownClusterListApi.as_view(), name="api-unknown-clusters"),
    path("unknown-clusters/<int:pk>/", clusters_api.UnknownClusterDetailApi.as_view(), name="api-unknown-cluster"),
    path(
        "unknown-clusters/<int:pk>/register/",
        clusters_api.UnknownClusterRegisterApi.as_view(),
        name="api-unknown-cluster-register",
    ),
    path(
        "unknown-clusters/<int:pk>/dismiss/",
        clusters_api.UnknownClusterDismissApi.as_view(),
        name="api-unknown-cluster-dismiss",
    ),
]

# --- what webapp/urls.py includes ----------------------------------------------------------------------
urlpatterns = [*promotion_urlpatterns, *cluster_urlpatterns]
registry_urlpatterns = [*field_registry_urlpatterns]
api_urlpatterns = [*field_api_urlpatterns, *promotion_api_urlpatterns, *cluster_api_urlpatterns]
