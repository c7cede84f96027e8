"""Server secrets SQL: a named key, made by whichever process asks first."""

from __future__ import annotations

from datetime import datetime

from genq.store.db import Cx, Database


def _secret(cx: Cx, name: str, candidate: str, now: datetime) -> str:
    cx.execute(
        "INSERT INTO server_secrets (name, value, created_at) VALUES (%(n)s, %(v)s, %(t)s)"
        " ON CONFLICT (name) DO NOTHING",
        {"n": name, "v": candidate, "t": cx.ts(now)},
    )
    value: str = cx.scalar("SELECT value FROM server_secrets WHERE name = %(n)s", {"n": name})
    return value


class SecretStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_or_create(self, name: str, candidate: str, now: datetime) -> str:
        """The secret `name`: the one stored, else `candidate`, stored now (two
        processes asking at once get the same one)."""
        return await self.db.write(_secret, name, candidate, now)
