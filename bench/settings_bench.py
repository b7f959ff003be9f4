"""Settings for bench/submit_throughput.py's gunicorn: the test settings, rate limits out of the way,
and ``bench.urls`` (the project's URLs plus the trivial view, the baseline, and the submit's floor).
``/bench/submit-floor`` runs on the API's middleware stack, as ``POST /api/v1/generations`` does."""

from config.middleware import API_STACK_PATHS
from config.settings_test import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
HAILUO_API_RATE_LIMIT = "100000000/min"
HAILUO_API_WRITE_RATE_LIMIT = "100000000/min"
HAILUO_API_STACK_PATHS = (*API_STACK_PATHS, "/bench/submit-floor")
