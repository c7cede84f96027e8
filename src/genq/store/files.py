"""Uploaded files and trainable models SQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from genq.ids import utcnow
from genq.store import tables as t
from genq.store.db import Database
from genq.store.records import File, Model

F, M = t.files.c, t.models.c


class FileStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, values: dict[str, Any]) -> File:
        values = {"created_at": utcnow(), **values}
        async with self.db.write() as conn:
            await conn.execute(sa.insert(t.files).values(**values))
        return File(**{c.name: values.get(c.name) for c in t.files.c})  # type: ignore[arg-type]

    async def get(self, file_id: str) -> File | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t.files).where(F.id == file_id))).first()
        return File.from_row(row) if row else None

    async def for_model(self, model_id: str) -> list[File]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.files).where(F.model_id == model_id).order_by(F.created_at)
                )
            ).all()
        return [File.from_row(r) for r in rows]


class ModelStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, values: dict[str, Any]) -> Model:
        now = utcnow()
        values = {"created_at": now, "updated_at": now, "metadata": {}, **values}
        async with self.db.write() as conn:
            await conn.execute(sa.insert(t.models).values(**values))
        return Model(**{c.name: values.get(c.name) for c in t.models.c})  # type: ignore[arg-type]

    async def get(self, model_id: str) -> Model | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t.models).where(M.id == model_id))).first()
        return Model.from_row(row) if row else None

    async def for_account(self, account_id: str, limit: int = 100) -> list[Model]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.models)
                    .where(M.account_id == account_id)
                    .order_by(M.created_at.desc())
                    .limit(limit)
                )
            ).all()
        return [Model.from_row(r) for r in rows]

    async def update(
        self, model_id: str, *, only_if_status: tuple[str, ...] = (), **values: Any
    ) -> Model | None:
        stmt = sa.update(t.models).where(M.id == model_id)
        if only_if_status:
            stmt = stmt.where(M.status.in_(only_if_status))
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    stmt.values(**values, updated_at=utcnow()).returning(*t.models.c)
                )
            ).first()
        return Model.from_row(row) if row else None
