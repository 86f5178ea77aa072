"""Settings for every environment; each value comes from an environment variable.

With nothing set this runs on a laptop: SQLite, media and the feature cache under ./var,
and a Celery broker on the local filesystem, so nothing but Python is needed.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE

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
    "drf_spectacular_sidecar",
    "csp",
    "axes",
    "webapp.core",
    "webapp.accounts",
    "webapp.teams",
    "webapp.cases",
    "webapp.submissions",
    "webapp.registry",
    "webapp.audit",
    "webapp.reports",
    "webapp.feedback",
]

MIDDLEWARE = [
    # Refuses a body over REQUEST_MAX_BYTES (413) before anything reads it.
    "webapp.core.middleware.RequestBodyLimit",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "webapp.core.middleware.RejectNulCharacters",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A signed-in user who is not staff gets the site's 403 page from Django's admin, not its login form.
    "webapp.core.middleware.StaffOnlyAdmin",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a locked-out login (django-axes) into the answer of webapp.accounts.lockout.lockout_response.
    "axes.middleware.AxesMiddleware",
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
    # Not a check: its password_changed hook deletes the user's API token when the password changes.
    {"NAME": "webapp.accounts.tokens.RevokeTokensOnPasswordChange"},
]
# django-axes first: it refuses a locked-out username or address before any password is checked.
AUTHENTICATION_BACKENDS = ["webapp.accounts.backends.LoginLimitBackend", "django.contrib.auth.backends.ModelBackend"]
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

# Shared counters (login failures, API throttles): in Redis when REDIS_URL is set, so that every web
# process counts together; without it each process keeps its own (one `runserver` is one process).
REDIS_URL = envstr("REDIS_URL", "")
CACHE_URL = envstr("CACHE_URL", REDIS_URL)
CACHE_KEY_PREFIX = envstr("CACHE_KEY_PREFIX", "webapp-cache")
CACHES = {
    "default": (
        # Redis; clear() deletes only this cache's keys, never the broker's queues in the same database.
        {"BACKEND": "webapp.core.cache.PrefixedRedisCache", "LOCATION": CACHE_URL, "KEY_PREFIX": CACHE_KEY_PREFIX}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "KEY_PREFIX": CACHE_KEY_PREFIX}
    )
}

# The client's address: REMOTE_ADDR, unless NUM_PROXIES trusted proxies (nginx in docker-compose.yml:
# 1) stand in front and append to X-Forwarded-For. With 0, X-Forwarded-For is ignored: anyone can write it.
NUM_PROXIES = envint("NUM_PROXIES", 0)

# Login limit (django-axes, counting in the default cache): LOGIN_FAILURE_LIMIT wrong passwords for one
# username, or from one client address, lock that username or address out of the login form, the token
# endpoint and the Django admin for LOGIN_LOCKOUT_MINUTES (counted from the last failure).
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_CACHE = "default"
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(minutes=envfloat("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "webapp.accounts.lockout.client_ip"
AXES_LOCKOUT_CALLABLE = "webapp.accounts.lockout.lockout_response"
AXES_USERNAME_FORM_FIELD = "username"
AXES_VERBOSE = False  # no banner on every start (management commands print JSON); failures are still logged

# API tokens: 0 keeps a token until it is revoked or the password changes; otherwise it expires after
# TOKEN_TTL_DAYS days (the next one obtained with the password is a new key).
TOKEN_TTL_DAYS = envfloat("TOKEN_TTL_DAYS", 0)

# Health: anonymous callers get only ok / error; staff, and a request carrying HEALTH_TOKEN as
# `Authorization: Bearer ...` (for a monitor), get the detail.
HEALTH_TOKEN = envstr("HEALTH_TOKEN", "")

# Content-Security-Policy on every page: nothing from another origin, scripts only from our static files
# (or an inline script carrying the request's nonce). Styles may be inline (style attributes draw the
# bars), never from elsewhere.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],  # the nonce only where a template asks for request.csp_nonce
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# Uploads
UPLOAD_MAX_BYTES = envint("UPLOAD_MAX_BYTES", 25 * 1024 * 1024)
UPLOAD_MAX_PIXELS = envint("UPLOAD_MAX_PIXELS", 89_478_485)
UPLOAD_MAX_FILES = envint("UPLOAD_MAX_FILES", 200)
DATA_UPLOAD_MAX_NUMBER_FILES = UPLOAD_MAX_FILES
# Bulk reference import from a zip or tar (POST /api/v1/generators/import/): the archive's size, its entries
# and the bytes they hold uncompressed are capped (zip bombs); each image also passes the upload checks.
IMPORT_MAX_ARCHIVE_BYTES = envint("IMPORT_MAX_ARCHIVE_BYTES", 2 * 1024 * 1024 * 1024)
IMPORT_MAX_ENTRIES = envint("IMPORT_MAX_ENTRIES", 100_000)
IMPORT_MAX_TOTAL_BYTES = envint("IMPORT_MAX_TOTAL_BYTES", 20 * 1024 * 1024 * 1024)
IMPORT_TIME_LIMIT_S = envint("IMPORT_TIME_LIMIT_S", 6 * 3600)  # one import job on a worker
# A request body over this is refused with 413 from its Content-Length, before it is read (a batch of
# many files needs it raised; the reverse proxy's client_max_body_size should match it).
REQUEST_MAX_BYTES = envint("REQUEST_MAX_BYTES", 256 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Provenance read at upload (attribution/provenance.py): a PEM bundle of the root certificates whose C2PA
# signers are trusted (empty: none is; a signed manifest is then "untrusted", medium evidence). Read once.
C2PA_TRUST_ANCHORS = envstr("C2PA_TRUST_ANCHORS", "")
# The longest one upload waits for the C2PA reader; a slower manifest is reported as malformed.
PROVENANCE_TIMEOUT_S = envfloat("PROVENANCE_TIMEOUT_S", 2.0)

# The attribution engine. Workers turn these into engine configs (workers/runtime.py).
ATTRIBUTION_BACKBONE = envstr("ATTRIBUTION_BACKBONE", "ViT-S-16")
# An open_clip pretrained tag (e.g. laion2b_s34b_b88k with ViT-B-16), a checkpoint path, or empty
# for seeded random weights: verdicts made that way are labelled "not pretrained" everywhere.
ATTRIBUTION_PRETRAINED = envstr("ATTRIBUTION_PRETRAINED", "")
ATTRIBUTION_SEED = envint("ATTRIBUTION_SEED", 0)
# The blocks whose features the head reads, 0-based (docs/method.md: the paper's figure counts from 1).
# "auto" (the default): each training job chooses the block, or an L2-normalised join of the best two or
# three, by the held-out generators' OSCR, and the head records it; numbers ("7" or "6,8") pin them.
_BLOCKS = envlist("ATTRIBUTION_BLOCKS", ["auto"])
ATTRIBUTION_BLOCKS: list[int] | str = "auto" if [b.lower() for b in _BLOCKS] == ["auto"] else [int(b) for b in _BLOCKS]
ATTRIBUTION_DEVICE = envstr("ATTRIBUTION_DEVICE", "auto")
ATTRIBUTION_PRECISION = envstr("ATTRIBUTION_PRECISION", "fp16")
# Images per forward pass. "auto" (the default): each worker process times a few sizes on its own device
# when it starts (ATTRIBUTION_BATCH_CANDIDATES, or the device's defaults in attribution/tuning.py) and keeps
# the fastest; the table is in its log and on /workers/. A number is used as it is.
_BATCH_SIZE = envstr("ATTRIBUTION_BATCH_SIZE", "auto").strip().lower()
ATTRIBUTION_BATCH_SIZE: int | None = None if _BATCH_SIZE == "auto" else int(_BATCH_SIZE)
ATTRIBUTION_BATCH_CANDIDATES = [int(size) for size in envlist("ATTRIBUTION_BATCH_CANDIDATES", [])]
# A worker groups up to this many single-upload messages (two passes' worth of a fixed batch size, or of
# the largest size "auto" may choose, so that the second pass's images are decoded while the first runs),
# waiting at most ATTRIBUTION_BATCH_WINDOW_MS for more when the queue is short; ATTRIBUTION_LOADER_THREADS
# open and preprocess the images.
ATTRIBUTION_GROUP_SIZE = envint(
    "ATTRIBUTION_GROUP_SIZE", 2 * (ATTRIBUTION_BATCH_SIZE or max(ATTRIBUTION_BATCH_CANDIDATES or [64]))
)
ATTRIBUTION_BATCH_WINDOW_MS = envint("ATTRIBUTION_BATCH_WINDOW_MS", 50)
ATTRIBUTION_LOADER_THREADS = envint("ATTRIBUTION_LOADER_THREADS", 2)
# Each worker process loads the backbone and runs one small pass when it starts, before taking work.
ATTRIBUTION_WARMUP = envbool("ATTRIBUTION_WARMUP", True)
ATTRIBUTION_NEAREST_K = envint("ATTRIBUTION_NEAREST_K", 5)
FEATURE_CACHE_DIR = Path(envstr("FEATURE_CACHE_DIR", str(VAR_DIR / "feature-cache")))
MODEL_CACHE_DIR = Path(envstr("MODEL_CACHE_DIR", str(VAR_DIR / "model-cache")))
# Robust training: perturbed copies of every reference image (JPEG, blur, resize, noise; see
# attribution/perturb.py ROBUST_TRAINING) join the training set; recorded in the head's metrics.
TRAINING_ROBUST = envbool("TRAINING_ROBUST", False)
HEAD_AUTO_ACTIVATE = envbool("HEAD_AUTO_ACTIVATE", False)
HEAD_AUTO_ACTIVATE_TOLERANCE = envfloat("HEAD_AUTO_ACTIVATE_TOLERANCE", 0.02)
# Reference images each active generator (real included) needs before a training job may start.
TRAINING_MIN_REFERENCES = envint("TRAINING_MIN_REFERENCES", 10)
# The share of known images (held out at training) the unknown-rejection threshold accepts: lower rejects
# more of what the head was not trained on, at the price of rejecting more known images too.
TRAINING_THRESHOLD_TPR = envfloat("TRAINING_THRESHOLD_TPR", 0.95)

# Celery. Without REDIS_URL the broker is kombu's filesystem transport under ./var/broker.
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = (
    # A Redis that does not answer fails an upload's send within seconds (the sweep sends it later)
    # instead of holding the request for the operating system's connect timeout.
    # CELERY_BROKER_KEY_PREFIX: every broker key (queues, unacknowledged messages, broadcasts) under a
    # prefix, so that deployments or test runs sharing one Redis database never see each other's work.
    {"visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 3600), "socket_connect_timeout": 5,
     "global_keyprefix": envstr("CELERY_BROKER_KEY_PREFIX", "")}
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
CELERY_WORKER_PREFETCH_MULTIPLIER = envint("CELERY_WORKER_PREFETCH_MULTIPLIER", 2 * ATTRIBUTION_GROUP_SIZE)
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
    "workers.tasks.registry_import": {"queue": "training"},
    "workers.tasks.sweep_import_jobs": {"queue": "training"},
    "workers.tasks.sweep_stale_submissions": {"queue": "attribution"},
    "workers.tasks.fill_field_predictions": {"queue": "training"},
    "workers.tasks.refresh_unknown_clusters": {"queue": "training"},
}
# Queued or processing for longer than this (above the hard time limit), a submission is queued again
# by the periodic sweep: a message lost with a broker restart, or a batch whose worker died.
SUBMISSION_STALE_AFTER_S = envint("SUBMISSION_STALE_AFTER_S", 1200)
# A submission claimed this many times without a verdict (its worker died each time) ends as failed.
SUBMISSION_MAX_ATTEMPTS = envint("SUBMISSION_MAX_ATTEMPTS", 3)
SUBMISSION_SWEEP_INTERVAL_S = envint("SUBMISSION_SWEEP_INTERVAL_S", 60)
# A training job still queued after this long (its message was lost, or the broker was down when it was
# asked for) is sent again by the sweep below.
TRAINING_RESEND_AFTER_S = envint("TRAINING_RESEND_AFTER_S", 120)
# How often the candidate and the active head get field predictions for newly confirmed images that they
# never judged (webapp.feedback: a head's field accuracy).
FIELD_PREDICTIONS_INTERVAL_S = envint("FIELD_PREDICTIONS_INTERVAL_S", 900)
# The unknown pile's clustering (webapp.feedback, attribution/clustering.py): the newest MAX_ITEMS images
# rejected as unknown by the active head's feature space, grouped by average linkage on cosine distance (a
# cluster's members lie within DISTANCE of each other on average), groups under MIN_SIZE left out, re-clustered
# every INTERVAL_S seconds.
UNKNOWN_CLUSTER_MIN_SIZE = envint("UNKNOWN_CLUSTER_MIN_SIZE", 5)
UNKNOWN_CLUSTER_DISTANCE = envfloat("UNKNOWN_CLUSTER_DISTANCE", 0.1)
UNKNOWN_CLUSTER_MAX_ITEMS = envint("UNKNOWN_CLUSTER_MAX_ITEMS", 2000)
UNKNOWN_CLUSTER_INTERVAL_S = envint("UNKNOWN_CLUSTER_INTERVAL_S", 3600)
CELERY_BEAT_SCHEDULE = {
    "sweep-stale-submissions": {
        "task": "workers.tasks.sweep_stale_submissions",
        "schedule": float(SUBMISSION_SWEEP_INTERVAL_S),
    },
    "sweep-training-jobs": {
        "task": "workers.tasks.sweep_training_jobs",
        "schedule": float(SUBMISSION_SWEEP_INTERVAL_S),
    },
    "sweep-import-jobs": {
        "task": "workers.tasks.sweep_import_jobs",
        "schedule": float(SUBMISSION_SWEEP_INTERVAL_S),
    },
    "fill-field-predictions": {
        "task": "workers.tasks.fill_field_predictions",
        "schedule": float(FIELD_PREDICTIONS_INTERVAL_S),
    },
    "refresh-unknown-clusters": {
        "task": "workers.tasks.refresh_unknown_clusters",
        "schedule": float(UNKNOWN_CLUSTER_INTERVAL_S),
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "webapp.accounts.tokens.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "NUM_PROXIES": NUM_PROXIES,
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
    # Swagger UI from our own static files (drf-spectacular-sidecar), never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Several models have a `status`: each choice set gets its own, stable name in the schema.
    "ENUM_NAME_OVERRIDES": {
        "SubmissionStatusEnum": "webapp.submissions.models.Submission.Status",
        "CaseStatusEnum": "webapp.cases.models.Case.Status",
        "HeadVersionStatusEnum": "webapp.registry.models.HeadVersion.Status",
        "TrainingJobStatusEnum": "webapp.registry.models.TrainingJob.Status",
        "ConfirmationStatusEnum": "webapp.submissions.models.Confirmation.Status",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "webapp.common.schema.document_platform_errors",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    # django-axes logs every successful login at INFO; failures and lock-outs are warnings.
    "loggers": {"axes": {"level": "WARNING"}},
}
