"""Fixtures of the model-engine tests: tiny random-weight pipelines written with
`save_pretrained` (built once per session, nothing downloaded) and a genq server whose
GENQ_DIFFUSERS serves them on the CPU."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, make_settings
from tests.models.tiny import build, build_upscaler, build_video

os.environ["HF_HUB_OFFLINE"] = "1"  # a test never downloads
# torch, diffusers and transformers warn about their own deprecations (in the engine's
# thread too: the filters are process-wide); those are not genq's to fix
QUIET = (
    "ignore::DeprecationWarning",
    "ignore::FutureWarning",
    "ignore::UserWarning",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.filterwarnings(*QUIET))


def cpu(model: Path, **extra: Any) -> dict[str, Any]:
    """An engine entry for a tiny model on the CPU."""
    entry = {
        "task": "text2image",
        "model": str(model),
        "device": "cpu",
        "dtype": "float32",
        "size": 32,
        "min_side": 32,
        "max_side": 128,
        "steps": 4,
        "max_steps": 5000,
    }
    return {**entry, **extra}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Model A, a copy of it at another path (a separate pool entry), model B, an x4
    upscaler and a text-to-video model."""
    where = tmp_path_factory.mktemp("models")
    a = build(where / "a", seed=0)
    copy = where / "a-copy"
    shutil.copytree(a, copy)
    b = build(where / "b", seed=1)
    up, video = build_upscaler(where / "up"), build_video(where / "video")
    return {"a": a, "copy": copy, "b": b, "up": up, "video": video}


def _serve(data_dir: Path, config: dict[str, Any], **settings: Any) -> LiveServer:
    return LiveServer(make_settings(data_dir, diffusers=config, hf_offline=True, **settings))


@pytest.fixture(scope="session")
def tiny_server(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    a = tiny_models["a"]
    config = {
        "tiny/text2image": cpu(a),
        "tiny/image2image": cpu(a, task="image2image"),
        "tiny/inpaint": cpu(a, task="inpaint"),
        "tiny/train-lora": {
            "task": "train-lora",
            "base": "tiny/text2image",
            "steps": 3,
            "resolution": 32,
        },
        "warm/text2image": cpu(tiny_models["copy"]),
        "broken/text2image": cpu(a.parent / "no-such-model"),
        "tiny/upscale": cpu(tiny_models["up"], task="upscale", min_side=16, max_side=64),
        "tiny/text2video": cpu(tiny_models["video"], task="text2video", frames=4),
    }
    # the PhotoGPT face's "personal models" train and generate on the tiny model
    routes = {
        "photogpt:models": "tiny/train-lora",
        "photogpt:images/generation": "tiny/text2image",
    }
    server = _serve(tmp_path_factory.mktemp("genq-models"), config, compat_engines=routes)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_api(tiny_server: LiveServer) -> Iterator[httpx.Client]:
    with tiny_server.client(tiny_server.new_key(credits=100_000)) as client:
        yield client


def events(api: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    """A finished job's events, replayed from its SSE stream."""
    out: list[dict[str, Any]] = []
    with api.stream("GET", f"/v1/jobs/{job_id}/events", params={"after": 0}) as r:
        assert r.status_code == 200, r.read()
        event: dict[str, Any] = {}
        for line in r.iter_lines():
            if not line:
                if "data" in event:
                    event["data"] = json.loads(event["data"])
                    out.append(event)
                event = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                event[name] = value
    return out


def logs(api: httpx.Client, job_id: str) -> list[str]:
    return [e["data"]["message"] for e in events(api, job_id) if e["event"] == "log"]
