#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install the dependencies declared in pyproject.toml,
# pinned by requirements/constraints.txt. Re-runs are instant when nothing changed.
# Usage: scripts/bootstrap.sh [--test]   (--test adds the [test] extras)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

python_bin=""
for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
  [ -n "$candidate" ] || continue
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python_bin=$(command -v "$candidate"); break
  fi
done
[ -n "$python_bin" ] || { echo "bootstrap: Python 3.11 or newer is required" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $python_bin"
  "$python_bin" -m venv .venv
fi

extras=""
[ "$want_test" = 1 ] && extras="test"
stamp=".venv/.installed-$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-16)-${extras:-base}"
if [ -f "$stamp" ] || { [ "$want_test" = 0 ] && ls .venv/.installed-"$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-16)"-test >/dev/null 2>&1; }; then
  exit 0
fi

echo "bootstrap: installing dependencies${extras:+ (with $extras extras)}"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
reqs=$(.venv/bin/python - "$extras" <<'PY'
import sys, tomllib
data = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = list(data["dependencies"])
for extra in filter(None, sys.argv[1].split(",")):
    deps += data["optional-dependencies"][extra]
print("\n".join(d.split("#")[0].strip() for d in deps))
PY
)
printf '%s\n' "$reqs" > .venv/requirements.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r .venv/requirements.txt -c requirements/constraints.txt
rm -f .venv/.installed-*
touch "$stamp"
echo "bootstrap: done"
