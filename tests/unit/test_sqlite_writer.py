"""SQLite's writer thread when its connection cannot be made: the calls waiting fail
with why (before, the thread died and they waited forever), and the next call tries
again."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from genq.ids import new_id
from genq.migrate import upgrade_async
from genq.store import Store


def url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def test_a_file_that_cannot_be_opened_fails_the_calls_and_is_tried_again(
    tmp_path: Path,
) -> None:
    db = tmp_path / "genq.db"
    db.mkdir()  # where the file should be: it cannot be opened
    store = Store(url(db))
    try:
        for _ in range(2):  # each call is told, none waits forever
            try:
                await asyncio.wait_for(store.accounts.create(new_id("acct"), "a", "free"), 10)
            except sqlite3.OperationalError as exc:
                assert "unable to open" in str(exc)
            else:
                raise AssertionError("created in a file that cannot be opened")
        db.rmdir()
        await upgrade_async(url(db))
        acct = await asyncio.wait_for(store.accounts.create(new_id("acct"), "b", "free"), 10)
        assert acct.name == "b"
    finally:
        await store.close()
