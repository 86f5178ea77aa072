"""Settings for every environment; each value comes from an environment variable.

With nothing set this runs on a laptop: SQLite, media and the feature cache under ./var,
and a Celery broker on the local filesystem, so nothing but Python is needed.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from webapp.env import envbool, envfloat, envint, envlist, envstr

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("VAR_DIR", str(BASE_DIR / "var")))

SECRET_KEY = envstr("SECRET_KEY", "insecure-development-key-set-SECRET_KEY-in-production")
DEBUG = envbool("DEBUG", False)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "webapp.core",
    "webapp.teams",
    "webapp.cases",
    "webapp.submissions",
    "webapp.registry",
    "webapp.audit",
    "webapp.reports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "webapp.core.middleware.RejectNulCharacters",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "webapp.core.context_processors.platform",
            ],
        },
    },
]


def database_from_url(url: str) -> dict[str, object]:
    """`postgres://user:pass@host:port/name` or `sqlite:///path` to a Django DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        # sqlite:///relative/to/project or sqlite:////absolute: drop the slash after the empty host
        name = unquote(parsed.path)[1:]
        if not Path(name).is_absolute():
            name = str(BASE_DIR / name)
        Path(name).parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": name,
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
            "TEST": {"NAME": str(Path(name).with_name("test_" + Path(name).name))},
        }
    if parsed.scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": envint("DATABASE_CONN_MAX_AGE", 0),
        }
    raise ValueError(f"DATABASE_URL must start with postgres:// or sqlite:///, got {url!r}")


