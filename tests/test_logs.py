"""Log lines as data: fields in both formats, rate-limited refusals, quiet disconnects."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from exporter.logs import ClientDisconnects, JsonFormatter, LogfmtFormatter, RateLimitedLog


def record(msg: str, **extra: object) -> logging.LogRecord:
    """A WARNING record as `log.warning(msg, extra=extra)` makes it."""
    made = logging.getLogger("exporter.test").makeRecord(
        "exporter.test", logging.WARNING, __file__, 1, msg, (), None, extra=extra
    )
    made.created, made.msecs = 0.0, 0.0
    return made


def test_json_renders_fields_as_keys() -> None:
    """Each extra field is a key of its own, with its JSON type."""
    line = JsonFormatter().format(record("flow run failed", flow_id="f1", codes=["a", "b"]))
    assert json.loads(line) == {
        "time": "1970-01-01T00:00:00.000Z",
        "level": "warning",
        "logger": "exporter.test",
        "msg": "flow run failed",
        "flow_id": "f1",
        "codes": ["a", "b"],
    }


def test_logfmt_renders_fields_as_key_value_quoting_only_what_needs_it() -> None:
    """Plain values stay bare; spaces, quotes, empty strings and lists are quoted."""
    line = LogfmtFormatter().format(
        record("state loaded", flows=3, path="/a b", ok=True, empty="", names=["x"], none=None)
    )
    assert line == (
        "time=1970-01-01T00:00:00.000Z level=warning logger=exporter.test "
        'msg="state loaded" flows=3 path="/a b" ok=true empty="" names="[\\"x\\"]" none=null'
    )


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_writes_the_first_lines_then_one_summary_per_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past the limit a key's lines are counted, and the count is written once its window ends;
    another key has a limit of its own."""
    caplog.set_level(logging.INFO, logger="exporter.test")
    clock = Clock()
    limited = RateLimitedLog(
        logging.getLogger("exporter.test"), "refusals suppressed", per_window=2, clock=clock
    )
    for _ in range(5):
        limited.log(logging.WARNING, "bad", {"reason": "bad"}, "delivery refused", peer="p")
    limited.log(logging.WARNING, "other", {"reason": "other"}, "delivery refused", peer="p")
    clock.now = 60.0
    limited.log(logging.WARNING, "bad", {"reason": "bad"}, "delivery refused", peer="p")
    lines = [
        (r.getMessage(), r.__dict__.get("reason"), r.__dict__.get("suppressed"))
        for r in caplog.records
    ]
    assert lines == [
        ("delivery refused", "bad", None),
        ("delivery refused", "bad", None),
        ("delivery refused", "other", None),
        ("refusals suppressed", "bad", 3),
        ("delivery refused", "bad", None),
    ]


async def test_rate_limit_summary_is_written_when_the_window_ends_on_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With an event loop, the summary needs no further line: it comes at the window's end."""
    caplog.set_level(logging.INFO, logger="exporter.test")
    limited = RateLimitedLog(
        logging.getLogger("exporter.test"), "refusals suppressed", per_window=1, window=0.05
    )
    for _ in range(4):
        limited.log(logging.WARNING, "bad", {"reason": "bad"}, "delivery refused")
    await asyncio.sleep(0.3)
    summaries = [r for r in caplog.records if r.getMessage() == "refusals suppressed"]
    assert [(r.__dict__["suppressed"], r.__dict__["window_seconds"]) for r in summaries] == [
        (3, 0.05)
    ]


def test_disconnect_errors_become_one_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    """A ConnectionError record is dropped and logged again at DEBUG without its traceback;
    any other error passes unchanged."""
    caplog.set_level(logging.DEBUG)
    gone = logging.getLogger("exporter.test").makeRecord(
        "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request from %s",
        ("127.0.0.1",), (ConnectionResetError, ConnectionResetError("gone"), None),
    )  # fmt: skip
    other = record("boom")
    other.exc_info = (ValueError, ValueError("bug"), None)
    only = ClientDisconnects()
    assert only.filter(gone) is False
    assert only.filter(other) is True
    (line,) = caplog.records
    assert (line.levelname, line.getMessage(), line.exc_info) == (
        "DEBUG",
        "client disconnected",
        None,
    )
    assert line.__dict__["during"] == "Error handling request from 127.0.0.1"
    assert line.__dict__["error"] == "gone"
