"""Cog (https://cog.run): models packaged with Cog, served by their own HTTP servers
(`cog serve`, `python -m cog.server.http`, a Cog container), as `cog/<name>` engines.

    GENQ_COG='{"acme/echo": {"url": "http://127.0.0.1:5000"},
               "acme/sd": {"urls": ["http://gpu1:5000", "http://gpu2:5000"], "slots": 1}}'

One engine per entry: `url` (one server) or `urls` (a fleet running the same model),
and optionally `slots` (predictions one server runs at once: its
`COG_MAX_CONCURRENCY`, default 1), `task` (default text2image), `media` (default
["image"]), `description`, `price` (genq credits per job, default 1). `with_cog` turns
GENQ_COG into the gateway's `cog` upstream, so a Cog job is an upstream job like any
other: handed over from a worker slot, parked, followed by the tracker, its outputs
copied into genq's storage. Options of the `cog` upstream itself (GENQ_UPSTREAMS.cog)
override the defaults below: `health_s` (how often each server's `/health-check` is
read, default 1), `lost_after_s` (a server that has not answered for this long has
lost its predictions, default 3), `max_attempts` (hand-overs of one job, default 3),
`safety_poll_s` (how often a running job's server is looked at, default 1),
`idle_after_s` (a one-slot server idle this long runs none of genq's predictions,
default 10), `busy_wait_s` (how long a create asks servers at capacity again, default
3: a server reports a prediction's end just before its slot is free).

What genq does with a Cog server's HTTP API:
- `GET /health-check`, every `health_s`, in the background: READY or BUSY means up.
  An engine's concurrency is the slots of its servers that are up, read by the worker
  before each claim (`live_concurrency`): while none is up (starting, setup failed,
  gone) its jobs wait in the queue instead of failing.
- `GET /openapi.json` once a server is up: `components.schemas.Input` is the engine's
  input schema (validated in genq; any object until it is known, or when the model was
  not built with one: the server then validates).
- Create: `PUT /predictions/{job id}` with `Prefer: respond-async`, the input, and
  genq's per-job callback URL as `webhook` (`webhook_events_filter`: start, output,
  logs, completed). The PUT is idempotent by id, so a create sent again after a lost
  answer is the same prediction (the gateway's `idempotent`); a server at capacity
  (409) or not answering passes the job to the next server of the fleet.
- Status: Cog has no status read; its webhooks carry the prediction (`parse_callback`):
  progress from the tqdm lines of `logs` (`replicate.tqdm_progress`), each new log line
  a job log event, the outputs (file URLs, `data:` URIs, text, JSON) at the end. The
  tracker's look at a job (`status`, every `safety_poll_s`, no HTTP) asks the health
  monitor about its server: one that has not answered for `lost_after_s`, has
  restarted since, or (one slot) has been idle for `idle_after_s` with no word of the
  prediction's end, lost it, and the job goes back to the queue (`LOST`) for a server.
- Cancel: `POST /predictions/{id}/cancel`.

Cog's webhooks may arrive out of order (they are sent concurrently), and there is no
status read to recover a lost end: a pushed end is never replaced by a later push
(`final_push`), and a push that lands while the tracker reads another is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

import httpx
import jsonschema  # type: ignore[import-untyped]
from pydantic import BaseModel

from genq.engines.contract import TASKS, OutputKind
from genq.engines.upstream.base import (
    LOST,
    RATE_LIMITED,
    REJECTED,
    UNAVAILABLE,
    Call,
    Created,
    EngineSpec,
    Provider,
    Remote,
    Snapshot,
    State,
    UpstreamError,
    error_by_status,
    message_of,
)
from genq.engines.upstream.replicate import (  # (Replicate runs Cog)
    STATES,
    discovered_input,
    tqdm_progress,
)

log = logging.getLogger(__name__)

UP: Final = ("READY", "BUSY")
EVENTS: Final = ["start", "output", "logs", "completed"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
_OUT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KINDS: Final[dict[str, OutputKind]] = {"image": "image", "video": "video", "model": "model"}
DEFAULTS: Final[dict[str, Any]] = {
    "api_key": "-",  # (a Cog server takes no key)
    "idempotent": True,  # PUT /predictions/{id}
    "callbacks": True,
    "safety_poll_s": 1.0,
    "poll_s": 1.0,
    "breaker_failures": 1_000_000,  # one server down is the fleet's business, not a breaker's
    "timeout_s": 30,
}


def with_cog(upstreams: dict[str, Any], cog: dict[str, Any]) -> dict[str, Any]:
    """GENQ_UPSTREAMS with GENQ_COG added as its `cog` upstream (what is in
    GENQ_UPSTREAMS.cog overrides the defaults)."""
    if not cog:
        return upstreams
    urls = [u for entry in cog.values() for u in _urls_of(entry)]
    given = upstreams.get("cog") if isinstance(upstreams.get("cog"), dict) else {}
    prices = {
        str(n): int(e["price"]) for n, e in cog.items() if isinstance(e, dict) and "price" in e
    }
    entries = [e for e in cog.values() if isinstance(e, dict)]
    slots = sum(int(e.get("slots", 1)) * len(_urls_of(e)) for e in entries)
    merged = {
        **DEFAULTS,
        "base_url": urls[0] if urls else "",
        "prices": prices,
        "max_jobs": max(1, slots),
        **(given or {}),
        "engines": cog,
    }
    return {**upstreams, "cog": merged}


def _urls_of(entry: Any) -> list[str]:
    if not isinstance(entry, dict):
        return []
    urls = entry.get("urls") if entry.get("urls") is not None else [entry.get("url")]
    if not isinstance(urls, list):
        return []
    return [str(u).rstrip("/") for u in urls if isinstance(u, str)]


@dataclass
class Server:
    """One Cog server and what its `/health-check` said last."""

    url: str
    slots: int
    status: str = "UNKNOWN"  # Cog's word: STARTING, READY, BUSY, SETUP_FAILED, DEFUNCT
    answered_at: float | None = None  # (monotonic) its last answer
    since: float = field(default_factory=time.monotonic)  # watched since
    boot: str | None = None  # its setup's start time: another one means it restarted
    full_until: float = 0.0  # (monotonic) a prediction just went there: full until then
    idle_since: float | None = None  # (monotonic) READY without a break since then

    @property
    def up(self) -> bool:
        return self.status in UP

    def silent_s(self) -> float:
        return time.monotonic() - (self.answered_at or self.since)


@dataclass
class Model:
    """One Cog engine: its servers and, once read, its input schema."""

    name: str
    servers: list[Server]
    task: str = "text2image"
    media: tuple[OutputKind, ...] = ("image",)
    description: str = ""
    schema: dict[str, Any] | None = None
    validator: Any = field(default=None, repr=False)

    def ready_slots(self) -> int:
        return sum(s.slots for s in self.servers if s.up)


def _model_of(name: str, entry: Any, servers: dict[str, Server]) -> Model:
    if not _NAME.match(name):
        raise ValueError(f"GENQ_COG: {name!r} is not a usable engine name (owner/name)")
    urls = _urls_of(entry)
    if not urls or not all(u.startswith(("http://", "https://")) for u in urls):
        raise ValueError(f"GENQ_COG.{name}: `url` or `urls`: http(s) URLs are required")
    slots = int(entry.get("slots", 1))
    if slots < 1:
        raise ValueError(f"GENQ_COG.{name}.slots must be at least 1")
    task = str(entry.get("task") or "text2image")
    if task not in TASKS:
        raise ValueError(f"GENQ_COG.{name}: unknown task {task!r}")
    media = tuple(_KINDS.get(str(m), "other") for m in entry.get("media") or ["image"])
    # a server named by two engines is one server (one health check, one set of slots)
    fleet = [servers.setdefault(u, Server(u, slots)) for u in urls]
    return Model(
        name=name,
        servers=fleet,
        task=task,
        media=media,
        description=str(entry.get("description") or f"Cog model {name}."),
    )


def _input_model(model: Model) -> type[BaseModel]:
    return discovered_input(
        "Cog",
        model,
        f"The input of the Cog model {model.name} (its schema is read from the model's server"
        " once one is up).",
    )


def _remotes(value: Any) -> list[Remote]:
    """A prediction's `output` as outputs: each file URL or `data:` URI one file, text a
    text file, anything else (numbers, objects) a JSON file; an object's fields (Cog's
    `BaseModel` outputs) are named by their keys."""
    found: list[Remote] = []

    def walk(v: Any, name: str | None = None) -> None:
        name = name if name and _OUT_NAME.match(name) else f"output_{len(found)}"
        if isinstance(v, str):
            if v.startswith(("http://", "https://", "data:")):
                found.append(Remote(name=name, url=v))
            else:
                text = urllib.parse.quote(v)
                found.append(Remote(name=name, url=f"data:text/plain;charset=utf-8,{text}"))
        elif isinstance(v, list):
            for item in v:
                walk(item)
        elif v is not None:
            data = urllib.parse.quote(json.dumps(v))
            found.append(Remote(name=name, url=f"data:application/json,{data}"))

    if isinstance(value, dict):
        for key, item in value.items():
            walk(item, str(key))
    else:
        walk(value)
    return found


def split_id(upstream_id: str) -> tuple[str, str]:
    """(prediction id, server URL) of an upstream id `<prediction id>@<server URL>`."""
    pid, _, url = upstream_id.partition("@")
    return pid, url


class Cog(Provider):
    name: ClassVar[str] = "cog"
    title: ClassVar[str] = "Cog"
    callbacks: ClassVar[bool] = True
    cancellable: ClassVar[bool] = True
    default_max_jobs: ClassVar[int] = 1  # (the engines' concurrency is their live slots)
    ordered_pushes: ClassVar[bool] = True  # (its webhooks may arrive out of order)

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.servers: dict[str, Server] = {}
        engines = options.get("engines") or {}
        if not isinstance(engines, dict):
            raise ValueError("GENQ_COG: expected an object of engines")
        self.models: dict[str, Model] = {
            str(n): _model_of(str(n), e if isinstance(e, dict) else {}, self.servers)
            for n, e in engines.items()
        }
        self._inputs = {n: _input_model(m) for n, m in self.models.items()}
        self.health_s = float(options.get("health_s", 1.0))
        self.lost_after_s = float(options.get("lost_after_s", 3.0))
        self.idle_after_s = float(options.get("idle_after_s", 10.0))
        self.busy_wait_s = float(options.get("busy_wait_s", 3.0))
        # per prediction (in this process): its server's boot when it went there, the
        # log lines already reported, its last state
        self._boots: dict[str, str | None] = {}
        self._logged: dict[str, int] = {}
        self._states: dict[str, State] = {}
        self._heard: dict[str, float] = {}  # (monotonic) its create or last push
        self._monitor: asyncio.Task[None] | None = None
        # the monitor's own connections (a transport, not a client: a health check a
        # second per server is not worth a log line each)
        self._transport: httpx.AsyncHTTPTransport | None = None

    def engines(self) -> list[EngineSpec]:
        return [
            EngineSpec(
                what=m.name,
                task=m.task,
                input_model=self._inputs[m.name],
                media=m.media,
                description=m.description,
                cost=None,
                typical_duration_s=10.0,
                poll_s=1.0,
            )
            for m in self.models.values()
        ]

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {}

    def live_concurrency(self, what: str) -> Callable[[], int] | None:
        return self.models[what].ready_slots

    def _model(self, what: str) -> Model:
        model = self.models.get(what)
        if model is None:
            raise UpstreamError("invalid_input", f"Cog model {what!r} is not configured")
        return model

    # -- the health monitor -----------------------------------------------------------------

    async def discover(self, call: Call) -> int:
        """Start watching the servers (their health, and each model's schema once one of
        its servers is up)."""
        if self._monitor is None:
            self._monitor = asyncio.create_task(self._watch(), name="genq-cog-health")
        return 0

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    async def _watch(self) -> None:
        self._transport = httpx.AsyncHTTPTransport()
        while True:
            await asyncio.gather(*(self._look(s) for s in self.servers.values()))
            for model in self.models.values():
                if model.schema is None:
                    await self._read_schema(model)
            await asyncio.sleep(self.health_s)

    async def _get(self, url: str) -> Any:
        """GET a JSON document (raise httpx.HTTPError or ValueError)."""
        assert self._transport is not None
        wait = max(1.0, self.health_s * 2)
        request = httpx.Request("GET", url, extensions={"timeout": httpx.Timeout(wait).as_dict()})
        response = await self._transport.handle_async_request(request)
        try:
            return json.loads(await response.aread())
        finally:
            await response.aclose()

    async def _look(self, server: Server) -> None:
        try:
            body = await self._get(f"{server.url}/health-check")
        except (httpx.HTTPError, ValueError):
            if server.up and server.silent_s() >= self.lost_after_s:
                log.warning("Cog server %s stopped answering", server.url)
                server.status = "GONE"
            return
        if not isinstance(body, dict):
            return
        was = server.status
        server.answered_at = time.monotonic()
        server.status = str(body.get("status") or "UNKNOWN").upper()
        setup = body.get("setup")
        if isinstance(setup, dict) and isinstance(setup.get("started_at"), str):
            server.boot = setup["started_at"]
        if server.status != was:
            log.info("Cog server %s: %s", server.url, server.status)
            server.idle_since = time.monotonic() if server.status == "READY" else None

    async def _read_schema(self, model: Model) -> None:
        for server in model.servers:
            if not server.up:
                continue
            try:
                openapi = await self._get(f"{server.url}/openapi.json")
            except (httpx.HTTPError, ValueError):
                continue
            components = openapi.get("components") if isinstance(openapi, dict) else None
            schema = ((components or {}).get("schemas") or {}).get("Input")
            if not isinstance(schema, dict):
                # (a model built without a schema: the server validates)
                log.info("Cog model %s: its server publishes no input schema", model.name)
                model.schema = {"title": "Input", "type": "object", "additionalProperties": True}
                return
            kind = jsonschema.validators.validator_for(schema)
            try:
                kind.check_schema(schema)
            except jsonschema.SchemaError:
                log.warning("Cog model %s: its input schema is not valid", model.name)
                model.schema = schema
                return
            model.validator = kind(schema)
            model.schema = schema
            return

    # -- jobs -------------------------------------------------------------------------------

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
        model = self._model(what)
        body: dict[str, Any] = {
            "id": reference,
            "input": data.model_dump(mode="json", exclude_none=True),
        }
        if callback_url:
            body["webhook"] = callback_url
            body["webhook_events_filter"] = EVENTS
        # a server that ended a prediction reports it before its slot is free again: one
        # at capacity (409) is asked again for up to `busy_wait_s`
        deadline = time.monotonic() + self.busy_wait_s
        while True:
            try:
                return await self._place(call, what, model, body, reference)
            except UpstreamError as exc:
                if exc.status != 409 or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(0.05)

    async def _place(
        self, call: Call, what: str, model: Model, body: dict[str, Any], reference: str
    ) -> Created:
        """Send the prediction to the first server of the fleet that takes it."""
        now = time.monotonic()
        # a server that is up and not known to be full first, then the others that are up
        order = sorted(
            (s for s in model.servers if s.up), key=lambda s: (s.full_until > now, s.full_until)
        )
        if not order:
            raise UpstreamError(
                UNAVAILABLE, f"no Cog server of {what} is up", retry_after=self.health_s
            )
        last: UpstreamError | None = None
        for server in order:
            try:
                answer = self.answer(
                    await call.request(
                        "PUT",
                        f"{server.url}/predictions/{reference}",
                        json=body,
                        headers={"Prefer": "respond-async"},
                    )
                )
            except UpstreamError as exc:
                if exc.may_have_acted or exc.code not in (RATE_LIMITED, UNAVAILABLE):
                    raise
                # at capacity (409) or not answering: the next server of the fleet
                server.full_until = time.monotonic() + self.health_s
                if last is None or last.status == 409:
                    last = exc  # (a 409 only when every server said so)
                continue
            if server.slots == 1:
                server.full_until = time.monotonic() + self.health_s
            found = answer.get("id")
            pid = found if isinstance(found, str) and found else reference
            self._boots[pid] = server.boot
            self._heard[pid] = time.monotonic()
            return Created(f"{pid}@{server.url}", self._snapshot(pid, answer))
        assert last is not None
        raise last

    async def status(self, call: Call, what: str, upstream_id: str) -> Snapshot:
        """Cog has no status read: what its webhooks said last, unless the server lost
        the prediction (gone, or restarted since it took it): then `LOST`."""
        pid, url = split_id(upstream_id)
        server = self.servers.get(url)
        if server is not None:
            if server.status == "GONE" or (
                server.answered_at is None and server.silent_s() >= self.lost_after_s
            ):
                self._forget(pid)
                raise UpstreamError(LOST, f"Cog server {url} stopped answering")
            took = self._boots.get(pid)
            if took is not None and server.boot is not None and server.boot != took:
                self._forget(pid)
                raise UpstreamError(LOST, f"Cog server {url} restarted")
            # a one-slot server idle for a while runs nothing: it ended the prediction
            # without its last webhook reaching genq (or dropped it)
            heard = self._heard.setdefault(pid, time.monotonic())
            if server.slots == 1 and server.idle_since is not None:
                quiet = time.monotonic() - max(heard, server.idle_since)
                if quiet >= self.idle_after_s:
                    self._forget(pid)
                    raise UpstreamError(
                        LOST, f"Cog server {url} is idle and never reported the prediction's end"
                    )
        state = self._states.get(pid, "running")
        return Snapshot(state=state, message="starting" if state == "queued" else "processing")

    async def cancel(self, call: Call, what: str, upstream_id: str) -> bool:
        pid, url = split_id(upstream_id)
        await call.request("POST", f"{url}/predictions/{pid}/cancel")
        self._forget(pid)
        return True

    def parse_callback(self, what: str, body: Any) -> Snapshot | None:
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            return None
        return self._snapshot(body["id"], body)

    def _snapshot(self, pid: str, body: dict[str, Any]) -> Snapshot | None:
        word = body.get("status")
        if not isinstance(word, str):
            return None
        self._heard[pid] = time.monotonic()
        state = STATES.get(word, "running")
        logs = body.get("logs")
        lines: tuple[str, ...] = ()
        if isinstance(logs, str):
            all_lines = [line for line in logs.splitlines() if line.strip()]
            seen = self._logged.get(pid, 0)
            lines = tuple(all_lines[seen:])
            self._logged[pid] = len(all_lines)
        if state in ("succeeded", "failed", "canceled"):
            self._forget(pid)
        else:
            self._states[pid] = state
        if state == "failed":
            said = body.get("error")
            return Snapshot(
                state="failed",
                message=word,
                logs=lines,
                error_message=f"Cog: {said}" if said else "Cog: the prediction failed",
            )
        if state == "succeeded":
            outputs = tuple(_remotes(body.get("output")))
            return Snapshot(state, progress=100.0, message=word, outputs=outputs, logs=lines)
        return Snapshot(state, progress=tqdm_progress(logs), message=word, logs=lines)

    def _forget(self, pid: str) -> None:
        self._boots.pop(pid, None)
        self._logged.pop(pid, None)
        self._states.pop(pid, None)
        self._heard.pop(pid, None)

    def final_push(self, body: Any) -> bool:
        return isinstance(body, dict) and body.get("status") in ("succeeded", "failed", "canceled")

    def callback_id(self, what: str, body: Any) -> str | None:
        return None  # (never needed: a create sent again is the same prediction)

    async def check(self, call: Call) -> str:
        states = ", ".join(f"{s.url} {s.status}" for s in self.servers.values())
        return f"{self.title}: {states}"

    def error_of(self, response: httpx.Response) -> UpstreamError:
        status = response.status_code
        if status == 409:  # "At capacity - all prediction slots busy"
            return UpstreamError(RATE_LIMITED, f"Cog: {message_of(response)}", status=409)
        if status == 422:  # {"detail": [{"loc": [...], "msg": ...}]}: the input
            try:
                detail = response.json().get("detail")
                first = detail[0]
                where = ".".join(str(p) for p in first["loc"][2:])
                message = f"{where + ': ' if where else ''}{first['msg']}"
            except (ValueError, AttributeError, LookupError, TypeError):
                message = message_of(response)
            return UpstreamError(REJECTED, f"Cog: {message}", status=422)
        return error_by_status(response, f"{self.title}: {message_of(response)}")


PROVIDER = Cog
