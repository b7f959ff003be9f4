#!/usr/bin/env bash
# The one production start: scripts/start.sh release|web|worker
#
#   release  migrate (also creates the cache table), collectstatic, setup_schedules; run once per deploy,
#            before (re)starting the processes; empties the metrics directory
#   web      gunicorn with deploy/gunicorn.conf.py (PORT, GUNICORN_* variables)
#   worker   manage.py run_workers: a django-q2 cluster (workers + scheduler) that stops cleanly on SIGTERM
#
# Called as is by a systemd unit (ExecStart=/srv/hailuo/scripts/start.sh web), a Procfile
# (web: scripts/start.sh web) or a container (ENTRYPOINT ["scripts/start.sh"], CMD ["web"]).
# Settings come from the environment (README, "Configuration"); PYTHON picks the interpreter
# (default: .venv/bin/python when present, else python3). The web and worker processes
# exec their server, so signals from the supervisor reach it directly.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${PYTHON:-}" ]; then py=$PYTHON
elif [ -x .venv/bin/python ]; then py=.venv/bin/python
else py=python3; fi

# prometheus-client's multiprocess mode: every web and worker process of this machine writes
# its counters under one directory; /metrics adds them up. Opt out with PROMETHEUS_MULTIPROC_DIR="".
export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR-${TMPDIR:-/tmp}/hailuo-prometheus}
[ -n "$PROMETHEUS_MULTIPROC_DIR" ] && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
export PYTHONUNBUFFERED=1

case "${1:-}" in
  release)
    "$py" manage.py migrate --noinput
    "$py" manage.py collectstatic --noinput -v 0
    "$py" manage.py setup_schedules
    # Counters restart from zero after a deploy (Prometheus handles the reset); stale files of dead processes go.
    [ -n "$PROMETHEUS_MULTIPROC_DIR" ] && find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -delete
    echo "release: done"
    ;;
  web)
    shift
    exec "$py" -m gunicorn config.wsgi:application -c deploy/gunicorn.conf.py "$@"
    ;;
  worker)
    shift
    exec "$py" manage.py run_workers "$@"
    ;;
  *)
    echo "usage: scripts/start.sh release|web|worker [extra arguments for gunicorn or run_workers]" >&2
    exit 2
    ;;
esac
