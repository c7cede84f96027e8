"""What a provider module gives genq's gateway, and what the gateway gives it.

A provider module (one per upstream service: `masterpiecex.py`, `useapi.py`, ...)
defines a `Provider` subclass that knows the service's HTTP API and nothing else:
which engines it offers (name, input model, price), how to create a job, how to read
a job's status into a `Snapshot`, how to cancel, and how to read a pushed callback.
Everything else (keys, retries, backoff, rate limits, the circuit breaker, parking,
tracking, copying outputs into genq's storage, money) is the gateway's
(`genq.engines.upstream.gateway`, `.tracker`), so a new provider is one module.

A provider talks HTTP only through the `Call` it is handed: `call.request(...)`
prefixes the configured base URL, authenticates with the key in use (the account's
own, or the server's), counts against the provider's rate limit and breaker, and
turns an error answer into an `UpstreamError` (through `Provider.error_of`, which a
provider overrides to read its own error bodies).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import httpx
from pydantic import BaseModel

from genq.engines.contract import OutputKind

State = Literal["queued", "running", "succeeded", "failed", "canceled"]
TERMINAL_STATES: tuple[State, ...] = ("succeeded", "failed", "canceled")

# genq error codes for what went wrong upstream (a job's `error.code`)
UNAUTHORIZED = "upstream_unauthorized"
INSUFFICIENT = "upstream_insufficient_credits"
RATE_LIMITED = "upstream_rate_limited"
REJECTED = "upstream_rejected"
UNAVAILABLE = "upstream_unavailable"
UNKNOWN = "upstream_unknown"  # genq cannot tell whether the upstream job exists
NOT_FOUND = "upstream_not_found"  # the provider no longer knows the job
FAILED = "upstream_failed"  # the upstream job itself failed (the provider's message)
# the service lost the job without ending it (a Cog server stopped answering): the
# tracker puts the job back in the queue, to be handed over afresh
LOST = "upstream_lost"


class UpstreamError(Exception):
    """A call to the provider failed. `code` is one of the codes above; `transient`
    errors (rate limited, unavailable) are retried with backoff, the others end the
    job (or, for a status read, are counted against it)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        may_have_acted: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after
        # the request may have reached the service and been acted on although no
        # answer says so (a timeout, a dropped connection, a gateway's 502/504): a
        # create call that ends so may have made a job
        self.may_have_acted = may_have_acted

    @property
    def transient(self) -> bool:
        return self.code in (RATE_LIMITED, UNAVAILABLE)


_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Remote:
    """One output as the provider has it: genq copies it into its own storage."""

    name: str  # the genq output name: [A-Za-z0-9][A-Za-z0-9_.-]{0,63}
    url: str
    content_type: str | None = None  # None: taken from the download's Content-Type
    kind: OutputKind | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # width, height, ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A job's state at the provider, in genq's words."""

    state: State
    progress: float | None = None  # 0-100 when the provider reports it
    message: str | None = None  # the provider's own status word or note, for the job
    outputs: tuple[Remote, ...] = ()  # when succeeded
    error_code: str | None = None  # when failed: a genq code (default upstream_failed)
    error_message: str | None = None  # when failed: the provider's message
    # a trained model made upstream (PhotoGPT): kept as the job's `weights` output
    artifact: dict[str, Any] | None = None
    # log lines the provider had not reported yet (Cog's `logs`): the job's log events
    logs: tuple[str, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True, slots=True)
class Created:
    upstream_id: str
    snapshot: Snapshot | None = None  # when the create answer already says something


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """One engine a provider offers: `<provider>/<what>`."""

    what: str
    task: str  # one of genq.engines.contract.TASKS
    input_model: type[BaseModel]
    media: tuple[OutputKind, ...]
    description: str
    cost: float | None  # the provider's own price per job in its credits (None: unknown)
    typical_duration_s: float
    poll_s: float  # the provider's documented polling cadence for this kind of job


