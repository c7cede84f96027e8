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

import contextlib
import logging
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

from genq.errors import ConfigError, StorageUnavailable
from genq.ids import token
from genq.storage.base import Backend, ObjectInfo
from genq.storage.local import LocalBackend

log = logging.getLogger(__name__)
PUT_ATTEMPTS = 3  # an output upload is tried this often before the job fails
PUT_BACKOFF_S = 0.5  # doubled after each failed try

__all__ = ["Backend", "LocalBackend", "ObjectInfo", "Storage", "backend_for", "storage_for"]


def backend_for(url: str | None, data_dir: Path, endpoint: str | None) -> tuple[Path, Backend]:
    """The local root (where engines write) and the backend of `GENQ_STORAGE_URL`."""
    if not url:
        return data_dir, LocalBackend(data_dir.resolve())
    scheme = url.split(":", 1)[0].lower()
    if scheme == "file":
        root = Path(urlsplit(url).path or ".")
        return root, LocalBackend(root.resolve())
    if scheme == "s3":
        from genq.storage.s3 import S3Backend  # obstore loaded only when used

        return data_dir, S3Backend(url, endpoint)
    raise ConfigError(f"GENQ_STORAGE_URL must be file:///path or s3://bucket/prefix, not {url!r}")


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
