"""Idempotency-Key for every POST that creates something, scoped to the account.

The same key and body replay the first response byte for byte; the same key with a
different body is refused (422); a request that races its twin still in flight gets
409 with `Retry-After`. The key is linked to what it created inside the creating
transaction (see `current`), so a job, its credit hold and its idempotency record
commit together.

A request holds its key in flight with a token and a short lease (10 s) that it
renews while it runs. If its process dies, the lease lapses within seconds: a retry
then gets the job the dead request created (its answer was lost), or, if it created
nothing, takes the key over and runs. Creating is fenced on the token, so a request
that outlived its lease (a stalled process) can no longer create a second job.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta

from genq.errors import Conflict, InvalidInput
from genq.ids import utcnow
from genq.store import Store
from genq.store.idempotency import DONE

# (account id, key, token) of the request being served, read by the code that creates
current: ContextVar[tuple[str, str, str] | None] = ContextVar("genq_idempotency", default=None)
MAX_KEY = 255
LEASE_S = 10.0  # default; an in-flight request renews its hold every lease / 3
LEGACY_STALE_S = 120.0  # keys stored before leases: in flight for at most this long


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
    def __init__(self, store: Store, ttl_s: float, lease_s: float = LEASE_S) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.lease_s = lease_s

    async def run(
        self,
        account_id: str,
        key: str,
        fingerprint: str,
        handler: Callable[[], Awaitable[Reply]],
        replay_resource: Callable[[str], Awaitable[Reply]] | None = None,
    ) -> Reply:
        if not 0 < len(key) <= MAX_KEY or not (key.isascii() and key.isprintable()):
            raise InvalidInput(
                f"Idempotency-Key must be 1 to {MAX_KEY} printable ASCII characters",
                errors=[
                    {
                        "field": "header.Idempotency-Key",
                        "message": f"1 to {MAX_KEY} printable ASCII characters",
                        "type": "value_error",
                    }
                ],
            )
        token = secrets.token_hex(16)
        rec = await self.store.idempotency.begin(
            account_id,
            key,
            fingerprint,
            token,
            ttl_s=self.ttl_s,
            lease_s=self.lease_s,
            legacy_stale_s=LEGACY_STALE_S,
        )
        if rec is not None:
            if rec.request_hash != fingerprint:
                raise IdempotencyKeyReused()
            if rec.state == DONE and rec.body is not None and rec.status_code is not None:
                return Reply(rec.status_code, dict(rec.headers or {}), rec.body, replayed=True)
            now = utcnow()
            until = rec.lease_expires_at or rec.created_at + timedelta(seconds=LEGACY_STALE_S)
            if until <= now and rec.resource_id is not None and replay_resource is not None:
                # it created its resource but its answer was never kept (a crash)
                return await replay_resource(rec.resource_id)
            wait = max(1, math.ceil((until - now).total_seconds()))
            raise Conflict(
                "a request with this Idempotency-Key is still in progress",
                headers={"retry-after": str(wait)},
            )
        reset = current.set((account_id, key, token))
        try:
            task = asyncio.ensure_future(handler())  # sees `current`
        finally:
            current.reset(reset)
        try:
            # hold the key while the request runs (most finish before the first renewal)
            while not (await asyncio.wait({task}, timeout=self.lease_s / 3))[0]:
                await self.store.idempotency.renew(account_id, key, token, self.lease_s)
            reply = task.result()
        except BaseException:
            if not task.done():
                task.cancel()
            await self.store.idempotency.abort(account_id, key, token)
            raise
        if reply.status_code >= 500:
            await self.store.idempotency.abort(account_id, key, token)
        else:
            await self.store.idempotency.finish(
                account_id, key, token, reply.status_code, reply.headers, reply.body
            )
        return reply
