"""What a storage backend is: the interface the local and S3 backends implement."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    size: int
    content_type: str | None


class Backend(Protocol):
    """Where bytes end up. Keys are the relative layout (`files/...`, `uploads/...`).
    Methods raise `StorageUnavailable` when the store does not answer."""

    @property
    def local(self) -> bool:
        """The keys are files under the root (FileResponse serves them)."""

    def put(self, key: str, path: Path, content_type: str | None, filename: str | None) -> None:
        """Store the local file at `path` under `key` (streamed)."""

    def fetch(self, key: str, path: Path) -> bool:
        """Write the object to `path` (streamed); False when there is none."""

    def read(self, key: str) -> bytes | None: ...

    def delete_prefix(self, prefix: str, keep: str | None = None) -> None:
        """Delete every object under `prefix` except those under `keep`."""

    async def head(self, key: str) -> ObjectInfo | None: ...

    def stream(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the object."""

    async def sign(self, key: str, ttl_s: int) -> str: ...

    async def ping(self) -> None: ...


def _brief(exc: BaseException) -> str:
    """An obstore error's first line (the rest is a debug dump naming hosts)."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
