"""The outermost ASGI app: the reads that clients poll, served without the framework.

`GET /v1/jobs/{id}` (with its 304 and `?wait=`) and the compat faces' status reads
are what every waiting client calls again and again. `Front` answers them itself,
before FastAPI's router: authentication from the key cache, the rate limit in
microseconds, the body from the job cache, two ASGI messages. Everything else (and
these paths too, when a request is not one of them) goes on to FastAPI's router
(behind `genq.api.middleware.Guard`: body limits and RateLimit headers). The FastAPI routes
of the same paths stay, for the OpenAPI schema and as the reference: both call the
same service code, and tests check that they answer alike.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from pydantic import Field, TypeAdapter, ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from genq.accounts import Principal
from genq.api.deps import reply_headers
from genq.api.middleware import BodyWatch, refusal, too_large
from genq.api.problems import from_error, problem
from genq.api.routes.jobs import create_reply
from genq.api.streams import Feeds
from genq.core import Genq
from genq.errors import GenqError, InvalidInput, RequestTimeout, TooLarge
from genq.jobcache import CachedJob
from genq.jobs import JobService
from genq.lifecycle import NON_TERMINAL
from genq.ratelimits import GENERATE, STATUS, Window
from genq.telemetry.metrics import HttpMetrics, Metrics

log = logging.getLogger(__name__)
MAX_WAIT_S = 60.0
_NON_TERMINAL = frozenset(str(s) for s in NON_TERMINAL)

FaceRead = Callable[[Genq, Principal, dict[str, str], dict[str, str]], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class FastRead:
    """A GET a compat face serves on the fast path: `path` with `{name}` parameters,
    `read(genq, caller, path_params, query)`, errors in the face's own shape."""

    path: str
    read: FaceRead
    render_error: Callable[[GenqError], Response]
    # checks the face makes before authentication (headers by lower-case name)
    precheck: Callable[[dict[str, str]], None] | None = None

    def pattern(self) -> re.Pattern[str]:
        parts = re.split(r"\{(\w+)\}", self.path)
        regex = "".join(
            re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts)
        )
        return re.compile(f"^{regex}$")


