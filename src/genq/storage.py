"""Output and upload bytes on a local (or shared, mounted) filesystem.

Outputs live at `files/<job id>/<token>/<name>.<ext>`: the random token makes the
public URL `/files/<job id>/<token>/<file>` unguessable, and a re-run of a job
writes under a new token, so a lost attempt's files never mix with the new ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from genq.ids import token


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.files = self.root / "files"
        self.uploads = self.root / "uploads"

    def new_output_dir(self, job_id: str) -> Path:
        """Where an attempt's outputs go (made when the first one is saved)."""
        return self.files / job_id / token(16)

    def relative(self, path: Path) -> str:
        """The part of an output's path that goes into its public URL."""
        return path.resolve().relative_to(self.files).as_posix()

    def public_file(self, rel: str) -> Path | None:
        """The file behind a public URL path, or None (also for any escape attempt)."""
        parts = rel.split("/")
        if len(parts) != 3 or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            return None
        path = self.files.joinpath(*parts)
        try:
            path.resolve().relative_to(self.files)
        except ValueError:
            return None
        return path if path.is_file() else None

    def output_path(self, rel: str) -> Path:
        return self.files / rel

    def delete_job(self, job_id: str, keep: Path | None = None) -> None:
        """Remove a job's output files (all attempts but `keep`)."""
        base = self.files / job_id
        if not base.is_dir():
            return
        for child in base.iterdir():
            if keep is None or child.resolve() != keep.resolve():
                shutil.rmtree(child, ignore_errors=True)
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)

    def upload_path(self, file_id: str, filename: str) -> Path:
        path = self.uploads / file_id / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
