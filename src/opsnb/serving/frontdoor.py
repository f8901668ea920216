"""The front door: what every request meets before a route runs.

For a ``POST``, the headers are checked first (a refusal costs no body read): the media type
must be ``application/json`` (415), the body must not be compressed (415: ``Content-Encoding``
other than ``identity``), a declared ``Content-Length`` must be a byte count within ``max_body``
(400, 413). Then the body is read whole, within ``body_timeout_s`` (408 and the connection
closed past it) and at most ``max_body`` bytes (413). A client that goes away meanwhile is not
an error of ours: it is counted (``opsnb_client_disconnects_total``), gets no answer and leaves
no traceback.

Only a complete body meets admission: a ``/predict`` request counts as in flight from then on,
so slow senders hold a connection (bounded by ``--max-connections``) but never a place in the
latency budget. An overloaded server refuses with a prebuilt 503 and ``Retry-After`` (see
:mod:`opsnb.serving.batching` for the rule). The route then reads the body from memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opsnb.errors import RequestError
from opsnb.serving.batching import MicroBatcher

_GZIP_MAGIC = b"\x1f\x8b"


def media_type(scope: Scope) -> str:
    """The request's media type (``content-type`` without parameters), lower case."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return str(value.decode("latin-1").split(";")[0].strip().lower())
    return ""


def header(scope: Scope, wanted: bytes) -> str | None:
    """The first value of header ``wanted`` (lower-case name), or None."""
    for name, value in scope["headers"]:
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


def check_headers(scope: Scope, max_body: int) -> None:
    """Refuse a POST from its headers alone: media type, compression, declared length.

    Raises:
        RequestError: 415 for a media type other than JSON or a compressed body, 400/413 for
            a declared length that is not a byte count or is over ``max_body``.
    """
    media = media_type(scope)
    if media != "application/json":
        raise RequestError(
            f"content-type {media[:60] or '(none)'!r} is not accepted; send application/json",
            status=415,
        )
    encoding = (header(scope, b"content-encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise RequestError(
            f"content-encoding {encoding[:30]!r} is not accepted; send the JSON uncompressed "
            "(no Content-Encoding header)",
            status=415,
        )
    declared = header(scope, b"content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_body):
        if declared.isdigit():
            raise RequestError(
                f"content-length {declared[:30]!r} exceeds the limit of {max_body} bytes",
                status=413,
            )
        raise RequestError(f"content-length {declared[:30]!r} is not a byte count", status=400)


async def read_body(receive: Receive, *, limit: int, timeout_s: float) -> bytes | None:
    """The whole body, or None when the client disconnected before sending it.

    Raises:
        RequestError: 413 past ``limit`` bytes, 408 when it took longer than ``timeout_s``.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise RequestError(
                        f"request body exceeds the limit of {limit} bytes", status=413
                    )
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise RequestError(
            f"request body not received within {timeout_s:g} s ({size} bytes so far); send "
            "the whole body at once",
            status=408,
            kind="slow_body",
        ) from None
    body = b"".join(chunks)
    if body.startswith(_GZIP_MAGIC):
        raise RequestError(
            "request body is gzip-compressed (it starts with the bytes 1f 8b); send the JSON "
            "uncompressed",
            status=415,
        )
    return body


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields ``body`` once, then whatever the connection says next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


class FrontDoor:
    """ASGI wrapper applying the checks above, then admission for ``/predict``.

    Args:
        app: the routes.
        batcher: returns the running micro-batcher (None before startup).
        refuse: builds and counts the answer to a refusal: ``(path, error, started)`` -> bytes
            and headers.
        disconnected: counts a client that went away before its body was complete.
        max_body: largest accepted body in bytes.
        body_timeout_s: how long a body may take to arrive.
        overload: the prebuilt 503 (body, headers) of an overload refusal and its counter.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        batcher: Callable[[], MicroBatcher | None],
        refuse: Callable[[str, RequestError, float], tuple[bytes, list[tuple[bytes, bytes]]]],
        disconnected: Callable[[str], None],
        overloaded: Callable[[float], None],
        max_body: int,
        body_timeout_s: float,
        budget_ms: float,
    ) -> None:
        self.app = app
        self._batcher = batcher
        self._refuse = refuse
        self._disconnected = disconnected
        self._overloaded = overloaded
        self.max_body = max_body
        self.body_timeout_s = body_timeout_s
        self._overload_body = orjson.dumps(
            {
                "error": "overload",
                "record": None,
                "field": None,
                "message": f"over the latency budget of {budget_ms:g} ms; retry later",
            }
        )
        self._overload_headers = [
            (b"content-type", b"application/json"),
            (b"retry-after", b"1"),
            (b"content-length", str(len(self._overload_body)).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check, read and admit a POST; pass anything else straight on."""
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        batcher = self._batcher() if path == "/predict" else None
        if batcher is not None and batcher.overloaded():
            await self._send(send, 503, self._overload_body, self._overload_headers)
            self._overloaded(started)
            return
        try:
            check_headers(scope, self.max_body)
            body = await read_body(receive, limit=self.max_body, timeout_s=self.body_timeout_s)
        except RequestError as exc:
            content, headers = self._refuse(path, exc, started)
            if exc.status in (408, 413):  # the rest of the body is not read: close after
                headers = [*headers, (b"connection", b"close")]
            await self._send(send, exc.status, content, headers)
            return
        if body is None:
            self._disconnected(path)
            return
        if batcher is None:
            await self.app(scope, _replay(body, receive), send)
            return
        if not batcher.admit(len(body)):
            await self._send(send, 503, self._overload_body, self._overload_headers)
            self._overloaded(started)
            return
        try:
            await self.app({**scope, "opsnb.started": started}, _replay(body, receive), send)
        finally:
            batcher.release()

    @staticmethod
    async def _send(send: Send, status: int, body: bytes, headers: list[Any]) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
