"""Logging for the CLI: JSON lines (default) or logfmt on stderr, values as fields, never text.

Every call passes its values as `extra=` fields: JSON renders them as keys, logfmt as key=value,
so Loki or Elasticsearch filter on them. Client disconnects become one DEBUG line; refusals a
sender can repeat at will go through a RateLimitedLog.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Characters that make a logfmt value need quotes.
_QUOTE = frozenset(' ="\\')


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's extra fields (what the call passed as `extra=`)."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as one JSON line."""
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _logfmt_value(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float) or value is None:
        return json.dumps(value)
    else:
        text = json.dumps(value, default=str, ensure_ascii=False)
    if text and not _QUOTE.intersection(text) and text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    """key=value lines for humans at a terminal; lists and objects as quoted JSON."""

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as one logfmt line."""
        message = json.dumps(record.getMessage(), ensure_ascii=False)
        line = f"time={_timestamp(record)} level={record.levelname.lower()} "
        line += f"logger={record.name} msg={message}"
        for key, value in fields(record).items():
            line += f" {key}={_logfmt_value(value)}"
        if record.exc_info:
            line += " exception=" + json.dumps(self.formatException(record.exc_info))
        return line


class ClientDisconnects(logging.Filter):
    """aiohttp's ERROR with a traceback for a client that went away becomes one DEBUG line.

    A scraper that closes /metrics early, or a sender that drops mid-body, is not an error of the
    exporter: nothing on our side can fix it, and a traceback per occurrence buries real errors.
    """

    def __init__(self) -> None:
        super().__init__()
        self._log = logging.getLogger("exporter.http")

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass every record but a disconnect, which is logged again at DEBUG."""
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, ConnectionError):
            return True
        self._log.debug(
            "client disconnected", extra={"during": record.getMessage(), "error": str(error)}
        )
        return False


@dataclass(slots=True)
class _Window:
    started: float
    fields: dict[str, Any]
    written: int = 0
    suppressed: int = 0


class RateLimitedLog:
    """At most `per_window` lines per key in each window; then one summary of the rest.

    For refusals a sender controls: a flood of forged deliveries must not fill the disk. The
    summary (`suppressed`, `window_seconds` and the key's fields) is written when the window
    ends, on the running event loop, or else with the key's next line.
    """

    def __init__(
        self,
        logger: logging.Logger,
        summary: str,
        *,
        per_window: int = 10,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log, self._summary = logger, summary
        self._per_window, self._window, self._clock = per_window, window, clock
        self._windows: dict[str, _Window] = {}

    def log(
        self, level: int, key: str, key_fields: Mapping[str, Any], msg: str, **extra: Any
    ) -> None:
        """Write `msg` with the key's fields and `extra`, unless the key is over its limit."""
        now = self._clock()
        window = self._windows.get(key)
        if window is not None and now - window.started >= self._window:
            self._flush(key, window)
            window = None
        if window is None:
            window = self._windows[key] = _Window(now, dict(key_fields))
        if window.written < self._per_window:
            window.written += 1
            self._log.log(level, msg, extra={**key_fields, **extra})
            return
        window.suppressed += 1
        if window.suppressed == 1:
            self._flush_later(key, window)

    def _flush(self, key: str, window: _Window) -> None:
        """End the window, if it is still the key's: the summary, if a line was suppressed."""
        if self._windows.get(key) is not window:
            return
        del self._windows[key]
        if window.suppressed:
            counts = {"suppressed": window.suppressed, "window_seconds": self._window}
            self._log.warning(self._summary, extra={**window.fields, **counts})

    def _flush_later(self, key: str, window: _Window) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        delay = max(0.0, window.started + self._window - self._clock())
        loop.call_later(delay, self._flush, key, window)


class AccessLog(AbstractAccessLogger):
    """One line per answered request, as fields (AEP_EXPORTER_ACCESS_LOG; off by default)."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        """Write the request's line."""
        self.logger.info(
            "request",
            extra={
                "peer": request.remote,
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "bytes": response.body_length,
                "duration_seconds": round(time, 6),
                "user_agent": request.headers.get("User-Agent", ""),
            },
        )


def configure_logging(level: str, fmt: str) -> None:
    """Send every logger's records to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(each, ClientDisconnects) for each in server.filters):
        server.addFilter(ClientDisconnects())
