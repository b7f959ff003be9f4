"""JSON log lines (LOG_FORMAT=json) and ``log_step``: one line per lifecycle step with its fields."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid

from config.logging import JsonFormatter, log_step

from .conftest import ROOT


class _Generation:
    def __init__(self):
        self.pk = uuid.uuid4()
        self.provider_kind = "apixo"
        self.provider_task_id = "task-123"
        self.state = "submitted"


def test_log_step_carries_the_generation_fields_in_json_and_plain(caplog):
    generation = _Generation()
    with caplog.at_level(logging.INFO, logger="hailuo.lifecycle"):
        log_step(generation, "submitted", attempt=2)
    (record,) = caplog.records
    line = json.loads(JsonFormatter().format(record))
    assert line["logger"] == "hailuo.lifecycle" and line["level"] == "INFO"
    assert line["generation_id"] == str(generation.pk)
    assert (line["provider"], line["task_id"], line["state"], line["step"], line["attempt"]) == (
        "apixo", "task-123", "submitted", "submitted", 2)
    assert line["ts"].endswith("+00:00")
    assert record.getMessage() == (
        f"step=submitted generation_id={generation.pk} provider=apixo task_id=task-123 state=submitted attempt=2"
    )


def test_exceptions_are_one_json_line_with_the_traceback():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    text = JsonFormatter().format(record)
    assert "\n" not in text
    data = json.loads(text)
    assert data["message"] == "failed here" and "RuntimeError: boom" in data["exc"]


def test_log_format_json_makes_the_process_log_json_lines():
    code = "import logging, django; django.setup(); logging.getLogger('probe').warning('hello %s', 'there')"
    env = {"DJANGO_SETTINGS_MODULE": "config.settings_test", "LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert {"logger": "probe", "message": "hello there", "level": "WARNING"}.items() <= lines[-1].items()
