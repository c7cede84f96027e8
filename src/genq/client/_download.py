"""Where downloaded outputs land, and how: the file names an output gets in a
directory, and `FileSink`, which writes beside the destination and renames into
place only once the whole body arrived (never over an existing file unless asked).

File names, for `output.download(dir)` and `client.jobs.download_all(job, dir)`:

- the output's own `filename` when the server gives one, else `<name><ext>`, the
  extension from the URL's path or else the content type (`image_0.png`);
- when the name is only the format (`glb`, `fbx`), the output's kind stands in
  for it: `model.glb`, not `glb.glb`;
- always one harmless path segment (`../x` becomes `_x`), and within one job no two
  outputs get the same name (the later one gets `-2`, `-3`, ...; case-insensitively,
  for case-insensitive file systems).
"""

from __future__ import annotations

import contextlib
import errno
import mimetypes
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import IO

import httpx

from genq.client._types import JobOutput, StrPath

MAX_NAME = 120  # characters of a file name; leaves room for the temporary file's affixes
_UNSAFE = re.compile(r"[^\w.-]+")


def _safe(name: str) -> str:
    """`name` as one path segment: no separators, no leading dots, never empty."""
    return _UNSAFE.sub("_", name).lstrip(".")[:MAX_NAME] or "output"


def _extension(output: JobOutput) -> str:
    suffix = PurePosixPath(httpx.URL(output.url).path).suffix
    if not suffix and output.content_type:
        suffix = mimetypes.guess_extension(output.content_type.split(";")[0].strip()) or ""
    return _UNSAFE.sub("_", suffix)[:16]


def default_filename(output: JobOutput) -> str:
    """The file name `output` gets in a directory (see the module docstring)."""
    given = getattr(output, "filename", None)
    if isinstance(given, str) and given.strip(". "):
        return _safe(given)
    ext = _extension(output)
    stem = output.name
    if ext and stem.lower() == ext[1:].lower():
        stem = output.kind if output.kind not in ("", "other") else "output"
    if ext and stem.lower().endswith(ext.lower()):
        ext = ""
    return _safe(f"{stem}{ext}")


def distinct_filenames(outputs: Sequence[JobOutput]) -> list[str]:
    """`default_filename` of each of a job's outputs, made distinct."""
    names: list[str] = []
    taken: set[str] = set()
    for output in outputs:
        name = default_filename(output)
        stem, dot, ext = name.partition(".")
        n = 1
        while name.casefold() in taken:
            n += 1
            name = f"{stem}-{n}{dot}{ext}"
        taken.add(name.casefold())
        names.append(name)
    return names


def looks_like_dir(path: StrPath) -> bool:
    """A directory: an existing one, one spelled with a trailing slash, or a new path
    without a file extension (`./out`)."""
    target = Path(path)
    return (
        target.is_dir()
        or str(path).endswith(("/", os.sep))
        or (not target.exists() and not target.suffix)
    )


def download_path(output: JobOutput, path: StrPath) -> Path:
    """Where `output.download(path)` saves: its file name inside `path` when that is
    a directory (`looks_like_dir`), else `path` itself."""
    if not looks_like_dir(path):
        return Path(path)
    return Path(path) / (output._filename or default_filename(output))


def refuse_existing(dest: Path) -> None:
    """Raise FileExistsError naming `dest` if something is there."""
    if os.path.lexists(dest):
        raise FileExistsError(
            errno.EEXIST, "file exists (pass overwrite=True to replace it)", str(dest)
        )


class FileSink:
    """Where a download streams to: a temporary file beside `dest` (made with the
    process's umask, like any new file), renamed into place only when the whole body
    arrived, so a failed or interrupted download leaves nothing under `dest`. Without
    `overwrite` an existing `dest` is refused, before and at the rename."""

    def __init__(self, dest: Path, *, overwrite: bool = False) -> None:
        self.dest = dest
        self.overwrite = overwrite
        if not overwrite:
            refuse_existing(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._tmp, self._file = self._create(dest)

    @staticmethod
    def _create(dest: Path) -> tuple[Path, IO[bytes]]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        while True:
            tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
            try:
                fd = os.open(tmp, flags, 0o666)  # the umask decides, as for `open(..., "w")`
            except FileExistsError:
                continue
            return tmp, os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)

    def commit(self) -> Path:
        self._file.close()
        if self.overwrite:
            self._tmp.replace(self.dest)
            return self.dest
        try:
            try:
                os.link(self._tmp, self.dest)  # atomic, and fails if `dest` appeared meanwhile
            except FileExistsError:
                refuse_existing(self.dest)
                raise
            except OSError:  # a file system without hard links
                refuse_existing(self.dest)
                self._tmp.replace(self.dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
        return self.dest

    def discard(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)
