"""The JSON log line: its fields, the extras merged in, and the cached second."""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Iterator

import orjson
import pytest

from webhook import logs
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
        failed = record(5.0)
        failed.exc_info = sys.exc_info()
    entry = orjson.loads(JsonFormatter().format(failed))
    assert "ValueError: boom" in entry["exception"]


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.BytesIO]:
    """`setup` as the server runs it, on a stderr whose bytes the test reads; the logging
    module's state is put back afterwards."""
    written = io.BytesIO()
    stderr = io.TextIOWrapper(written, encoding="utf-8", line_buffering=True)
    monkeypatch.setattr(sys, "stderr", stderr)
    root = logging.getLogger()
    access = logging.getLogger("aiohttp.access")
    flags = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")
    saved_flags = {flag: getattr(logging, flag) for flag in flags}
    saved = (root.handlers[:], root.level, access.level, logs._installed)
    logs.setup("info")
    yield written
    root.handlers[:], level, access_level, logs._installed = saved
    root.setLevel(level)
    access.setLevel(access_level)
    for flag, value in saved_flags.items():
        setattr(logging, flag, value)


def lines(written: io.BytesIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in written.getvalue().splitlines()]


def test_a_direct_line_is_the_line_the_logger_writes(installed: io.BytesIO) -> None:
    """`logs.info` writes what `logger.info(msg, extra=...)` writes, in order with it."""
    logger = logging.getLogger("stateful_guard.server")
    fields = {"policy": "force-delete", "messages": ["[force-delete] pod db/mysql-1 ..."]}
    logger.info("policy decision", extra=fields)
    logs.info(logger, "policy decision", fields)
    logger.warning("after", extra={"n": 1})
    through_logging, direct, after = lines(installed)
    assert direct == through_logging
    assert after["msg"] == "after"


def test_a_direct_line_honours_the_level(installed: io.BytesIO) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    logs.info(logging.getLogger("stateful_guard.server"), "policy decision", {"policy": "x"})
    assert installed.getvalue() == b""


def test_other_handlers_get_the_record(installed: io.BytesIO) -> None:
    """With another handler set up (a test's capture), the line goes through logging, so
    that handler sees it too."""
    seen: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = seen.append  # type: ignore[method-assign]
    logging.getLogger().addHandler(capture)
    logs.info(logging.getLogger("stateful_guard.server"), "policy decision", {"policy": "x"})
    assert [record.policy for record in seen] == ["x"]  # type: ignore[attr-defined]
    assert lines(installed)[0]["policy"] == "x"
