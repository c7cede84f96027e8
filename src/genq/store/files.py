"""Uploaded files and trainable models SQL."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from genq.ids import utcnow
from genq.store.db import Cx, Database, autocommit
from genq.store.records import File, Model
from genq.store.steps import value

F_COLS, M_COLS = File.select(), Model.select()


def _insert(cx: Cx, table: str, values: Mapping[str, Any], returning: str) -> Any:
    names = ", ".join(f'"{k}"' for k in values)
    marks = ", ".join(f"%({k})s" for k in values)
    params = {k: value(cx, v) for k, v in values.items()}
    return cx.one(f"INSERT INTO {table} ({names}) VALUES ({marks}) RETURNING {returning}", params)


@autocommit
def _create_file(cx: Cx, values: dict[str, Any]) -> File:
    return File.of(_insert(cx, "files", values, F_COLS))


def _get_file(cx: Cx, file_id: str) -> File | None:
    row = cx.one(f"SELECT {F_COLS} FROM files WHERE id = %(id)s", {"id": file_id})
    return File.of(row) if row else None


def _files_for_model(cx: Cx, model_id: str) -> list[File]:
    rows = cx.all(
        f"SELECT {F_COLS} FROM files WHERE model_id = %(m)s ORDER BY created_at", {"m": model_id}
    )
    return [File.of(r) for r in rows]


class FileStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, values: dict[str, Any]) -> File:
        return await self.db.write(_create_file, {"created_at": utcnow(), **values})

    async def get(self, file_id: str) -> File | None:
        return await self.db.read(_get_file, file_id)

    async def for_model(self, model_id: str) -> list[File]:
        return await self.db.read(_files_for_model, model_id)


@autocommit
def _create_model(cx: Cx, values: dict[str, Any]) -> Model:
    return Model.of(_insert(cx, "models", values, M_COLS))


def _get_model(cx: Cx, model_id: str) -> Model | None:
    row = cx.one(f"SELECT {M_COLS} FROM models WHERE id = %(id)s", {"id": model_id})
    return Model.of(row) if row else None


def _models_for_account(cx: Cx, account_id: str, limit: int) -> list[Model]:
    rows = cx.all(
        f"SELECT {M_COLS} FROM models WHERE account_id = %(a)s"
        " ORDER BY created_at DESC LIMIT %(n)s",
        {"a": account_id, "n": limit},
    )
    return [Model.of(r) for r in rows]


@autocommit
def update_model(
    cx: Cx, model_id: str, only_if_status: tuple[str, ...], values: dict[str, Any], now: datetime
) -> Model | None:
    p: dict[str, Any] = {"id": model_id, "updated_at": cx.ts(now)}
    parts = ['"updated_at" = %(updated_at)s']
    for k, v in values.items():
        p[f"v_{k}"] = value(cx, v)
        parts.append(f'"{k}" = %(v_{k})s')
    where = "id = %(id)s"
    if only_if_status:
        where += f" AND status {cx.in_list('only')}"
        p["only"] = cx.array(only_if_status)
    row = cx.one(f"UPDATE models SET {', '.join(parts)} WHERE {where} RETURNING {M_COLS}", p)
    return Model.of(row) if row else None


class ModelStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, values: dict[str, Any]) -> Model:
        now = utcnow()
        return await self.db.write(
            _create_model, {"created_at": now, "updated_at": now, "metadata": {}, **values}
        )

    async def get(self, model_id: str) -> Model | None:
        return await self.db.read(_get_model, model_id)

    async def for_account(self, account_id: str, limit: int = 100) -> list[Model]:
        return await self.db.read(_models_for_account, account_id, limit)

    async def update(
        self, model_id: str, *, only_if_status: tuple[str, ...] = (), **values: Any
    ) -> Model | None:
        return await self.db.write(update_model, model_id, only_if_status, values, utcnow())
