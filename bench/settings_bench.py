"""Settings for bench/submit_throughput.py's gunicorn: the test settings, rate limits out of the way,
and ``bench.urls`` (the project's URLs plus one trivial view, the baseline)."""

from config.settings_test import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
HAILUO_API_RATE_LIMIT = "100000000/min"
HAILUO_API_WRITE_RATE_LIMIT = "100000000/min"
