"""demo/train learns a palette that demo/text2image then paints with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from genq.engines.context import run_local
from genq.engines.contract import EngineError
from genq.engines.demo import Text2Image, Train, TrainInput

from .helpers import check_progress, logs, outputs, resolver

RED, BLUE = (200, 30, 40), (30, 40, 210)


def _solid(path: Path, color: tuple[int, int, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(color) + rng.normal(0, 6, (40, 50, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    refs = {
        "file_redredred001": _solid(tmp_path / "r.png", RED, 1),
        "file_blueblue0001": _solid(tmp_path / "b.png", BLUE, 2),
        "file_redredred002": _solid(tmp_path / "r2.png", RED, 3),
    }
    data = {"images": list(refs), "name": "red and blue", "steps": 5, "delay_s": 0}
    records = run_local(Train(), data, tmp_path / "train", resolve_input=resolver(refs))
    steps = check_progress(records, min_steps=8)
    assert "iteration 5 of 5" in (steps[-2].message or "")
    assert any("iteration 1" in line for line in logs(records))
    outs = outputs(records)
    assert outs["weights"].content_type == "application/json"
    assert outs["weights"].kind == "other"
    with Image.open(outs["thumbnail"].path) as im:
        assert im.size == (256, 64)
    return outs["weights"].path


def test_train_palette(trained: Path) -> None:
    doc = json.loads(trained.read_text())
    assert doc["kind"] == "genq-demo-palette" and doc["version"] == 1
    assert doc["name"] == "red and blue"
    assert 5 <= len(doc["palette"]) <= 8
    assert len(doc["weights"]) == len(doc["palette"])
    assert sum(doc["weights"]) == pytest.approx(1.0, abs=1e-3)
    assert doc["weights"] == sorted(doc["weights"], reverse=True)
    palette = np.array(doc["palette"])
    assert np.linalg.norm(palette - RED, axis=1).min() < 20
    assert np.linalg.norm(palette - BLUE, axis=1).min() < 20
    assert palette[:, 1].max() < 70  # no green in red and blue pictures
    assert 0 < doc["brightness"] < 0.5


def test_text2image_paints_with_the_trained_palette(trained: Path, tmp_path: Path) -> None:
    data = {"prompt": "a green forest", "width": 96, "height": 64, "seed": 3, "delay_s": 0}
    data["model_id"] = "model_abcdefghij0123"
    records = run_local(Text2Image(), data, tmp_path / "styled", model=trained)
    with Image.open(outputs(records)["image_0"].path) as im:
        rgb = np.asarray(im, dtype=int).reshape(-1, 3)
    # every colour is a blend of the learned reds and blues: little green anywhere
    assert np.percentile(rgb[:, 1], 95) < 80
    assert (rgb[:, 0] > rgb[:, 2] + 40).mean() > 0.05  # reddish areas
    assert (rgb[:, 2] > rgb[:, 0] + 40).mean() > 0.05  # bluish areas

    del data["model_id"]
    plain = run_local(Text2Image(), data, tmp_path / "plain")
    with Image.open(outputs(plain)["image_0"].path) as im:
        assert np.percentile(np.asarray(im, dtype=int)[..., 1], 95) > 80  # a green forest


def test_text2image_rejects_a_broken_model(tmp_path: Path) -> None:
    bad = tmp_path / "weights.json"
    bad.write_text('{"kind": "something else"}')
    data = {"prompt": "x", "width": 64, "height": 64, "model_id": "model_abcdefghij0123"}
    with pytest.raises(EngineError) as err:
        run_local(Text2Image(), {**data, "delay_s": 0}, tmp_path / "out", model=bad)
    assert err.value.code == "invalid_model"


def test_train_refuses_non_images(tmp_path: Path) -> None:
    src = tmp_path / "x.bin"
    src.write_bytes(b"\x00" * 100)
    ref = "file_abcdefghij0123"
    with pytest.raises(EngineError) as err:
        run_local(
            Train(), {"images": [ref], "delay_s": 0}, tmp_path, resolve_input=resolver({ref: src})
        )
    assert err.value.code == "invalid_input"


@pytest.mark.parametrize(
    "bad",
    [
        {"images": []},
        {"images": ["file_abcdefghij0123"] * 21},
        {"images": ["file_abcdefghij0123"], "steps": 0},
        {"images": ["file_abcdefghij0123"], "steps": 51},
        {"images": ["nope"]},
        {"images": ["file_abcdefghij0123"], "lr": 0.1},
    ],
)
def test_train_invalid(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TrainInput.model_validate(bad)
