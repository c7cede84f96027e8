"""Accounts and API keys: creation, verification (cached), revocation.

A key is `gq_` + 32 random URL-safe characters (192 bits). Only its SHA-256 is
stored; verification looks the digest up and compares in constant time. A verified
key is trusted for `key_cache_s` seconds, so the hot path does no SQL for auth.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

from genq.errors import Conflict, InvalidInput, NotFound, Unauthorized
from genq.ids import new_id, token, utcnow
from genq.plans import Plan
from genq.store import Store
from genq.store.records import Account, ApiKey, LedgerEntry

KEY_PREFIX = "gq_"


def _fast_digest(key: str) -> bytes:
    """The key's SHA-256 as bytes: what the in-memory cache of verified keys is keyed
    by (the plaintext key is never kept)."""
    return hashlib.sha256(key.encode()).digest()


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the account and the key used."""

    account: Account
    key: ApiKey


class AccountService:
    def __init__(self, store: Store, plans: Mapping[str, Plan], *, cache_s: float = 30.0) -> None:
        self.store = store
        self.plans = plans
        self.cache_s = cache_s
        self._cache: dict[bytes, tuple[float, Principal]] = {}

    def plan(self, name: str) -> Plan:
        plan = self.plans.get(name)
        if plan is None:
            raise InvalidInput(f"no plan {name!r}; plans: {', '.join(sorted(self.plans))}")
        return plan

    async def create(
        self, name: str | None = None, plan: str = "free", credits: int | None = None
    ) -> Account:
        """A new account, granted `credits` (default: its plan's monthly credits)."""
        name = name or new_id("acct").lower()
        grant = self.plan(plan).monthly_credits if credits is None else credits
        if await self.store.accounts.by_name(name):
            raise Conflict(f"account {name!r} exists")
        account = await self.store.accounts.create(new_id("acct"), name, plan)
        if grant:
            await self.store.ledger.grant(account.id, grant, f"{plan} plan credits")
        return await self.store.accounts.get(account.id) or account

    async def get_or_create(
        self, name: str, plan: str = "free", credits: int | None = None
    ) -> Account:
        found = await self.store.accounts.by_name(name)
        if found is None:
            return await self.create(name, plan, credits)
        if credits:
            await self.store.ledger.grant(found.id, credits, "granted with a new key")
        return found

    async def set_plan(self, name: str, plan: str) -> Account:
        limit = self.plan(plan).concurrent_jobs
        account = await self.by_name(name)
        await self.store.accounts.set_plan(account.id, plan, limit)
        self.forget()
        return await self.by_name(name)

    async def by_name(self, name: str) -> Account:
        account = await self.store.accounts.by_name(name)
        if account is None:
            raise NotFound(f"no account named {name!r}")
        return account

    async def create_key(self, account: Account, name: str | None = None) -> tuple[str, ApiKey]:
        """Returns the plaintext key (shown once) and its stored record."""
        secret = KEY_PREFIX + token(24)
        record = await self.store.accounts.add_key(
            new_id("key"), account.id, secret[:10], digest(secret), name
        )
        return secret, record

    def cached(self, key: str | None) -> Principal | None:
        """The caller, if its key was verified less than `cache_s` ago (no I/O)."""
        if not key or not key.startswith(KEY_PREFIX) or len(key) > 200:
            raise Unauthorized()
        hit = self._cache.get(_fast_digest(key))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    async def authenticate(self, key: str | None) -> Principal:
        found = self.cached(key)
        if found is not None:
            return found
        assert key is not None
        d = digest(key)
        now = time.monotonic()
        row = await self.store.accounts.key_by_hash(d)
        if row is None or not hmac.compare_digest(row[0].hash, d) or row[0].revoked_at:
            self._cache.pop(_fast_digest(key), None)
            raise Unauthorized()
        principal = Principal(account=row[1], key=row[0])
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[_fast_digest(key)] = (now + self.cache_s, principal)
        # last_used_at is recorded at most once per cache period per key
        await self.store.accounts.touch_key(row[0].id, utcnow())
        return principal

    def forget(self) -> None:
        self._cache.clear()

    async def all(self) -> list[Account]:
        return await self.store.accounts.all()

    async def keys(self, account_id: str) -> list[ApiKey]:
        return await self.store.accounts.keys(account_id)

    async def revoke_key(self, prefix: str) -> bool:
        revoked = await self.store.accounts.revoke_key(prefix)
        self.forget()
        return revoked

    async def grant(self, account_id: str, amount: int, note: str) -> int:
        """Add (or remove, negative) credits by hand; the balance after."""
        return await self.store.ledger.grant(account_id, amount, note)

    async def ledger(self, account_id: str, limit: int = 100_000) -> list[LedgerEntry]:
        return await self.store.ledger.entries(account_id, limit=limit)

    async def audit(self) -> list[str]:
        """Ledger problems (`genq doctor`): none when the books balance."""
        return await self.store.ledger.audit()

    async def get(self, account_id: str) -> Account | None:
        return await self.store.accounts.get(account_id)

    async def balance(self, account_id: str) -> int:
        """Credits the account can spend now."""
        return await self.store.ledger.balance(account_id)

    async def job_counts(self, account_id: str) -> dict[str, int]:
        """The account's unfinished jobs by status."""
        return await self.store.jobs.account_counts(account_id)

    async def webhook_secret(self, account_id: str) -> str:
        """The account's webhook signing secret (made on first use)."""
        from genq.webhooks import new_secret

        return await self.store.webhooks.secret(account_id, new_secret())
