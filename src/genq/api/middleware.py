"""One pure-ASGI middleware for everything FastAPI serves (the hot reads are answered
before it, by `genq.api.front.Front`)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genq.api.problems import problem
from genq.errors import TooLarge


class Guard:
    """One pure-ASGI middleware for everything FastAPI serves: a body declared or sent
    larger than `max_bytes` is answered 413, and the RateLimit headers an
    authenticated request's window left in `scope["state"]["ratelimit"]` are added
    to its response, errors included."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    detail = f"the body is larger than {self.max_bytes} bytes"
                    await problem(413, "too_large", "Payload too large", detail)(
                        scope, receive, send
                    )
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise TooLarge(f"the body is larger than {self.max_bytes} bytes")
            return message

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = scope.get("state", {}).get("ratelimit")
                if extra:
                    headers = list(message.get("headers", []))
                    have = {k.lower() for k, _ in headers}
                    for k, v in extra.items():
                        if k.lower().encode() not in have:
                            headers.append((k.lower().encode(), v.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, limited, send_with_headers)
