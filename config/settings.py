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
    "csp",
    "ninja",  # serves Swagger UI's assets locally: the API docs work offline
    "accounts",
    "providers",
    "billing",
    "generations",
    "webhooks",
    "teamwork",
    "approvals",
]

MIDDLEWARE = [
    "config.middleware.ApiStack",  # /api/v1/ (but its docs), /hooks/, /healthz, /metrics: HAILUO_API_MIDDLEWARE instead
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.errors.ApiJsonErrorsMiddleware",
    "config.errors.UnknownQueryParameterMiddleware",
]
# The stack of the REST API and the other callers that are programs (providers' callbacks,
# /healthz, /metrics; config.middleware): tokens, not sessions, so no sessions, CSRF,
# messages, allauth or static files; the same security headers and error shape.
HAILUO_API_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.ApiHeaders",
    "config.errors.ApiJsonErrorsMiddleware",  # outside CommonMiddleware: a bad Host header answers JSON too
    "django.middleware.common.CommonMiddleware",
    "config.errors.UnknownQueryParameterMiddleware",
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
# The hot paths' hand-written statements (config/hotsql.py: the token lookup, one generation's
# read, a submit's budget rows and inserts) are prepared on their connection after a few uses,
# which saves PostgreSQL's planning (~0.5 ms a statement). Set 0 behind a pooler that cannot
# keep prepared statements (PgBouncer before 1.21 in transaction pooling mode).
HAILUO_DB_PREPARE = env_bool("DB_PREPARED_STATEMENTS", True)
if _database_url and HAILUO_DB_PREPARE:
    # Plan each prepared statement once: with PostgreSQL's default ("auto") the first five runs
    # of a prepared statement are planned anew, and a statement with an array parameter may
    # never switch to its generic plan. Only the hot statements are prepared (the ORM binds
    # client-side), so nothing else is affected.
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options["options"] = " ".join(filter(None, [_options.get("options", ""), "-c plan_cache_mode=force_generic_plan"]))
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
# --- email (budget alerts): EMAIL_URL, or EMAIL_BACKEND / EMAIL_HOST... ; console by default --
# EMAIL_URL: smtp://user:password@host:587?tls=1 (or smtps://… for implicit TLS), console://, locmem://
_EMAIL_BACKENDS = {
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "smtps": "django.core.mail.backends.smtp.EmailBackend",
    "console": "django.core.mail.backends.console.EmailBackend",
    "locmem": "django.core.mail.backends.locmem.EmailBackend",
    "dummy": "django.core.mail.backends.dummy.EmailBackend",
}
EMAIL_BACKEND = env_str("EMAIL_BACKEND", _EMAIL_BACKENDS["console"])
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
if env_str("EMAIL_URL"):
    from urllib.parse import parse_qs, unquote, urlsplit

    _email = urlsplit(env_str("EMAIL_URL"))
    if _email.scheme not in _EMAIL_BACKENDS:
        raise ImproperlyConfigured(f"EMAIL_URL: unknown scheme {_email.scheme!r} (smtp, smtps, console, locmem, dummy)")
    EMAIL_BACKEND = _EMAIL_BACKENDS[_email.scheme]
    if _email.scheme in ("smtp", "smtps"):
        _query = parse_qs(_email.query)
        EMAIL_HOST = _email.hostname or EMAIL_HOST
        EMAIL_PORT = _email.port or (465 if _email.scheme == "smtps" else 587)
        EMAIL_HOST_USER = unquote(_email.username or "")
        EMAIL_HOST_PASSWORD = unquote(_email.password or "")
        EMAIL_USE_SSL = _email.scheme == "smtps"
        EMAIL_USE_TLS = not EMAIL_USE_SSL and _query.get("tls", ["1"])[0] not in ("0", "false", "no")
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
    "broker_class": "generations.broker.OrmBroker",  # django-q2's ORM broker, enqueue as a prepared INSERT
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
# Generations one sweep pass polls at most (its window keeps going while they are due), and the
# status reads kept in flight per provider account (0: each provider's default, README "Poll concurrency").
HAILUO_POLL_BATCH = env_int("HAILUO_POLL_BATCH", 20000)
HAILUO_POLL_CONCURRENCY_PER_ACCOUNT = env_int("HAILUO_POLL_CONCURRENCY_PER_ACCOUNT", 0)
# What a provider's callback does: "inline" reads the task's status with our key inside the
# callback's request (at most HAILUO_CALLBACK_READ_TIMEOUT s connect and read; any error falls
# back to the queue); "queue" only queues that read on django-q2 (generations/services/callback_read.py).
HAILUO_CALLBACK_STATUS_READ = env_str("HAILUO_CALLBACK_STATUS_READ", "inline")
if HAILUO_CALLBACK_STATUS_READ not in ("inline", "queue"):
    raise ImproperlyConfigured("HAILUO_CALLBACK_STATUS_READ must be inline or queue")
