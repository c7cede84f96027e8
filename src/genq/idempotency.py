"""Idempotency-Key for every POST that creates something, scoped to the account.

The same key and body replay the first response byte for byte; the same key with a
different body is refused (422); a request that races its twin still in flight gets
409. The key is linked to what it created inside the creating transaction (see
`current`), so a job, its credit hold and its idempotency record commit together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta

from genq.errors import Conflict, InvalidInput
from genq.ids import utcnow
from genq.store import Store
from genq.store.idempotency import DONE

# (account id, key) of the request being served, read by the code that creates
current: ContextVar[tuple[str, str] | None] = ContextVar("genq_idempotency", default=None)
MAX_KEY = 255
STALE_S = 120.0  # an in-flight record older than this lost its request


class IdempotencyKeyReused(InvalidInput):
    """This Idempotency-Key was used with a different request."""

    code, title = "idempotency_key_reused", "Idempotency key reused"


@dataclass(frozen=True, slots=True)
class Reply:
    status_code: int
    headers: dict[str, str]
    body: bytes
    replayed: bool = False


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"%s %s\n%s" % (method.encode(), path.encode(), body)).hexdigest()


class Idempotency:
    def __init__(self, store: Store, ttl_s: float) -> None:
        self.store = store
        self.ttl_s = ttl_s

    async def run(
        self,
        account_id: str,
        key: str,
        fingerprint: str,
        handler: Callable[[], Awaitable[Reply]],
        replay_resource: Callable[[str], Awaitable[Reply]] | None = None,
    ) -> Reply:
        if not key or len(key) > MAX_KEY:
            raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY} characters")
        rec = await self.store.idempotency.begin(
            account_id, key, fingerprint, self.ttl_s, stale_s=STALE_S
        )
        if rec is not None:
            if rec.request_hash != fingerprint:
                raise IdempotencyKeyReused()
            if rec.state == DONE and rec.body is not None and rec.status_code is not None:
                return Reply(rec.status_code, dict(rec.headers or {}), rec.body, replayed=True)
            lost = rec.created_at < utcnow() - timedelta(seconds=STALE_S)
            if lost and rec.resource_id is not None and replay_resource is not None:
                # it created its resource but its answer was never kept (a crash)
                return await replay_resource(rec.resource_id)
            raise Conflict("a request with this Idempotency-Key is still in progress")
        token = current.set((account_id, key))
        try:
            reply = await handler()
        except BaseException:
            await self.store.idempotency.abort(account_id, key)
            raise
        finally:
            current.reset(token)
        if reply.status_code >= 500:
            await self.store.idempotency.abort(account_id, key)
        else:
            await self.store.idempotency.finish(
                account_id, key, reply.status_code, reply.headers, reply.body
            )
        return reply
