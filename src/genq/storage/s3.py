"""An S3-compatible object store (AWS S3, MinIO, SeaweedFS, R2) through obstore."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from genq.errors import ConfigError, StorageUnavailable
from genq.storage.base import ObjectInfo, _brief

log = logging.getLogger(__name__)


class S3Backend:
    """An S3-compatible bucket (AWS, MinIO, SeaweedFS, R2) through obstore. Credentials
    and region come from the usual AWS_* environment variables."""

    local = False

    def __init__(self, url: str, endpoint: str | None) -> None:
        from obstore.store import S3Store

        parts = urlsplit(url)
        if not parts.netloc:
            raise ConfigError(f"GENQ_STORAGE_URL {url!r} names no bucket")
        prefix = parts.path.strip("/") or None
        self.bucket, self.prefix = parts.netloc, prefix
        options: dict[str, object] = {
            "connect_timeout": "5s",
            "timeout": "600s",  # a whole request, body included (a proxied video)
        }
        if endpoint and endpoint.startswith("http://"):
            options["allow_http"] = True
        where: dict[str, object] = {}
        if endpoint:  # (path-style: what MinIO and SeaweedFS expect)
            where = {"endpoint": endpoint, "virtual_hosted_style_request": False}
        self.store = S3Store(
            parts.netloc,
            prefix=prefix,
            client_options=options,  # type: ignore[arg-type]
            **where,  # type: ignore[arg-type]
            retry_config={
                "max_retries": 2,
                "backoff": {
                    "init_backoff": timedelta(milliseconds=100),
                    "max_backoff": timedelta(seconds=2),
                    "base": 2,
                },
                "retry_timeout": timedelta(seconds=10),
            },
        )

    def put(self, key: str, path: Path, content_type: str | None, filename: str | None) -> None:
        import obstore

        attributes: dict[str, str] = {}
        if content_type:
            attributes["Content-Type"] = content_type
        if filename:
            attributes["Content-Disposition"] = f'attachment; filename="{filename}"'
        try:
            obstore.put(self.store, key, path, attributes=attributes)
        except Exception as exc:
            raise StorageUnavailable(f"could not store {key}: {_brief(exc)}") from exc

    def fetch(self, key: str, path: Path) -> bool:
        import obstore

        tmp = path.with_name(f".{path.name}.part")
        try:
            got = obstore.get(self.store, key)
            with tmp.open("wb") as out:
                for chunk in got.stream(min_chunk_size=1 << 20):
                    out.write(chunk)
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            return False
        except OSError as exc:  # our own disk: not the store's fault
            tmp.unlink(missing_ok=True)
            if exc.__class__.__module__.startswith("obstore"):
                raise StorageUnavailable(f"could not fetch {key}: {_brief(exc)}") from exc
            raise
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise StorageUnavailable(f"could not fetch {key}: {_brief(exc)}") from exc
        tmp.replace(path)
        return True

    def read(self, key: str) -> bytes | None:
        import obstore

        try:
            return bytes(obstore.get(self.store, key).bytes())
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise StorageUnavailable(f"could not read {key}: {_brief(exc)}") from exc

    def delete_prefix(self, prefix: str, keep: str | None = None) -> None:
        import obstore

        try:
            doomed = [
                meta["path"]
                for chunk in obstore.list(self.store, prefix.rstrip("/") + "/")
                for meta in chunk
                if keep is None or not meta["path"].startswith(keep.rstrip("/") + "/")
            ]
            for i in range(0, len(doomed), 1000):
                obstore.delete(self.store, doomed[i : i + 1000])
        except Exception as exc:
            raise StorageUnavailable(f"could not delete {prefix}: {_brief(exc)}") from exc

    async def head(self, key: str) -> ObjectInfo | None:
        import obstore

        try:
            got = await obstore.get_async(self.store, key, options={"head": True})
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise StorageUnavailable(f"could not read {key}: {_brief(exc)}") from exc
        ctype = got.attributes.get("Content-Type")
        return ObjectInfo(got.meta["size"], str(ctype) if ctype else None)

    async def stream(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        import obstore

        try:
            got = await obstore.get_async(self.store, key, options={"range": (start, end)})
            async for chunk in got.stream(min_chunk_size=256 << 10):
                yield bytes(chunk)
        except FileNotFoundError as exc:
            raise StorageUnavailable(f"{key} went away while being read") from exc
        except Exception as exc:
            raise StorageUnavailable(f"could not read {key}: {_brief(exc)}") from exc

    async def sign(self, key: str, ttl_s: int) -> str:
        import obstore

        return await obstore.sign_async(self.store, "GET", key, timedelta(seconds=ttl_s))

    async def ping(self) -> None:
        """One cheap request: a HEAD of a key that need not exist."""
        import obstore

        try:
            await obstore.head_async(self.store, ".genq-ping")
        except FileNotFoundError:
            return
        except Exception as exc:
            raise StorageUnavailable(f"the object store does not answer: {_brief(exc)}") from exc
