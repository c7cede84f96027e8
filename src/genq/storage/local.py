"""The local (or shared, mounted) filesystem as the store: the files are the objects."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from genq.storage.base import ObjectInfo


class LocalBackend:
    """The objects are the local files themselves: nothing to upload or fetch."""

    local = True

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, key: str, path: Path, content_type: str | None, filename: str | None) -> None:
        return None

    def fetch(self, key: str, path: Path) -> bool:  # never called: input_path is the file
        src = self.root / key
        if not src.is_file():
            return False
        shutil.copyfile(src, path)
        return True

    def read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def delete_prefix(self, prefix: str, keep: str | None = None) -> None:
        return None  # the local files are the objects: Storage removes them

    async def head(self, key: str) -> ObjectInfo | None:
        path = self.root / key
        return ObjectInfo(path.stat().st_size, None) if path.is_file() else None

    async def stream(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        # (the routes serve local files with FileResponse; this completes the interface)
        f = await asyncio.to_thread((self.root / key).open, "rb")
        try:
            await asyncio.to_thread(f.seek, start)
            left = end - start
            while left > 0:
                chunk = await asyncio.to_thread(f.read, min(left, 1 << 20))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk
        finally:
            f.close()

    async def sign(self, key: str, ttl_s: int) -> str:
        raise NotImplementedError("local files have no presigned URLs")

    async def ping(self) -> None:
        return None
