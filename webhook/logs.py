"""JSON log lines on stderr: one object per line, with any `extra` fields merged in.

The server logs every policy decision at INFO (the shipped default), so a line is on the
request path: the formatter caches the formatted second, and `setup` turns off what the
logging HOWTO's "Optimization" section lists as unused (caller lookup, thread and process
names), which none of our fields show.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    _second: tuple[int, str] = (-1, "")  # the last second formatted (one tuple: thread-safe)

    def format(self, record: logging.LogRecord) -> str:
        second, text = self._second
        if int(record.created) != second:  # records come many to a second: format it once
            second = int(record.created)
            text = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(second))
            self._second = (second, text)
        entry: dict[str, Any] = {
            "time": text,
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging._srcfile = None  # no stack walk per record for a file and line we never print
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
