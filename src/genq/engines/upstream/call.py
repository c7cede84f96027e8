"""`HttpCall`: the gateway's `Call` (see `base.Call`), one per job and key in use."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from genq.engines.upstream.base import UNAVAILABLE, Provider, UpstreamError

# (provider name) -> None: raise UpstreamError when the call may not go out now
Gate = Callable[[], Awaitable[None]]
# (succeeded: the service answered sensibly) -> None
Outcome = Callable[[bool], None]
# (HTTP status or None: no answer, seconds) -> None, for each call that went out
Observe = Callable[[int | None, float], None]


def _no_input(ref: str) -> Path:
    raise UpstreamError("invalid_input", f"{ref}: this job has no input files")


class HttpCall:
    def __init__(
        self,
        provider: Provider,
        client: httpx.AsyncClient,
        base_url: str,
        api_key: str,
        *,
        input_path: Callable[[str], Path] = _no_input,
        model_artifact: Path | None = None,
        gate: Gate | None = None,
        outcome: Outcome | None = None,
        timeout_s: float = 60.0,
        observe: Observe | None = None,
    ) -> None:
        self.provider = provider
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._input_path = input_path
        self._model = model_artifact
        self._gate = gate
        self._outcome = outcome
        self._observe = observe
        self.timeout_s = timeout_s
        self.requests = 0  # calls that went out (for stats and tests)
        # the last request was answered 2xx (or an `ok` status): the service took it
        self.last_ok = False

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def same_origin(self, url: str) -> bool:
        a, b = httpx.URL(url), httpx.URL(self.base_url)
        return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)

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
        self.last_ok = False
        if self._gate is not None:
            await self._gate()
        url = self.url(path)
        sent = dict(self.provider.auth_headers(self.api_key)) if auth else {}
        if headers:
            sent.update(headers)
        if idempotency_key:
            sent["Idempotency-Key"] = idempotency_key
        self.requests += 1
        started = time.perf_counter()
        try:
            response = await self.client.request(
                method,
                url,
                json=json,
                params=params,
                data=data,
                files=files,
                content=content,
                headers=sent,
                timeout=self.timeout_s,
            )
        except httpx.HTTPError as exc:
            self._record(False)
            if self._observe is not None:
                self._observe(None, time.perf_counter() - started)
            # a connection never made carried nothing; any other failure may have
            # carried the request
            unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
            raise UpstreamError(
                UNAVAILABLE,
                f"{self.provider.title} did not answer: {type(exc).__name__}",
                may_have_acted=not unsent,
            ) from exc
        status = response.status_code
        if self._observe is not None:
            self._observe(status, time.perf_counter() - started)
        if status != 429:  # (being told to slow down is not a failure of the service)
            self._record(status < 500)
        if 200 <= status < 300 or status in ok:
            self.last_ok = True
            return response
        raise self.provider.error_of(response)

    def _record(self, good: bool) -> None:
        if self._outcome is not None:
            self._outcome(good)

    def input_path(self, ref: str) -> Path:
        return self._input_path(ref)

    @property
    def model_artifact(self) -> Path | None:
        return self._model
