"""The ingest floor: a bare aiohttp handler that reads the body and answers 200.

Run as `python -m tests.benchmarks.floor PORT`; it listens on 127.0.0.1 until SIGTERM.
"""

from __future__ import annotations

import sys

from aiohttp import web


async def receive(request: web.Request) -> web.Response:
    """Read the whole body, answer 200."""
    await request.read()
    return web.Response(text='{"status": "ok"}', content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    """Ready as soon as it listens."""
    return web.Response(text="ok\n")


def main(port: int) -> None:
    """Serve until SIGTERM."""
    app = web.Application()
    app.router.add_post("/webhook", receive)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
