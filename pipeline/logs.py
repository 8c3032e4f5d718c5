"""Logging set-up for every Heron process, and the ids that follow a message through them.

Why: one message crosses several processes (the API that accepted it, the queue worker that
decided it, the sink that delivered it). Without a shared id in their log lines, "why was this
message blocked late?" means matching timestamps across machines. Three context variables,
`request_id`, `message_id` and `tenant_id`, are copied into every log record made while they are
set, whichever logger made it; `log_context(**ids)` sets them for a block of work, and
`current_ids()` reads them to hand over to the next process (a Celery task header, say), which
opens its own `log_context(**ids)` with them.

Format: `HERON_LOG_FORMAT` = `json` (one JSON object per line, for log shippers), `text` (for a
person at a terminal) or `auto` (the default: text when stderr is a terminal, JSON otherwise).
JSON lines carry `time`, `level`, `logger`, `message`, the ids that are set, any `extra={...}`
fields and `exc_info` for tracebacks.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["auto", "json", "text"]

request_id: ContextVar[str | None] = ContextVar("heron_request_id", default=None)
message_id: ContextVar[str | None] = ContextVar("heron_message_id", default=None)
tenant_id: ContextVar[str | None] = ContextVar("heron_tenant_id", default=None)

_VARS: dict[str, ContextVar[str | None]] = {"request_id": request_id, "message_id": message_id,
                                             "tenant_id": tenant_id}
ID_FIELDS: tuple[str, ...] = tuple(_VARS)


def current_ids() -> dict[str, str]:
    """The ids set in this context (only those that are set), to pass on to another process."""
    return {name: value for name, var in _VARS.items() if (value := var.get()) is not None}


@contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Set some of `request_id`, `message_id`, `tenant_id` for the block; restored afterwards.

    An id given as None is left as it was, so `log_context(**headers.get("ids", {}))` and
    `log_context(message_id=m.id, tenant_id=t)` nest without wiping each other. Unknown names
    are refused: a typo would otherwise log nothing, silently.
    """
    unknown = set(ids) - set(_VARS)
    if unknown:
        raise TypeError(f"log_context() got unknown ids {sorted(unknown)}; expected some of {list(_VARS)}")
    tokens = [(_VARS[name], _VARS[name].set(str(value))) for name, value in ids.items() if value is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Copies the ids set in the current context onto each record (as `record.request_id`, ...).

    Installed on the handlers `configure_logging` makes, so records of every logger (uvicorn,
    Celery, SQLAlchemy, ours) get them, not only those of loggers that know about Heron.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current_ids().items():
            if not hasattr(record, name):  # an explicit extra={"message_id": ...} wins
                setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """`time level logger: message [request_id=... message_id=...]` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{name}={getattr(record, name)}" for name in ID_FIELDS if getattr(record, name, None))
        if not ids:
            return line
        head, sep, rest = line.partition("\n")  # keep a traceback below the line it belongs to
        return f"{head} [{ids}]{sep}{rest}"


def json_formatter() -> logging.Formatter:
    """One JSON object per line: time, level, logger, message, the ids that are set, extras."""
    return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                         rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                         reserved_attrs=[*RESERVED_ATTRS, "color_message"],  # uvicorn's ANSI copy of `message`
                         json_ensure_ascii=False)


def resolve_format(fmt: str, stream: Any = None) -> Literal["json", "text"]:
    """`auto` -> text on a terminal, json otherwise; refuses anything but auto/json/text."""
    if fmt not in ("auto", "json", "text"):
        raise ValueError(f"log format must be auto, json or text, got {fmt!r}")
    if fmt == "auto":
        stream = stream if stream is not None else sys.stderr
        return "text" if getattr(stream, "isatty", lambda: False)() else "json"
    return fmt  # type: ignore[return-value]


def logging_config(json: bool, level: str | int = "INFO") -> dict[str, Any]:
    """The `logging.config.dictConfig` for a Heron process: one stderr handler on the root logger.

    A dict rather than only a function so `heron serve` can hand the same set-up to uvicorn
    (`log_config=`), which applies it again in each worker process it starts. uvicorn's loggers
    are sent to the root handler so every line has one format.
    """
    level_name = logging.getLevelName(level) if isinstance(level, int) else level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"ids": {"()": ContextFilter}},
        "formatters": {"heron": {"()": json_formatter if json else TextFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "heron", "filters": ["ids"]}},
        "root": {"level": level_name, "handlers": ["stderr"]},
        "loggers": {
            **{name: {"handlers": [], "propagate": True}
               for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery")},
            # One INFO line per webhook request would drown a worker's log; the drainer logs failures.
            "httpx": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }


def configure_logging(json: bool, level: str | int = "INFO") -> dict[str, Any]:
    """Apply `logging_config(json, level)` to this process and return it."""
    config = logging_config(json, level)
    logging.config.dictConfig(config)
    return config
