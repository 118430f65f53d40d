"""The JSON log line: its fields, the extras merged in, and the cached second."""

from __future__ import annotations

import logging
import time

import orjson

from webhook.logs import JsonFormatter


def record(created: float, **extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord(
        {"name": "stateful_guard.server", "msg": "policy decision", "levelname": "INFO"}
    )
    made.created = created
    made.__dict__.update(extra)
    return made


def test_a_line_is_one_json_object_with_the_extras() -> None:
    line = JsonFormatter().format(record(1_800_000_000.5, policy="force-delete", uid="u-1"))
    assert "\n" not in line
    entry = orjson.loads(line)
    assert entry == {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(1_800_000_000)),
        "level": "info",
        "logger": "stateful_guard.server",
        "msg": "policy decision",
        "policy": "force-delete",
        "uid": "u-1",
    }


def test_the_time_follows_each_records_second() -> None:
    """The formatted second is reused only within the same second, in either direction."""
    formatter = JsonFormatter()
    seconds = [100.1, 100.9, 101.0, 99.5, 101.2]
    times = [orjson.loads(formatter.format(record(s)))["time"] for s in seconds]
    assert times == [time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(int(s))) for s in seconds]
    assert times[0] == times[1] != times[2]


def test_an_exception_is_one_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = record(5.0)
        failed.exc_info = sys.exc_info()
    entry = orjson.loads(JsonFormatter().format(failed))
    assert "ValueError: boom" in entry["exception"]