HAILUO_CALLBACK_READ_TIMEOUT = env_float("HAILUO_CALLBACK_READ_TIMEOUT", 5.0)
# Inline reads at once per web process (gunicorn: per worker); a callback beyond them is queued.
HAILUO_CALLBACK_INLINE_READS = env_int("HAILUO_CALLBACK_INLINE_READS", 3)
# A generation still not final after this many seconds is marked expired and its hold released.
HAILUO_MAX_TASK_LIFETIME = env_int("HAILUO_MAX_TASK_LIFETIME", 6 * 3600)
# After expiry, a task whose id we know is still polled slowly for this many seconds: a late
# success is captured (marked late) and archived, a late failure changes nothing.
HAILUO_LATE_RESULT_GRACE = env_int("HAILUO_LATE_RESULT_GRACE", 48 * 3600)
# Seconds between those slow polls (scaled by HAILUO_POLL_TIME_SCALE like every cadence).
HAILUO_LATE_POLL_INTERVAL = env_float("HAILUO_LATE_POLL_INTERVAL", 600.0)
# A video whose download failed for good may be retried this long after the task finished
# (the shortest documented result-URL lifetime: qingbo's 24 h; MiniMax signs a fresh URL each read).
HAILUO_RESULT_URL_HOURS = env_float("HAILUO_RESULT_URL_HOURS", 24.0)
# Seconds a request may wait for a team admin's approval; then it is rejected and its hold released (approvals).
HAILUO_APPROVAL_TTL = env_int("HAILUO_APPROVAL_TTL", 7 * 24 * 3600)
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
# REST API rate limits per token ("count/period", period s, min, h or d): every request, and writes (POST/DELETE).
HAILUO_API_RATE_LIMIT = env_str("HAILUO_API_RATE_LIMIT", "600/min")
HAILUO_API_WRITE_RATE_LIMIT = env_str("HAILUO_API_WRITE_RATE_LIMIT", "60/min")
# Outbound webhooks (webhooks/): seconds to wait after each failed automatic attempt (the
# last delay repeats until the list ends: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h = 27.6 h of
# retries over 8 attempts); an endpoint whose attempts have all failed for DISABLE_AFTER
# seconds is disabled and its owner emailed; TIMEOUT bounds one POST (connect 10 s).
HAILUO_WEBHOOK_RETRY_DELAYS = [int(v) for v in env_list("HAILUO_WEBHOOK_RETRY_DELAYS", ["5", "300", "1800", "7200", "18000", "36000", "36000"])]
HAILUO_WEBHOOK_DISABLE_AFTER = env_int("HAILUO_WEBHOOK_DISABLE_AFTER", 3 * 24 * 3600)
HAILUO_WEBHOOK_TIMEOUT = env_float("HAILUO_WEBHOOK_TIMEOUT", 15.0)
# A generation.succeeded message waits for the video to be archived (so its video_url works),
# at most this many seconds; then it is sent anyway.
HAILUO_WEBHOOK_HOLD_MAX = env_int("HAILUO_WEBHOOK_HOLD_MAX", 900)
# Default budget (USD per month) given to a new member by the demo seed.
HAILUO_DEMO_BUDGET = env_decimal("HAILUO_DEMO_BUDGET", "25.00")

# --- Security: secure by default whenever DEBUG is off (each opt-out is a variable) -----
# Behind a TLS-terminating proxy, name the header it sets: "X-Forwarded-Proto" (value https)
# or "X-Forwarded-Proto=https"; only set it when the proxy overwrites that header.
_proxy_header = env_str("DJANGO_SECURE_PROXY_SSL_HEADER")
if _proxy_header:
    _name, _, _value = _proxy_header.partition("=")
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _name.strip().upper().replace("-", "_"), _value.strip() or "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
# Probes and scrapers inside the network speak plain HTTP: no redirect for them.
SECURE_REDIRECT_EXEMPT = [r"^healthz(/|$)", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp): scripts only from our own static files (no inline
# script, no eval: htmx's hx-on is not used); inline styles are allowed (style attributes in
# the pages, Swagger UI and htmx's indicator style). Images may come from any http(s) URL (the
# preview of a first-frame image URL a member pastes; browsers upgrade or block plain-HTTP
# images on an HTTPS page anyway) and blob: (the preview of a chosen file).
from csp.constants import NONE, SELF  # noqa: E402

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, "'unsafe-inline'"],
        "img-src": [SELF, "data:", "blob:", "https:", "http:"],
        "media-src": [SELF, "blob:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
if env_bool("DJANGO_CSP_REPORT_ONLY", False):
    CONTENT_SECURITY_POLICY_REPORT_ONLY, CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY, None

# django-q2 keeps its cluster statistics (the heartbeat /healthz reads) in a cache that every
# process shares: a database table (created by `manage.py createcachetable`, a release step).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "django_q": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "hailuo_cache"},
}
Q_CLUSTER["cache"] = "django_q"

# --- Operations: health, metrics, logs, errors -----------------------------------------
# /healthz fails when the newest worker-cluster heartbeat or the poll sweep's last run is older than these (s).
HAILUO_HEALTH_WORKER_MAX_AGE = env_int("HAILUO_HEALTH_WORKER_MAX_AGE", 60)
HAILUO_HEALTH_SWEEP_MAX_AGE = env_int("HAILUO_HEALTH_SWEEP_MAX_AGE", 180)
# /metrics: a bearer token and/or client addresses (IPs or CIDR networks) allowed without one.
HAILUO_METRICS_TOKEN = env_str("HAILUO_METRICS_TOKEN")
HAILUO_METRICS_ALLOWED_IPS = env_list("HAILUO_METRICS_ALLOWED_IPS")

LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "config.logging.JsonFormatter"},
    },
    "filters": {"quiet_client_errors": {"()": "config.logfilters.QuietClientErrors"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["quiet_client_errors"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "django.db.backends": {"level": "WARNING"},
        # Django's own default handlers (console under DEBUG, mail_admins) would print each
        # record a second time: everything goes through the root's one console handler.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
    },
}

SENTRY_DSN = env_str("SENTRY_DSN")
if SENTRY_DSN:
    from config.logging import init_sentry  # noqa: E402

    init_sentry(SENTRY_DSN, environment=env_str("SENTRY_ENVIRONMENT", "production"),
                traces_sample_rate=env_float("SENTRY_TRACES_SAMPLE_RATE", 0.0))