def bearer(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, key = value.partition(b" ")
            return key.strip().decode("latin-1") if scheme.lower() == b"bearer" else None
    return None


MAX_EVENT_ID = (1 << 63) - 1


def event_id(value: str) -> int | None:
    """An event id a client sent: ASCII digits within 0..2^63-1, else None."""
    value = value.strip()
    if not value or len(value) > 19 or not value.isascii() or not value.isdigit():
        return None
    n = int(value)
    return n if n <= MAX_EVENT_ID else None


def resume_point(scope: Scope) -> int:
    """Where a job's stream resumes: `Last-Event-ID` (ignored unless a valid id), else
    `?after=` (422 unless a valid id), else the beginning."""
    for name, value in scope["headers"]:
        if name == b"last-event-id":
            found = event_id(value.decode("latin-1"))
            if found is not None:
                return found
    for name, value in parse_qsl(scope["query_string"].decode("latin-1")):
        if name == "after":
            found = event_id(value)
            if found is None:
                raise InvalidInput(
                    "the request is not valid",
                    errors=[
                        {
                            "field": "query.after",
                            "message": f"an event id from 0 to {MAX_EVENT_ID}",
                            "type": "value_error",
                        }
                    ],
                )
            return found
    return 0


_CREATE_HEADERS = (b"content-type", b"content-length", b"prefer", b"idempotency-key")


async def read_body(receive: Receive, limit: int, grace_s: float) -> bytes:
    """A request body of at most `limit` bytes (413 beyond; 408 if it trickles in: see
    `genq.api.middleware.BodyWatch`)."""
    watch = BodyWatch(receive, limit, grace_s)
    chunks = []
    while not watch.done:
        message = await watch()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
    return b"".join(chunks)


_WAIT = TypeAdapter(Annotated[float, Field(ge=0, le=MAX_WAIT_S)])
_AFTER_SEQ = TypeAdapter(Annotated[int, Field(ge=0)])


def _wait_params(query: str) -> tuple[float, int | None]:
    """`wait` and `after_seq`, validated as the FastAPI route validates them."""
    wait, after_seq = 0.0, None
    errors = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        adapter = _WAIT if name == "wait" else _AFTER_SEQ if name == "after_seq" else None
        if adapter is None:
            continue
        try:
            parsed = adapter.validate_python(value, strict=False)
        except ValidationError as exc:
            errors += [
                {"field": f"query.{name}", "message": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False, include_context=False)
            ]
            continue
        if name == "wait":
            wait = float(parsed)
        else:
            after_seq = int(parsed)
    if errors:
        raise InvalidInput("the request is not valid", errors=errors)
    return wait, after_seq


class Front:
    """The ASGI app genq serves: the hot reads (see the module docstring), else the
    FastAPI app `inner` (whose attributes, like `openapi()` or `state`, it passes on).
    `faces=None` turns the fast path off: everything goes to FastAPI."""

    def __init__(
        self,
        inner: FastAPI,
        genq: Genq,
        feeds: Feeds,
        faces: Sequence[FastRead] | None = (),
    ) -> None:
        self.inner = inner
        self.genq = genq
        self.feeds = feeds
        self.hot = faces is not None
        self.faces = [(f.pattern(), f) for f in faces or ()]
        self._prefixes = tuple({f.path.split("{", 1)[0] for f in faces or ()})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hot and scope["type"] == "http" and scope["method"] in ("GET", "POST"):
            try:
                if await self._hot(scope, receive, send):
                    return
            except Exception:
                log.exception("unhandled error on GET %s", scope["path"])
                with contextlib.suppress(Exception):  # unless the response had begun
                    await problem(
                        500, "internal", "Internal error", "the server failed; it was logged"
                    )(scope, receive, send)
                return
        await self.inner(scope, receive, send)

    async def _hot(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Serve the request if it is one of the hot paths; whether it was."""
        path: str = scope["path"]
        if scope["method"] == "POST":
            if path == "/v1/jobs":
                scope["genq.route"] = "/v1/jobs"  # the route label (genq.telemetry.metrics)
                await self.create(scope, receive, send)
                return True
            return False
        if path.startswith("/v1/jobs/"):
            job_id, _, rest = path[9:].partition("/")
            if job_id and not rest:
                scope["genq.route"] = "/v1/jobs/{job_id}"
                await self.job(scope, receive, send, job_id)
                return True
            if job_id and rest == "events":
                scope["genq.route"] = "/v1/jobs/{job_id}/events"
                await self.job_events(scope, receive, send, job_id)
                return True
        elif self._prefixes and path.startswith(self._prefixes):
            for pattern, face in self.faces:
                m = pattern.match(path)
                if m is not None:
                    scope["genq.route"] = face.path
                    await self.face(scope, receive, send, face, m.groupdict())
                    return True
        return False

    def _caller(self, scope: Scope) -> Principal | Awaitable[Principal]:
        key = bearer(scope["headers"])
        found = self.genq.accounts.cached(key)
        return found if found is not None else self.genq.accounts.authenticate(key)

    async def _authorized(self, scope: Scope, kind: str = STATUS) -> tuple[Principal, Window]:
        caller = self._caller(scope)
        if not isinstance(caller, Principal):
            caller = await caller
        limiter = self.genq.limiter
        account = caller.account
        if limiter.synchronous:
            window = limiter.hit_now(account.id, account.plan, kind)
        else:
            window = await limiter.hit(account.id, account.plan, kind)
        return caller, window

    async def create(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`POST /v1/jobs`: see `genq.api.routes.jobs.create_reply`."""
        rate: dict[str, str] = {}
        headers = {k: v for k, v in scope["headers"] if k in _CREATE_HEADERS}
        settings = self.genq.settings
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > settings.max_json_bytes:
            await refusal(too_large(settings.max_json_bytes))(scope, receive, send)  # as `Guard`
            return
        try:
            caller, window = await self._authorized(scope, GENERATE)
            rate = window.headers()
            raw = await read_body(receive, settings.max_json_bytes, settings.body_grace_s)
            reply = await create_reply(
                self.genq,
                caller,
                raw,
                content_type=headers.get(b"content-type", b"").decode("latin-1"),
                prefer=headers.get(b"prefer", b"").decode("latin-1"),
                key=(
                    headers[b"idempotency-key"].decode("latin-1")
                    if b"idempotency-key" in headers
                    else None
                ),
                path=scope["path"],
            )
        except GenqError as exc:
            response = from_error(exc, scope["path"])
            response.headers.update(rate)
            if isinstance(exc, TooLarge | RequestTimeout):  # the body was not read to its end
                response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        out = reply_headers(reply)
        out.update(rate)
        out["content-length"] = str(len(reply.body))
        await send(
            {
                "type": "http.response.start",
                "status": reply.status_code,
                "headers": [(k.lower().encode(), v.encode()) for k, v in out.items()],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})

    async def job(self, scope: Scope, receive: Receive, send: Send, job_id: str) -> None:
        """`GET /v1/jobs/{id}`: see `genq.api.routes.jobs.get_job`."""
        window: Window | None = None
        try:
            caller, window = await self._authorized(scope)
            query = scope["query_string"]
            wait, after_seq = _wait_params(query.decode("latin-1")) if query else (0.0, None)
            seen = None
            for name, value in scope["headers"]:
                if name == b"if-none-match":
                    seen = value.decode("latin-1")
                    break
            jobs = self.genq.jobs
            account_id = caller.account.id
            if wait > 0:
                with self.genq.holds.take(account_id, caller.account.plan):
                    item = await jobs.wait_body(
                        account_id, job_id, seen=seen, after_seq=after_seq, timeout=wait
                    )
            else:
                item = jobs.cached(account_id, job_id) or await jobs.body(account_id, job_id)
        except GenqError as exc:
            response = from_error(exc, scope["path"])
            if window is not None:
                response.headers.update(window.headers())
            await response(scope, receive, send)
            return
        await send_job(send, item, seen, jobs, window.raw())

    async def job_events(self, scope: Scope, receive: Receive, send: Send, job_id: str) -> None:
        """`GET /v1/jobs/{id}/events`: see `genq.api.streams`."""
        rate: dict[str, str] = {}
        try:
            caller, window = await self._authorized(scope)
            rate = window.headers()
            last = resume_point(scope)
            account = caller.account
            await self.genq.jobs.body(account.id, job_id)  # 404 / 410 before streaming
            hold = self.genq.holds.take(account.id, account.plan)
        except GenqError as exc:
            response = from_error(exc, scope["path"])
            response.headers.update(rate)
            await response(scope, receive, send)
            return
        headers = [(k.lower().encode(), v.encode()) for k, v in rate.items()]
        with hold:
            await self.feeds.stream(scope, receive, send, account.id, job_id, last, headers)

    async def face(
        self, scope: Scope, receive: Receive, send: Send, face: FastRead, params: dict[str, str]
    ) -> None:
        rate: dict[str, str] = {}
        try:
            if face.precheck is not None:
                face.precheck(
                    {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
                )
            caller, window = await self._authorized(scope)
            rate = window.headers()
            query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
            response = await face.read(self.genq, caller, params, query)
        except GenqError as exc:
            response = face.render_error(exc)
        response.headers.update(rate)
        await response(scope, receive, send)


class MeasuredFront(Front):
    """`Front` with every request measured (`genq.telemetry.metrics.HttpMetrics`, when
    `GENQ_METRICS_HTTP` is on): a subclass, so that `Front` itself pays nothing."""

    def __init__(self, *args: Any, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._measured = HttpMetrics(super().__call__, metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # (a coroutine function: servers tell ASGI 3 apps by that)
        await self._measured(scope, receive, send)


async def send_job(
    send: Send,
    item: CachedJob,
    seen: str | None,
    jobs: JobService,
    extra: list[tuple[bytes, bytes]],
) -> None:
    """The job body (200), or 304 when the client's ETag is current; `extra`: more
    headers (the rate limit's)."""
    if item.status in _NON_TERMINAL:
        extra.append((b"retry-after", jobs.retry_after(item.status, item.engine).encode()))
    if seen is not None and seen == item.etag:
        headers = [item.head[0], *extra]  # the etag
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": item.head + extra})
    await send({"type": "http.response.body", "body": item.body})


__all__ = ["FastRead", "Front", "MeasuredFront", "send_job"]
