#!/usr/bin/env bash
# `make run`: set everything up and run the demo on SQLite with the provider sandboxes.
# Starts the web server, a django-q2 cluster (workers + scheduler) and the APIXO sandbox
# under honcho; Ctrl-C stops them all. Data persists in var/ between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

mkdir -p var
if [ ! -f var/dev.env ] && [ -f var/db.sqlite3 ]; then
  echo "run: var/db.sqlite3 exists without var/dev.env: new keys are made; seed_demo re-keys the sandbox accounts" >&2
fi
if [ ! -f var/dev.env ]; then
  # Secrets made once per checkout and kept, so sessions and stored API keys survive restarts.
  .venv/bin/python - > var/dev.env <<'PY'
import secrets
from cryptography.fernet import Fernet
print(f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}")
print(f"HAILUO_ENCRYPTION_KEYS={Fernet.generate_key().decode()}")
PY
fi
set -a
# shellcheck disable=SC1091
. var/dev.env
WEB_PORT=${WEB_PORT:-8000}
SANDBOX_BASE_PORT=${SANDBOX_BASE_PORT:-8801}
SANDBOX_GENERATION_SECONDS=${SANDBOX_GENERATION_SECONDS:-8}
DJANGO_DEBUG=${DJANGO_DEBUG:-1}
HAILUO_PUBLIC_BASE_URL=${HAILUO_PUBLIC_BASE_URL:-http://127.0.0.1:$WEB_PORT}
# Only the five sandbox ports may be fetched on loopback (result videos, sandbox images).
SANDBOX_HOSTS=""
for offset in 0 1 2 3 4; do
  SANDBOX_HOSTS="$SANDBOX_HOSTS${SANDBOX_HOSTS:+,}127.0.0.1:$((SANDBOX_BASE_PORT + offset)),localhost:$((SANDBOX_BASE_PORT + offset))"
done
HAILUO_ALLOWED_PRIVATE_HOSTS=${HAILUO_ALLOWED_PRIVATE_HOSTS:-$SANDBOX_HOSTS}
HAILUO_POLL_TIME_SCALE=${HAILUO_POLL_TIME_SCALE:-0.1}
HAILUO_POLL_SWEEP_INTERVAL=${HAILUO_POLL_SWEEP_INTERVAL:-1}
PYTHONUNBUFFERED=1
# A [hang] submit must outlast the web app's provider read timeout (config/settings.py,
# HAILUO_PROVIDER_READ_TIMEOUT) so the card shows needs reconciliation; the sandbox lets go
# as soon as the app hangs up, so this is only the bound that frees its thread.
SANDBOX_HANG_SECONDS=${SANDBOX_HANG_SECONDS:-$(DJANGO_SETTINGS_MODULE=config.settings .venv/bin/python -c '
from django.conf import settings
from providers.sandbox import hang_seconds_outlasting
print(hang_seconds_outlasting(settings.HAILUO_PROVIDER_READ_TIMEOUT))')}
set +a

.venv/bin/python manage.py migrate --noinput -v 0
.venv/bin/python manage.py seed_demo --sandbox-base-port "$SANDBOX_BASE_PORT"
.venv/bin/python manage.py setup_schedules

cat <<MSG

  Hailuo Studio is starting:  http://127.0.0.1:$WEB_PORT/
  Log in as the member above (or the admin: /admin/).
  Sandboxes: APIXO :$SANDBOX_BASE_PORT, PoYo :$((SANDBOX_BASE_PORT + 1)), qingbo :$((SANDBOX_BASE_PORT + 2)), PiAPI :$((SANDBOX_BASE_PORT + 3)), MiniMax :$((SANDBOX_BASE_PORT + 4))
  Sandbox prompt markers: [fail] or [fail:CODE] fails the task, [seconds:N] sets its generation time,
  [hang] holds the submit's answer past the read timeout (needs reconciliation).
  Ctrl-C stops everything.

MSG
exec .venv/bin/honcho -f Procfile.dev start
