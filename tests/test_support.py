"""The shared test helpers: required tools, bounded waits, the clean child environment."""

from __future__ import annotations

import pytest

from tests.support import clean_environ, require_tool, wait_for

MISSING = "aep-no-such-program"


def test_require_tool_returns_the_first_installed_program() -> None:
    """The first of the names that is installed is returned as a path."""
    assert require_tool(MISSING, "sh").endswith("/sh")


@pytest.mark.parametrize("ci", ["", "false"])
def test_require_tool_skips_outside_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    """Without CI=true a missing program skips the test, naming it."""
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match=MISSING):
        require_tool(MISSING)


def test_require_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """With CI=true a missing program is a failure, not a skip."""
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=MISSING):
        require_tool(MISSING)


def test_wait_for_is_bounded_and_names_what_it_waited_for() -> None:
    """wait_for returns once the condition holds and raises, naming it, after the timeout."""
    calls: list[int] = []

    def condition() -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("not listening yet")
        return len(calls) == 3

    assert wait_for(condition, "the third call", timeout=5, interval=0.01) >= 0
    assert len(calls) == 3
    with pytest.raises(AssertionError, match="waiting for never"):
        wait_for(lambda: False, "never", timeout=0.05, interval=0.01)


def test_clean_environ_drops_every_exporter_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Children get no AEP_EXPORTER_* from this process, only the settings given."""
    monkeypatch.setenv("AEP_EXPORTER_MAX_FLOWS", "1")
    env = clean_environ({"AEP_EXPORTER_LOG_LEVEL": "DEBUG"})
    assert [name for name in env if name.startswith("AEP_EXPORTER_")] == ["AEP_EXPORTER_LOG_LEVEL"]
    assert env["PATH"]
