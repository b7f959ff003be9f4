"""Django settings for Hailuo Studio, read from environment variables only.

Every variable is listed in the README's "Configuration" table. SQLite is the embedded
default; ``DATABASE_URL`` (``postgres://user:pass@host:port/db``) selects PostgreSQL, and
``DATABASE_MIGRATE_URL`` names the tables' owner that ``manage.py migrate`` connects as.
"""

import base64
import hashlib
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_decimal, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set (or DJANGO_DEBUG=1 for a dev default)")
    SECRET_KEY = "dev-insecure-secret-key-change-me"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "django_htmx",
    "django_q",
    "ninja",  # serves Swagger UI's assets locally: the API docs work offline
    "accounts",
    "providers",
    "billing",
    "generations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
                "billing.context_processors.budget_summary",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
_database_url = env_str("DATABASE_URL")
if _database_url:
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "var" / "db.sqlite3")),
            "OPTIONS": {
                # Several processes (web, django-q2 workers) share the file: WAL, a busy
                # timeout and BEGIN IMMEDIATE keep them from failing with "database is locked".
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
# The tables' owner, for ``manage.py migrate`` and ``create_app_role`` only (PostgreSQL): the app
# itself connects through DATABASE_URL as a role that owns nothing and may not UPDATE, DELETE
# or TRUNCATE the ledger (billing/db_roles.py, README "PostgreSQL"). Leave it unset in the
# environment of the web server and the workers.
_migrate_url = env_str("DATABASE_MIGRATE_URL")
DATABASE_MIGRATE = dj_database_url.parse(_migrate_url) if _migrate_url else None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- allauth: email + password, public sign-up off unless HAILUO_ALLOW_SIGNUP=1 --------
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "none")
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_LOGOUT_ON_GET = False
HAILUO_ALLOW_SIGNUP = env_bool("HAILUO_ALLOW_SIGNUP", False)
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "studio"
LOGOUT_REDIRECT_URL = "account_login"
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "studio@localhost")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("HAILUO_MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}


def s3_storage(*, bucket: str, endpoint_url: str | None = None, region: str | None = None,
               access_key: str | None = None, secret_key: str | None = None, prefix: str = "hailuo-studio") -> dict:
    """The ``STORAGES["default"]`` entry for an S3-compatible bucket (django-storages' S3Storage):
    private objects, never overwritten, always served through the app's access checks.
    The S3 tests (tests/test_s3.py) build theirs with this function too."""
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint_url,
            "region_name": region,
            "access_key": access_key,
            "secret_key": secret_key,
            "location": prefix,
            "default_acl": "private",
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }


# Any S3-compatible store for videos, posters and uploads (pip install ".[s3]", i.e. django-storages + boto3).
HAILUO_S3_BUCKET = env_str("HAILUO_S3_BUCKET")
if HAILUO_S3_BUCKET:
    STORAGES["default"] = s3_storage(
        bucket=HAILUO_S3_BUCKET,
        endpoint_url=env_str("HAILUO_S3_ENDPOINT_URL") or None,
        region=env_str("HAILUO_S3_REGION") or None,
        access_key=env_str("HAILUO_S3_ACCESS_KEY_ID") or None,
        secret_key=env_str("HAILUO_S3_SECRET_ACCESS_KEY") or None,
        prefix=env_str("HAILUO_S3_PREFIX", "hailuo-studio"),
    )
DATA_UPLOAD_MAX_MEMORY_SIZE = 25 * 1024 * 1024

# --- django-q2: ORM broker (the database is the queue; no Redis to run) ----------------
Q_CLUSTER = {
    "name": "hailuo",
    "orm": "default",
    "workers": env_int("HAILUO_Q_WORKERS", 4),
    # Task timeout and retry: set below, from HAILUO_DOWNLOAD_TIMEOUT (a download is the
    # longest task; the poll sweep runs just under a minute, see generations.tasks.poll_sweep).
    "max_attempts": 1,
    "poll": 0.25,
    "catch_up": False,
    "save_limit": 1000,
    "ack_failures": True,
    "sync": env_bool("HAILUO_Q_SYNC", False),
}

# --- Hailuo Studio ---------------------------------------------------------------------
def _derived_fernet_key(secret: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(("hailuo-fernet:" + secret).encode()).digest()).decode()


