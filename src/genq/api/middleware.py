"""One pure-ASGI middleware for everything FastAPI serves (the hot reads are answered
before it, by `genq.api.front.Front`), and the request-body rules both follow."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genq.api.problems import face_renderer, problem
from genq.errors import GenqError, RequestTimeout, TooLarge

# A body must arrive at MIN_RATE on average once its grace (`body_grace_s`) has passed
# (a client that declares more than it sends, or trickles it, is answered 408, not
# waited on).
MIN_RATE = 16 << 10  # bytes a second
# Bodies of these types are uploads (their own, larger limit); anything else is a
# request document (JSON, forms) and gets the JSON limit.
UPLOAD_TYPES = ("multipart/", "application/octet-stream", "image/", "video/", "audio/", "model/")
MULTIPART_SLACK = 64 << 10  # boundaries and part headers around an upload


def body_limit(headers: Sequence[tuple[bytes, bytes]], json_bytes: int, upload_bytes: int) -> int:
    """The largest body a request with these headers may send."""
    for name, value in headers:
        if name == b"content-type":
            ctype = value.decode("latin-1").strip().lower()
            if ctype.startswith(UPLOAD_TYPES):
                return upload_bytes + MULTIPART_SLACK
            break
    return json_bytes


def too_large(limit: int) -> TooLarge:
    return TooLarge(f"the body is larger than {limit} bytes")


def refusal(err: GenqError, render: Callable[[GenqError], Response] | None = None) -> Response:
    """The answer to a body error (`TooLarge`, `RequestTimeout`): problem+json, or in
    `render`'s (a face's) shape. The rest of the body is not read, so the connection
    closes after it."""
    response = render(err) if render else problem(err.status, err.code, err.title, err.detail)
    response.headers["connection"] = "close"
    return response


def declared_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyWatch:
    """`receive` for one request, counting its body as it arrives: `TooLarge` past
    `limit`, `RequestTimeout` when it comes slower than `MIN_RATE` after `grace_s`.
    Once the body is complete, messages (the disconnect a stream waits for) pass
    untimed. `error` is what it raised, if anything."""

    __slots__ = ("done", "error", "grace_s", "limit", "receive", "seen", "start")

    def __init__(self, receive: Receive, limit: int, grace_s: float) -> None:
        self.receive, self.limit, self.grace_s = receive, limit, grace_s
        self.seen, self.done = 0, False
        self.error: GenqError | None = None
        self.start = time.monotonic()

    async def __call__(self) -> Message:
        if self.done:
            return await self.receive()
        left = self.start + self.grace_s + self.seen / MIN_RATE - time.monotonic()
        try:
            async with asyncio.timeout(max(left, 0.0)):
                message = await self.receive()
        except TimeoutError:
            self.error = RequestTimeout(
                f"the body did not arrive (at least {MIN_RATE >> 10} KiB/s"
                f" after {self.grace_s:g} s)"
            )
            raise self.error from None
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.error = too_large(self.limit)
                raise self.error
            self.done = not message.get("more_body")
        else:
            self.done = True  # the client left
        return message


class Guard:
    """One pure-ASGI middleware for everything FastAPI serves: a body declared or sent
    larger than its limit (`body_limit`) is answered 413 and one that arrives too
    slowly 408, whatever the route made of the error; and the RateLimit headers an
    authenticated request's window left in `scope["state"]["ratelimit"]` are added to
    its response, errors included."""

    def __init__(
        self,
        app: ASGIApp,
        json_bytes: int,
        upload_bytes: int,
        grace_s: float,
        faces: Mapping[str, Callable[[GenqError], Response]] | None = None,
    ) -> None:
        self.app = app
        self.faces = faces or {}
        self.json_bytes = json_bytes
        self.upload_bytes = upload_bytes
        self.grace_s = grace_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        limit = body_limit(headers, self.json_bytes, self.upload_bytes)
        declared = declared_length(headers)
        if declared is not None and declared > limit:
            await self._refuse(scope, too_large(limit))(scope, receive, send)
            return
        watch = BodyWatch(receive, limit, self.grace_s)
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if watch.error is not None:
                return  # the route's answer to a body error: replaced below
            if message["type"] == "http.response.start":
                started = True
                extra = scope.get("state", {}).get("ratelimit")
                if extra:
                    out = list(message.get("headers", []))
                    have = {k.lower() for k, _ in out}
                    for k, v in extra.items():
                        if k.lower().encode() not in have:
                            out.append((k.lower().encode(), v.encode()))
                    message = {**message, "headers": out}
            await send(message)

        try:
            await self.app(scope, watch, send_with_headers)
        except GenqError:
            if watch.error is None:
                raise
        err = watch.error
        if err is not None and not started:
            await self._refuse(scope, err)(scope, receive, send)

    def _refuse(self, scope: Scope, err: GenqError) -> Response:
        """`refusal`, in the face's error shape under a compat face."""
        return refusal(err, face_renderer(self.faces, scope["path"]))
