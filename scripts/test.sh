#!/usr/bin/env bash
# `make test`: create the environment, start a throwaway PostgreSQL, run the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k apixo).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --test
scripts/ensure-chromium.sh; export HAILUO_REQUIRE_BROWSER=1  # Debian's Chromium for tests/browser (installed if missing)
export HAILUO_REQUIRE_POSTGRES=1
# tests/test_s3.py starts moto's S3 server (a [test] extra) on a free loopback port for the session
# and stops it at the end; with this set, a missing server fails instead of skipping.
export HAILUO_REQUIRE_S3=1
exec scripts/with-postgres.sh .venv/bin/python -m pytest "$@"
