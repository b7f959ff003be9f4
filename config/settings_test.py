"""Settings for the test suite: config.settings with test-only defaults.

The test command (``make test``) provides ``DATABASE_URL`` for a throwaway PostgreSQL;
without it the suite falls back to SQLite (the end-to-end tests then skip themselves).
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key")
os.environ.setdefault("HAILUO_ENCRYPTION_KEYS", "fWilQaaKc5te8miPpq5M2Dw5WGSF9x2kO7HkcQNbDbY=")
# The test client and the live server speak plain HTTP: the documented opt-outs of the
# secure defaults (tests/test_deploy.py checks the defaults themselves).
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("DJANGO_SECURE_COOKIES", "0")

from config.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
# The sandboxes and test servers listen on free loopback ports: any port of the loopback names.
HAILUO_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1:*", "localhost:*"]
HAILUO_POLL_TIME_SCALE = 0.02
HAILUO_POLL_SWEEP_INTERVAL = 0.2
HAILUO_PROVIDER_READ_TIMEOUT = 5.0
STATIC_ROOT = None  # whitenoise: serve from finders only, no collectstatic in tests
WHITENOISE_USE_FINDERS = True
