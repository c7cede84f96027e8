"""Output and upload bytes: on a local (or shared, mounted) filesystem, or in an
S3-compatible object store (`GENQ_STORAGE_URL=s3://bucket/prefix`).

Outputs live at `files/<job id>/<token>/<name>.<ext>`: the random token makes the
public URL `/files/<job id>/<token>/<file>` unguessable, and a re-run of a job
writes under a new token, so a lost attempt's files never mix with the new ones.
Uploads live at `uploads/<file id>/<filename>`. The same relative layout is the
object key under the bucket's prefix, so the database never names the backend.

Engines always write to a local directory with that layout (under the data dir). With
the local backend that is where the bytes stay; with an object store the worker
uploads each output (`persist`) before its row is recorded and drops the local copy,
and fetches the inputs an engine reads into a per-job scratch dir (`input_path`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from genq.errors import StorageUnavailable
from genq.ids import token

log = logging.getLogger(__name__)
PUT_ATTEMPTS = 3  # an output upload is tried this often before the job fails
PUT_BACKOFF_S = 0.5  # doubled after each failed try


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


class S3Backend:
    """An S3-compatible bucket (AWS, MinIO, SeaweedFS, R2) through obstore. Credentials
    and region come from the usual AWS_* environment variables."""

    local = False

    def __init__(self, url: str, endpoint: str | None) -> None:
        from obstore.store import S3Store

        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError(f"GENQ_STORAGE_URL {url!r} names no bucket")
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


def _brief(exc: BaseException) -> str:
    """An obstore error's first line (the rest is a debug dump naming hosts)."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def backend_for(url: str | None, data_dir: Path, endpoint: str | None) -> tuple[Path, Backend]:
    """The local root (where engines write) and the backend of `GENQ_STORAGE_URL`."""
    if not url:
        return data_dir, LocalBackend(data_dir.resolve())
    scheme = url.split(":", 1)[0].lower()
    if scheme == "file":
        root = Path(urlsplit(url).path or ".")
        return root, LocalBackend(root.resolve())
    if scheme == "s3":
        return data_dir, S3Backend(url, endpoint)
    raise ValueError(f"GENQ_STORAGE_URL must be file:///path or s3://bucket/prefix, not {url!r}")


class Storage:
    def __init__(self, root: Path, backend: Backend | None = None) -> None:
        self.root = root.resolve()
        self.files = self.root / "files"
        self.uploads = self.root / "uploads"
        self.scratch = self.root / "scratch"
        self.backend: Backend = backend or LocalBackend(self.root)

    @property
    def local(self) -> bool:
        return self.backend.local

    def new_output_dir(self, job_id: str) -> Path:
        """Where an attempt's outputs go (made when the first one is saved)."""
        return self.files / job_id / token(16)

    def relative(self, path: Path) -> str:
        """The part of an output's path that goes into its public URL."""
        return path.resolve().relative_to(self.files).as_posix()

    @staticmethod
    def public_key(rel: str) -> str | None:
        """The key behind a public URL path, or None (also for any escape attempt)."""
        parts = rel.split("/")
        if len(parts) != 3 or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            return None
        return "files/" + rel

    def public_file(self, rel: str) -> Path | None:
        """The local file behind a public URL path (local backend only), or None."""
        key = self.public_key(rel)
        if key is None or not self.local:
            return None
        path = self.root / key
        try:
            path.resolve().relative_to(self.files)
        except ValueError:
            return None
        return path if path.is_file() else None

    def local_file(self, key: str) -> Path | None:
        path = self.root / key
        return path if path.is_file() else None

    def read(self, key: str) -> bytes | None:
        """An object's bytes (for the compat faces' data: URIs; small files)."""
        return self.backend.read(key)

    def output_path(self, rel: str) -> Path:
        return self.files / rel

    # -- the worker's side ------------------------------------------------------------

    def persist_output(self, rel: str, content_type: str | None) -> None:
        """Store an output the engine wrote locally: tried PUT_ATTEMPTS times. The
        local copy stays until the run ends (the engine may still read it: a video's
        thumbnail); `drop_scratch` removes it. Raises StorageUnavailable."""
        if not self.local:
            self._put("files/" + rel, self.files / rel, content_type, None)

    def persist_upload(self, rel: str, content_type: str | None, filename: str) -> None:
        if self.local:
            return
        path = self.uploads / rel
        self._put("uploads/" + rel, path, content_type, filename)
        shutil.rmtree(path.parent, ignore_errors=True)

    def _put(self, key: str, path: Path, content_type: str | None, filename: str | None) -> None:
        delay = PUT_BACKOFF_S
        for attempt in range(1, PUT_ATTEMPTS + 1):
            try:
                self.backend.put(key, path, content_type, filename)
                return
            except StorageUnavailable:
                if attempt == PUT_ATTEMPTS:
                    raise
                log.warning("storing %s failed (try %d); retrying", key, attempt, exc_info=True)
                time.sleep(delay)
                delay *= 2

    def input_path(self, key: str, job_id: str) -> Path | None:
        """A local path of the object at `key` for an engine to read: the file itself,
        or a copy fetched into the job's scratch dir. None when there is no such object."""
        if self.local:
            return self.root / key
        path = self.scratch / job_id / key
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        return path if self.backend.fetch(key, path) else None

    def drop_scratch(self, job_id: str, out_dir: Path | None = None) -> None:
        """With an object store, remove a run's local copies: the inputs fetched for
        it and its outputs directory (stored, or not to be recorded)."""
        if self.local:
            return
        shutil.rmtree(self.scratch / job_id, ignore_errors=True)
        if out_dir is not None:
            shutil.rmtree(out_dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                out_dir.parent.rmdir()  # files/<job id>, when no other attempt is there

    # -- deletes ------------------------------------------------------------------------

    def delete_job(self, job_id: str, keep: Path | None = None) -> None:
        """Remove a job's output files (all attempts but `keep`)."""
        if not self.local:
            kept = f"files/{job_id}/{keep.name}" if keep is not None else None
            self.backend.delete_prefix(f"files/{job_id}", kept)
        base = self.files / job_id  # local files, or (object store) scratch leftovers
        if not base.is_dir():
            return
        for child in base.iterdir():
            if keep is None or child.resolve() != keep.resolve():
                shutil.rmtree(child, ignore_errors=True)
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)

    def delete_upload(self, file_id: str) -> None:
        if not self.local:
            self.backend.delete_prefix(f"uploads/{file_id}")
        shutil.rmtree(self.uploads / file_id, ignore_errors=True)

    def upload_path(self, file_id: str, filename: str) -> Path:
        path = self.uploads / file_id / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def storage_for(url: str | None, data_dir: Path, endpoint: str | None) -> Storage:
    root, backend = backend_for(url, data_dir, endpoint)
    return Storage(root, backend)


__all__ = ["Backend", "LocalBackend", "ObjectInfo", "S3Backend", "Storage", "storage_for"]
