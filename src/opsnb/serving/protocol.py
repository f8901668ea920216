"""uvicorn's HTTP protocol with a deadline for request headers (slowloris).

Kept apart from the app so a worker process imports it cheaply: uvicorn names it by import
path, and a worker answers its supervisor's health pings only once its config is unpickled.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

header_timeout_s = 10.0
"""Seconds request headers may take; set by :func:`opsnb.serving.server.serve` and workers."""


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for request headers.

    The clock starts when a connection opens or a new request's first byte arrives, and stops
    when its headers are complete; a client too slow (or silent) is disconnected.
    """

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header clock of the first request."""
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        """A new request's first byte: start its header clock (unless one is running)."""
        super().on_message_begin()
        if self._header_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        """The headers are in time: stop the clock."""
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the clock with the connection."""
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(header_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()
