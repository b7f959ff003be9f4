"""JSON log lines (LOG_FORMAT=json) and ``log_step``: one line per lifecycle step with its fields, for a
generation run through the APIXO sandbox."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import uuid
from decimal import Decimal

import pytest

from config.logging import JsonFormatter, log_step
from generations import services, tasks
from generations.models import State

from .conftest import ROOT, make_params, record_queue


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


# --- the lifecycle, step by step, through the APIXO sandbox ------------------------------------------------
@pytest.mark.django_db
def test_a_generation_through_the_sandbox_logs_one_line_per_step(caplog, member, apixo_account, sandbox, media_root,
                                                                  monkeypatch, settings):
    """create → submit → submitted (task id) → polls (DEBUG) → succeeded → archived, each one
    ``hailuo.lifecycle`` line with the generation id, provider, task id and state; the same
    records in the plain format and as JSON lines."""
    queue = record_queue(monkeypatch)
    settings.HAILUO_POLL_TIME_SCALE = 0
    with caplog.at_level(logging.DEBUG, logger="hailuo.lifecycle"):
        generation = services.generation_create(user=member, params=make_params(apixo_account))
        services.generation_submit(generation_id=generation.pk)  # (a test transaction never commits: no on_commit)
        deadline = time.monotonic() + 15
        while generation.archive_state != "done" and time.monotonic() < deadline:
            tasks.sweep_once()
            queue.run()  # the archive, once succeeded
            generation.refresh_from_db()
            time.sleep(0.05)
    assert (generation.state, generation.archive_state) == (State.SUCCEEDED, "done")
    pk, task_id = str(generation.pk), generation.provider_task_id
    records = [r for r in caplog.records if r.name == "hailuo.lifecycle"]
    assert records and all(r.generation_id == pk and r.provider == "apixo" for r in records)

    steps = [(r.step, r.state) for r in records if r.levelno >= logging.INFO]
    assert steps[:3] == [("created", "queued"), ("submit", "submitting"), ("state", "submitted")]
    assert steps[-2:] == [("state", "succeeded"), ("archived", "succeeded")]
    assert set(steps[3:-2]) <= {("state", "running")}
    after_submit = records[[r.step for r in records].index("state"):]
    assert all(r.task_id == task_id for r in after_submit)
    polls = [r for r in records if r.step == "polled"]
    assert polls and all(r.levelno == logging.DEBUG for r in polls)
    assert polls[-1].provider_state == "success"
    archived = records[-1]
    assert archived.bytes == generation.video_bytes and archived.attempt == 1

    plain = logging.Formatter(settings.LOGGING["formatters"]["plain"]["format"])
    lines = [plain.format(r) for r in records if r.levelno >= logging.INFO]
    assert lines[2].endswith(f"INFO hailuo.lifecycle: step=state generation_id={pk} provider=apixo task_id={task_id} state=submitted")
    assert lines[-1].endswith(
        f"INFO hailuo.lifecycle: step=archived generation_id={pk} provider=apixo task_id={task_id} state=succeeded "
        f"attempt=1 bytes={generation.video_bytes}"
    )

    as_json = [json.loads(JsonFormatter().format(r)) for r in records]
    assert all("\n" not in JsonFormatter().format(r) for r in records)
    succeeded = next(line for line in as_json if line["step"] == "state" and line["state"] == "succeeded")
    assert {"logger": "hailuo.lifecycle", "level": "INFO", "generation_id": pk, "provider": "apixo",
            "task_id": task_id}.items() <= succeeded.items()
    assert Decimal(as_json[0]["amount"]) == Decimal("0.336") and as_json[0]["model"] == "hailuo-2-3"
