"""Delivery bodies received and decoded within limits that no sender can stretch.

aiohttp's automatic decompression is off (`RAW_BODIES`): it inflates on the event loop, all of a
body whatever the limit, so a few small gzip bombs stalled every other request. Here a body is
received raw within the size and time limits, then inflated in a worker thread, in bounded steps,
only up to the size limit, by a bounded number of threads at once.

Bodies being received hold a slot of their own, never one of the deliveries being verified and
recorded; when every such slot is taken, the body that has waited longest for its next byte is
dropped (408), so senders that trickle bytes can never keep out a sender that sends.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import hdrs, web

from exporter.rejections import Rejected, Rejection

# Handler arguments of every aiohttp server that takes deliveries.
RAW_BODIES: Final[dict[str, Any]] = {"auto_decompress": False}
# Content codings decoded here; any other coding passes through unchanged, as aiohttp passes it.
_WBITS = {"gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}
# Codings aiohttp knows but this service has no decoder for: the body cannot be read.
_UNSUPPORTED = frozenset({"br", "zstd"})
# Output of one inflate step: a step takes well under a millisecond.
INFLATE_STEP = 256 * 1024


@dataclass(eq=False, slots=True)
class _Receiving:
    """One body being received: when its last byte arrived, and the timeout to end it early."""

    progressed_at: float
    timeout: asyncio.Timeout | None = None

    def drop(self) -> None:
        """End the receipt now: the reader sees its read timeout (408)."""
        if self.timeout is not None and not self.timeout.expired():
            self.timeout.reschedule(0)
        self.timeout = None


class BodyReader:
    """Receives a delivery body within size, time and slot limits, then decodes it off the loop."""

    def __init__(
        self,
        *,
        max_body_bytes: int,
        read_timeout: float,
        max_receiving: int,
        max_decompressing: int,
    ) -> None:
        self._limit = max_body_bytes
        self._read_timeout = read_timeout
        self._max_receiving = max_receiving
        self._decompressing = asyncio.Semaphore(max_decompressing)
        self._receiving: set[_Receiving] = set()

    @property
    def receiving(self) -> int:
        """Bodies being received or decoded now."""
        return len(self._receiving)

    async def read(self, request: web.Request) -> bytes:
        """The decoded body; Rejected with body_too_large, read_timeout, invalid_json or
        too_many_in_flight (every receiving slot is taken by a body still being decoded)."""
        coding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
        if coding in _UNSUPPORTED:
            raise Rejected(Rejection.INVALID_JSON, f"request body not decodable: {coding}")
        if request.content_length is not None and request.content_length > self._limit:
            raise self._too_large()
        receiving = self._take_slot()
        try:
            raw = await self._receive(request, receiving)
            wbits = _WBITS.get(coding)
            if wbits is None or not raw:
                return raw
            async with self._decompressing:
                return await asyncio.to_thread(self._inflate, raw, wbits)
        finally:
            self._receiving.discard(receiving)

    def _take_slot(self) -> _Receiving:
        loop = asyncio.get_running_loop()
        if len(self._receiving) >= self._max_receiving:
            waiting = [r for r in self._receiving if r.timeout is not None]
            if not waiting:
                raise Rejected(Rejection.TOO_MANY_IN_FLIGHT, "every body slot is decoding")
            stalest = min(waiting, key=lambda r: r.progressed_at)
            stalest.drop()
            self._receiving.discard(stalest)
        receiving = _Receiving(progressed_at=loop.time())
        self._receiving.add(receiving)
        return receiving

    async def _receive(self, request: web.Request, receiving: _Receiving) -> bytes:
        """The raw body, refused once past the limit (chunked bodies too) or the read timeout."""
        content = request.content
        if content.is_eof():
            # The whole body came with the request head (as a webhook delivery does): there is
            # nothing to wait for, so no timeout to arm and no chunks to gather.
            raw = content.read_nowait()
            if len(raw) > self._limit:
                raise self._too_large()
            return raw
        loop = asyncio.get_running_loop()
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self._read_timeout) as timeout:
                receiving.timeout = timeout
                async for chunk in content.iter_any():
                    receiving.progressed_at = loop.time()
                    size += len(chunk)
                    if size > self._limit:
                        raise self._too_large()
                    chunks.append(chunk)
                # Received: decoding is short and bounded, so this body is not dropped for another.
                receiving.timeout = None
        except TimeoutError:
            raise Rejected(Rejection.READ_TIMEOUT, "request body not received in time") from None
        return b"".join(chunks)

    def _inflate(self, raw: bytes, wbits: int) -> bytes:
        """Inflate (in a worker thread) at most the size limit, one bounded step at a time.

        zlib releases the GIL while it inflates, so the event loop keeps running; concatenated
        gzip members are decoded as aiohttp decodes them.
        """
        out = bytearray()
        pending = raw
        if wbits == zlib.MAX_WBITS and raw[0] & 0x0F != 8:
            wbits = -zlib.MAX_WBITS  # raw deflate without the zlib header, as aiohttp accepts
        while pending:
            pending = self._inflate_member(pending, wbits, out)
            if wbits <= zlib.MAX_WBITS:
                break  # deflate has one stream; only gzip concatenates members
        return bytes(out)

    def _inflate_member(self, data: bytes, wbits: int, out: bytearray) -> bytes:
        """Inflate one compressed stream onto `out`; the bytes after it."""
        inflater = zlib.decompressobj(wbits)
        pending = data
        try:
            while not inflater.eof:
                step = min(INFLATE_STEP, self._limit + 1 - len(out))
                piece = inflater.decompress(pending, step)
                out += piece
                if len(out) > self._limit:
                    raise self._too_large()
                pending = inflater.unconsumed_tail
                if not (pending or piece):
                    break  # all input consumed and nothing more comes out
        except zlib.error as exc:
            # A Content-Encoding that does not decode: the sender's error, never a 500.
            raise Rejected(Rejection.INVALID_JSON, f"request body not decodable: {exc}") from None
        if not inflater.eof:
            raise Rejected(Rejection.INVALID_JSON, "request body not decodable: it ends early")
        return inflater.unused_data

    def _too_large(self) -> Rejected:
        return Rejected(Rejection.BODY_TOO_LARGE, f"body larger than {self._limit} bytes")
