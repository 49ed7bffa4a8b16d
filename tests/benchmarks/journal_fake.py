"""The loopback fake of Adobe in a process of its own, its journal full of run notifications.

`python -m tests.benchmarks.journal_fake READY COUNT PAGE_SIZE NOW_MS` puts COUNT journal events
in a `FakeAdobe` answering PAGE_SIZE events a page, listens on 127.0.0.1, writes READY (JSON: the
AEP_EXPORTER_* settings pointing an exporter's IMS and journal at it) and serves until SIGTERM.
A process of its own, so the fake's CPU neither shares the benchmark driver's GIL nor counts as
the exporter's.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from exporter.adobe.fake import FakeAdobe
from tests.benchmarks.corpus import delivery_document

# The journal's documents are the request file's, under ids of their own: the webhook load and
# the journal never de-duplicate against each other.
PREFIX = "journal"


async def serve(ready: Path, count: int, page_size: int, now_ms: int) -> None:
    """Fill the journal, listen, announce the settings in `ready`, serve until SIGTERM/SIGINT."""
    fake = FakeAdobe(page_size=page_size)
    fake.add_journal_events(*(delivery_document(n, now_ms, prefix=PREFIX) for n in range(count)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await fake.start()
    try:
        settings = {**fake.exporter_settings(), "AEP_EXPORTER_JOURNAL_URL": fake.journal_url}
        partial = ready.with_name(ready.name + ".partial")
        partial.write_text(json.dumps(settings))
        partial.rename(ready)  # the reader never sees half a file
        await stop.wait()
    finally:
        await fake.close()


def main(argv: list[str]) -> int:
    """Parse the four arguments and serve."""
    ready, count, page_size, now_ms = argv
    asyncio.run(serve(Path(ready), int(count), int(page_size), int(now_ms)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
