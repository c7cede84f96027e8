"""Uploaded input files: stored under the data dir, owned by one account."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import mimetypes
import re
from pathlib import Path
from typing import Any, BinaryIO

from genq.errors import NotFound, StorageUnavailable, TooLarge
from genq.ids import iso, new_id
from genq.payloads import check_text
from genq.storage import Storage
from genq.store import Store
from genq.store.records import File

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str | None, content_type: str) -> str:
    base = _SAFE.sub("_", (name or "").rsplit("/", 1)[-1].rsplit("\\", 1)[-1]).strip("._")
    if not base:
        base = "upload" + (mimetypes.guess_extension(content_type) or "")
    return base[:120]


class FileService:
    def __init__(self, *, store: Store, storage: Storage, max_bytes: int) -> None:
        self.store = store
        self.storage = storage
        self.max_bytes = max_bytes

    async def save(
        self,
        account_id: str,
        src: BinaryIO,
        *,
        filename: str | None,
        content_type: str | None,
        model_id: str | None = None,
        purpose: str | None = None,
        file_id: str | None = None,
    ) -> File:
        check_text(purpose, "purpose")
        check_text(content_type, "content_type")
        ctype = (content_type or "").split(";")[0].strip() or (
            mimetypes.guess_type(filename or "")[0] or "application/octet-stream"
        )
        file_id = file_id or new_id("file")  # a caller may announce the id before upload
        name = safe_filename(filename, ctype)
        target = self.storage.upload_path(file_id, name)
        try:
            # Hashing and copying block: off the event loop.
            digest, size = await asyncio.to_thread(self._copy, src, target)
            # to the object store (streamed from the local copy; nothing on local disk)
            await asyncio.to_thread(self.storage.persist_upload, f"{file_id}/{name}", ctype, name)
            return await self.store.files.create(
                {
                    "id": file_id,
                    "account_id": account_id,
                    "filename": name,
                    "content_type": ctype,
                    "bytes": size,
                    "sha256": digest,
                    "path": f"{file_id}/{name}",
                    "purpose": purpose,
                    "model_id": model_id,
                }
            )
        except BaseException:
            # Whatever failed (too large, the database, a cancel), leave no orphan file.
            with contextlib.suppress(StorageUnavailable):
                await asyncio.to_thread(self.storage.delete_upload, file_id)
            raise

    def _copy(self, src: BinaryIO, target: Path) -> tuple[str, int]:
        digest, size = hashlib.sha256(), 0
        with target.open("wb") as out:
            while chunk := src.read(1 << 20):
                size += len(chunk)
                if size > self.max_bytes:
                    raise TooLarge(f"file is larger than {self.max_bytes} bytes")
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest(), size

    async def exists(self, file_id: str) -> bool:
        """Whether a file with this id exists (any account's)."""
        return await self.store.files.get(file_id) is not None

    async def get(self, account_id: str, file_id: str) -> File:
        f = await self.store.files.get(file_id)
        if f is None or f.account_id != account_id:
            raise NotFound(f"no file {file_id!r}")
        return f

    @staticmethod
    def render(f: File) -> dict[str, Any]:
        return {
            "id": f.id,
            "object": "file",
            "filename": f.filename,
            "content_type": f.content_type,
            "bytes": f.bytes,
            "sha256": f.sha256,
            "purpose": f.purpose,
            "model_id": f.model_id,
            "created_at": iso(f.created_at),
        }
