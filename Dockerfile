# Hailuo Studio: one image for the release step, the web and the worker processes.
# Minimal and untested in CI (no registry is reachable from CI to pull the base image);
# what it runs, scripts/start.sh, is tested (tests/test_start_script.py).
#   docker build -t hailuo-studio .
#   docker run --env-file prod.env hailuo-studio release   # then: web | worker
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHON=python PROMETHEUS_MULTIPROC_DIR=/tmp/hailuo-prometheus
WORKDIR /app
COPY pyproject.toml requirements/constraints.txt ./requirements/
RUN python - <<'PY' > /tmp/requirements.txt
import tomllib
data = tomllib.load(open("requirements/pyproject.toml", "rb"))["project"]
deps = data["dependencies"] + data["optional-dependencies"]["s3"] + data["optional-dependencies"]["sentry"]
print("\n".join(d.split("#")[0].strip() for d in deps))
PY
RUN pip install --no-cache-dir -r /tmp/requirements.txt -c requirements/constraints.txt
COPY . .
RUN useradd --create-home --uid 10001 hailuo && mkdir -p var/media && chown -R hailuo var
USER hailuo
EXPOSE 8000
ENTRYPOINT ["scripts/start.sh"]
CMD ["web"]