class Call(Protocol):
    """HTTP to the provider, as the gateway gives it to a provider module."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        ok: tuple[int, ...] = (),
        content: bytes | None = None,
        auth: bool = True,
    ) -> httpx.Response:
        """`path` is relative to the base URL (or absolute); `content` is a raw body;
        `auth=False` sends no credentials (e.g. to a presigned upload URL). An answer other than
        2xx (and the `ok` statuses) raises `UpstreamError` from `Provider.error_of`;
        no answer raises `UpstreamError(upstream_unavailable)`."""

    def input_path(self, ref: str) -> Path:
        """Local path of a genq input file (`file_...` or `job_.../name`) of the job."""

    @property
    def model_artifact(self) -> Path | None:
        """The artifact of the genq model the job names (`model_id`), if any."""


class Provider:
    """Base class of a provider module's provider. Subclasses set the class
    attributes and implement `engines`, `create` and `status` (and, where the service
    has them, `cancel`, `parse_callback` and `check`)."""

    name: ClassVar[str]  # "masterpiecex": the engines' prefix and GENQ_UPSTREAMS key
    title: ClassVar[str]  # "Masterpiece X", for messages
    # does the service push a job's result to a URL we give it (useapi's replyUrl)?
    callbacks: ClassVar[bool] = False
    # can a job be canceled there?
    cancellable: ClassVar[bool] = False
    # is a pushed end kept when a later push arrives (`final_push`)?
    ordered_pushes: ClassVar[bool] = False
    # the most jobs in flight at once by default (the engines' concurrency)
    default_max_jobs: ClassVar[int] = 1000
    # calls per minute the service allows by default (None: no documented limit)
    default_rate_per_min: ClassVar[int | None] = None

    def __init__(self, options: dict[str, Any]) -> None:
        # per-provider options from GENQ_UPSTREAMS beyond base_url/api_key/poll_s
        self.options = options

    def configured(
        self,
        key: str,
        parse: Callable[[Any], _T],
        defaults: Iterable[_T],
        name: Callable[[_T], str],
    ) -> dict[str, _T]:
        """A list option (`models`, `apps`) parsed entry by entry (ValueError when one is
        malformed), else the module's defaults, keyed by name."""
        given = self.options.get(key)
        items = [parse(e) for e in given] if isinstance(given, list) and given else defaults
        return {name(item): item for item in items}

    def engines(self) -> list[EngineSpec]:
        raise NotImplementedError

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    async def create(
        self,
        call: Call,
        what: str,
        data: BaseModel,
        *,
        reference: str,
        callback_url: str | None,
        idempotency_key: str | None,
    ) -> Created:
        """Start one upstream job for `data` (an instance of the engine's input
        model). `reference` is the genq job id (send it where the service echoes a
        reference back); `callback_url`, when `callbacks` is set, is where the service
        should push the job's result; `idempotency_key` is sent (as `Idempotency-Key`)
        only when the gateway is configured to trust the service with it."""
        raise NotImplementedError

    async def status(self, call: Call, what: str, upstream_id: str) -> Snapshot:
        raise NotImplementedError

    async def cancel(self, call: Call, what: str, upstream_id: str) -> bool:
        """Cancel the upstream job; False when the service has no way to."""
        return False

    def parse_callback(self, what: str, body: Any) -> Snapshot | None:
        """A pushed body (already matched to its job by the gateway's token) as a
        snapshot; None when it says nothing usable (the gateway then polls)."""
        return None

    def callback_id(self, what: str, body: Any) -> str | None:
        """The upstream id a pushed body is about: how a job whose create answer was
        lost is adopted when the service reports it (None: it cannot tell)."""
        return None

    async def discover(self, call: Call) -> int:
        """Learn what the service publishes about the engines (e.g. their input schemas)
        when the gateway starts; the number of engines still unknown (the gateway tries
        again later while any are). Raise `UpstreamError` when the service cannot be read."""
        return 0

    def final_push(self, body: Any) -> bool:
        """Does this pushed body end its job, so that a push arriving after it must not
        replace it? Only for a service whose pushes may arrive out of order and that has
        no status read to recover a lost end (Cog; `ordered_pushes`)."""
        return False

    def live_concurrency(self, what: str) -> Callable[[], int] | None:
        """For an engine whose capacity changes at run time (Cog: the slots of its
        servers that are up), what the worker reads as its concurrency before each
        claim; None: the fixed `max_jobs`."""
        return None

    async def close(self) -> None:
        """Stop what the provider runs in the background (the gateway is closing)."""

    async def check(self, call: Call) -> str:
        """Try the credentials with a cheap call; a one-line summary (raise
        `UpstreamError` when they do not work)."""
        raise NotImplementedError

    def error_of(self, response: httpx.Response) -> UpstreamError:
        """An error answer as an `UpstreamError`: the generic mapping by status, with
        the message taken from the body's usual fields."""
        return error_by_status(response, message_of(response))

    def answer(self, response: httpx.Response, code: str = UNAVAILABLE) -> dict[str, Any]:
        """The JSON object a 2xx answer holds; anything else raises `UpstreamError(code)`
        (`upstream_unavailable`: a garbled answer is retried like a dropped one)."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise UpstreamError(
                code, f"{self.title} answered {response.status_code} without a JSON object"
            )
        return body


def message_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason_phrase or "")[:500]
    if isinstance(body, dict):
        for key in ("message", "error", "detail", "title"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:500]
            if isinstance(value, dict):
                inner = value.get("message")
                if isinstance(inner, str):
                    return inner[:500]
    return str(body)[:500]


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def error_by_status(response: httpx.Response, message: str) -> UpstreamError:
    status = response.status_code
    code = REJECTED
    if status in (401, 403):
        code = UNAUTHORIZED
    elif status == 402:
        code = INSUFFICIENT
    elif status == 429:
        code = RATE_LIMITED
    elif status >= 500:
        code = UNAVAILABLE
    return UpstreamError(
        code,
        message or f"HTTP {status}",
        status=status,
        retry_after=retry_after(response),
        may_have_acted=status in (502, 504),
    )


def price_of(cost: float | None, markup: float, fallback: int) -> int:
    """genq credits for a provider cost: cost x markup, rounded up (at least 1)."""
    if cost is None:
        return fallback
    return max(1, math.ceil(cost * markup - 1e-9))
