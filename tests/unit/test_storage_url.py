"""GENQ_STORAGE_URL: what each form selects, and a form genq cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest

from genq.errors import ConfigError
from genq.storage import LocalBackend, backend_for


def test_default_and_file_urls_are_local(tmp_path: Path) -> None:
    root, backend = backend_for("", tmp_path, None)
    assert (root, type(backend)) == (tmp_path, LocalBackend)
    root, backend = backend_for(f"file://{tmp_path / 'objects'}", tmp_path, None)
    assert root == tmp_path / "objects" and backend.local


@pytest.mark.parametrize("url", ["ftp://host/x", "gs://bucket", "bucket/prefix"])
def test_an_unknown_scheme_is_a_config_error(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GENQ_STORAGE_URL must be"):
        backend_for(url, tmp_path, None)


def test_an_s3_url_names_its_bucket(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="names no bucket"):
        backend_for("s3:///prefix", tmp_path, None)