# Fernet keys (comma-separated; the first encrypts, all decrypt: rotate by prepending a new one).
HAILUO_ENCRYPTION_KEYS = env_list("HAILUO_ENCRYPTION_KEYS")
if not HAILUO_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "HAILUO_ENCRYPTION_KEYS must be set: generate one with "
            "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        )
    HAILUO_ENCRYPTION_KEYS = [_derived_fernet_key(SECRET_KEY)]

# Where providers can reach us (callbacks) and fetch our uploaded images. Empty: no callbacks, poll only.
HAILUO_PUBLIC_BASE_URL = env_str("HAILUO_PUBLIC_BASE_URL").rstrip("/")
# Poll cadence multiplier: 1.0 follows the providers' documented cadence; the demo uses 0.1.
HAILUO_POLL_TIME_SCALE = env_float("HAILUO_POLL_TIME_SCALE", 1.0)
# Seconds between two claims of due generations inside one poll sweep run.
HAILUO_POLL_SWEEP_INTERVAL = env_float("HAILUO_POLL_SWEEP_INTERVAL", 1.0)
# Poll sweeps allowed to run at once (each is concurrent inside; raise it when scaling out to several machines).
HAILUO_POLL_SWEEPERS = env_int("HAILUO_POLL_SWEEPERS", 1)
# Maximum number of generations one sweep claims at once, and concurrent HTTP requests per provider account.
HAILUO_POLL_BATCH = env_int("HAILUO_POLL_BATCH", 500)
HAILUO_POLL_CONCURRENCY_PER_ACCOUNT = env_int("HAILUO_POLL_CONCURRENCY_PER_ACCOUNT", 32)
# A generation still not final after this many seconds is marked expired and its hold released.
HAILUO_MAX_TASK_LIFETIME = env_int("HAILUO_MAX_TASK_LIFETIME", 6 * 3600)
# Submit retries for errors raised before the request left (connection refused, 429, 5xx).
HAILUO_SUBMIT_MAX_ATTEMPTS = env_int("HAILUO_SUBMIT_MAX_ATTEMPTS", 5)
# Input images (uploads and image URLs) with more pixels than this are refused before any
# money moves, and so is any image Pillow flags as a decompression bomb: 40 megapixels.
HAILUO_IMAGE_MAX_PIXELS = env_int("HAILUO_IMAGE_MAX_PIXELS", 40_000_000)
# Result download limits.
HAILUO_DOWNLOAD_MAX_BYTES = env_int("HAILUO_DOWNLOAD_MAX_BYTES", 512 * 1024 * 1024)
HAILUO_DOWNLOAD_TIMEOUT = env_float("HAILUO_DOWNLOAD_TIMEOUT", 300.0)
# django-q2 kills a task after "timeout" s and hands an unacknowledged one out again after
# "retry" s (which must be longer): a download with its poster frame must fit in the timeout.
Q_CLUSTER["timeout"] = max(120, int(HAILUO_DOWNLOAD_TIMEOUT) + 120)
Q_CLUSTER["retry"] = Q_CLUSTER["timeout"] + 60
# host:port pairs whose host may resolve to private/loopback addresses (the sandboxes), e.g.
# "127.0.0.1:8801,localhost:8801"; "host:*" allows every port of a host (test setups only).
# Empty: downloads reach public addresses only (providers.http.parse_allowed_private_hosts).
HAILUO_ALLOWED_PRIVATE_HOSTS = env_list("HAILUO_ALLOWED_PRIVATE_HOSTS")
for _entry in HAILUO_ALLOWED_PRIVATE_HOSTS:
    if not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:\[\]]+):(\*|[0-9]{1,5})", _entry):
        raise ImproperlyConfigured(
            f"HAILUO_ALLOWED_PRIVATE_HOSTS: {_entry!r} must be host:port (e.g. 127.0.0.1:8801) or host:*; "
            "a bare host would allow every local port"
        )
# Provider HTTP timeouts (seconds).
HAILUO_PROVIDER_CONNECT_TIMEOUT = env_float("HAILUO_PROVIDER_CONNECT_TIMEOUT", 10.0)
HAILUO_PROVIDER_READ_TIMEOUT = env_float("HAILUO_PROVIDER_READ_TIMEOUT", 60.0)
# Default budget (USD per month) given to a new member by the demo seed.
HAILUO_DEMO_BUDGET = env_decimal("HAILUO_DEMO_BUDGET", "25.00")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "django.db.backends": {"level": "WARNING"}},
}