DATABASE_URL = envstr("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
DATABASES = {"default": database_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "webapp" / "static"]

# Media is never served from a public folder: webapp.core.views.media checks the team first.
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": envstr("MEDIA_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage")},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Uploads
UPLOAD_MAX_BYTES = envint("UPLOAD_MAX_BYTES", 25 * 1024 * 1024)
UPLOAD_MAX_PIXELS = envint("UPLOAD_MAX_PIXELS", 89_478_485)
UPLOAD_MAX_FILES = envint("UPLOAD_MAX_FILES", 200)
DATA_UPLOAD_MAX_NUMBER_FILES = UPLOAD_MAX_FILES
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# The attribution engine. Workers turn these into engine configs (workers/runtime.py).
ATTRIBUTION_BACKBONE = envstr("ATTRIBUTION_BACKBONE", "ViT-S-16")
# An open_clip pretrained tag (e.g. laion2b_s34b_b88k with ViT-B-16), a checkpoint path, or empty
# for seeded random weights: verdicts made that way are labelled "not pretrained" everywhere.
ATTRIBUTION_PRETRAINED = envstr("ATTRIBUTION_PRETRAINED", "")
ATTRIBUTION_SEED = envint("ATTRIBUTION_SEED", 0)
ATTRIBUTION_BLOCKS = [int(b) for b in envlist("ATTRIBUTION_BLOCKS", ["8"])]
ATTRIBUTION_DEVICE = envstr("ATTRIBUTION_DEVICE", "auto")
ATTRIBUTION_PRECISION = envstr("ATTRIBUTION_PRECISION", "fp16")
# Images per forward pass. A worker groups up to two passes' worth of single-upload messages (the
# second pass's images are decoded while the first runs), waiting at most ATTRIBUTION_BATCH_WINDOW_MS
# for more when the queue is short; ATTRIBUTION_LOADER_THREADS open and preprocess the images.
ATTRIBUTION_BATCH_SIZE = envint("ATTRIBUTION_BATCH_SIZE", 32)
ATTRIBUTION_BATCH_WINDOW_MS = envint("ATTRIBUTION_BATCH_WINDOW_MS", 50)
ATTRIBUTION_LOADER_THREADS = envint("ATTRIBUTION_LOADER_THREADS", 2)
# Each worker process loads the backbone and runs one small pass when it starts, before taking work.
ATTRIBUTION_WARMUP = envbool("ATTRIBUTION_WARMUP", True)
ATTRIBUTION_NEAREST_K = envint("ATTRIBUTION_NEAREST_K", 5)
FEATURE_CACHE_DIR = Path(envstr("FEATURE_CACHE_DIR", str(VAR_DIR / "feature-cache")))
MODEL_CACHE_DIR = Path(envstr("MODEL_CACHE_DIR", str(VAR_DIR / "model-cache")))
HEAD_AUTO_ACTIVATE = envbool("HEAD_AUTO_ACTIVATE", False)
HEAD_AUTO_ACTIVATE_TOLERANCE = envfloat("HEAD_AUTO_ACTIVATE_TOLERANCE", 0.02)

# Celery. Without REDIS_URL the broker is kombu's filesystem transport under ./var/broker.
REDIS_URL = envstr("REDIS_URL", "")
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = (
    # A Redis that does not answer fails an upload's send within seconds (the sweep sends it later)
    # instead of holding the request for the operating system's connect timeout.
    {"visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 3600), "socket_connect_timeout": 5}
    if REDIS_URL
    else {
        "data_folder_in": str(BROKER_DIR / "out"),
        "data_folder_out": str(BROKER_DIR / "out"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
)
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_IGNORE_RESULT = True
# Reliability (README, "Reliability"): a message is acknowledged only after its task has run, and
# one whose worker process died is given back to the queue; a worker holds the messages of two groups
# (one running, one filling: see workers/batching.py), so that its next pass is ready when one ends;
# Redis hands an unacknowledged message to another worker after the visibility timeout, which must
# stay above the hard time limit so that a task still running is never delivered twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = envint("CELERY_WORKER_PREFETCH_MULTIPLIER", 4 * ATTRIBUTION_BATCH_SIZE)
# A pool process loads the backbone and warms it up before it reports itself started.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = envfloat("CELERY_WORKER_PROC_ALIVE_TIMEOUT", 300.0)
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 900)
CELERY_TASK_SOFT_TIME_LIMIT = envint("CELERY_TASK_SOFT_TIME_LIMIT", 840)
CELERY_WORKER_MAX_MEMORY_PER_CHILD = envint("CELERY_WORKER_MAX_MEMORY_PER_CHILD", 4_000_000)  # KiB
# A lost broker connection does not cancel the batch in progress: its verdicts are stored, and the
# message's second delivery, if any, finds them done (the claim and the unique verdict see to it).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # a worker waits for its broker for as long as it takes
CELERY_TASK_DEFAULT_QUEUE = "attribution"
CELERY_TASK_ROUTES = {
    "workers.tasks.attribute_submission": {"queue": "attribution"},
    "workers.tasks.compute_reference_features": {"queue": "attribution"},
    "workers.tasks.train_head": {"queue": "training"},
    "workers.tasks.sweep_stale_submissions": {"queue": "attribution"},
}
# Queued or processing for longer than this (above the hard time limit), a submission is queued again
# by the periodic sweep: a message lost with a broker restart, or a batch whose worker died.
SUBMISSION_STALE_AFTER_S = envint("SUBMISSION_STALE_AFTER_S", 1200)
# A submission claimed this many times without a verdict (its worker died each time) ends as failed.
SUBMISSION_MAX_ATTEMPTS = envint("SUBMISSION_MAX_ATTEMPTS", 3)
SUBMISSION_SWEEP_INTERVAL_S = envint("SUBMISSION_SWEEP_INTERVAL_S", 60)
CELERY_BEAT_SCHEDULE = {
    "sweep-stale-submissions": {
        "task": "workers.tasks.sweep_stale_submissions",
        "schedule": float(SUBMISSION_SWEEP_INTERVAL_S),
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {
        "upload": envstr("THROTTLE_UPLOAD", "600/minute"),
        "token": envstr("THROTTLE_TOKEN", "20/minute"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Synthetic image origin attribution API",
    "DESCRIPTION": "Upload images, read verdicts, manage the generator registry and head versions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Several models have a `status`: each choice set gets its own, stable name in the schema.
    "ENUM_NAME_OVERRIDES": {
        "SubmissionStatusEnum": "webapp.submissions.models.Submission.Status",
        "CaseStatusEnum": "webapp.cases.models.Case.Status",
        "HeadVersionStatusEnum": "webapp.registry.models.HeadVersion.Status",
        "TrainingJobStatusEnum": "webapp.registry.models.TrainingJob.Status",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "webapp.core.schema.document_platform_errors",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
}
