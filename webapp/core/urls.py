from django.contrib.auth import views as auth_views
from django.urls import path

from webapp.core import api, views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("workers/", views.workers, name="workers"),
    path("media/<path:path>", views.media, name="media"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
]

# Included under /api/v1/ without a namespace: the names say which app they belong to.
api_urlpatterns = [
    path("auth/token/", api.AuthTokenApi.as_view(), name="api-auth-token"),
]
