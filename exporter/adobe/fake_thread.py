"""The loopback fake of Adobe on its own event loop and thread, for callers that block (the demo,
tests that drive a real exporter process)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

from exporter.adobe.fake import FakeAdobe

T = TypeVar("T")
START_TIMEOUT = 10.0


class FakeAdobeThread:
    """Runs `fake` on 127.0.0.1 in a daemon thread; `with` starts and stops it."""

    def __init__(self, fake: FakeAdobe) -> None:
        self.fake = fake
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fake-adobe", daemon=True
        )

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the fake's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(START_TIMEOUT)

    def start(self) -> Self:
        """Start the thread and the fake's listener."""
        self._thread.start()
        self.run(self.fake.start())
        return self

    def stop(self) -> None:
        """Stop the listener, the loop and the thread."""
        if self._thread.is_alive():
            self.run(self.fake.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_TIMEOUT)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
