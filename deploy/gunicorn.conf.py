"""gunicorn settings for the web process (``scripts/start.sh web`` passes ``-c deploy/gunicorn.conf.py``).

Every value can be overridden by an environment variable, listed in the README:
``PORT`` / ``GUNICORN_BIND``, ``GUNICORN_WORKERS`` (default 2 × CPUs + 1, at most 12),
``GUNICORN_THREADS``, ``GUNICORN_TIMEOUT``, ``GUNICORN_ACCESS_LOG`` ("-": stdout, "": off).
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("GUNICORN_WORKERS") or min(12, multiprocessing.cpu_count() * 2 + 1))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))  # video streaming holds a thread per viewer
worker_class = "gthread"
# A request is cut after this many seconds: the longest are CSV/XLSX exports and uploads.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5
max_requests = 2000  # recycle workers now and then (a leak cannot grow for ever)
max_requests_jitter = 200
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
preload_app = False


def child_exit(server, worker):
    """prometheus-client multiprocess mode: drop a dead worker's live gauges (counters stay summed)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
