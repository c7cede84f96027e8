"""GENQ_DIFFUSERS checked at startup, before anything loads; genq without torch; the
one-job-per-device claim plan; `genq models pull`'s paths that download nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from genq.cli import app
from genq.engines.diffusers import DiffusersConfigError, parse
from genq.engines.diffusers.hosting import claim_batches
from genq.errors import ConfigError
from tests.conftest import GENQ, genq_env

OK = {"task": "text2image", "model": "acme/model", "device": "cuda"}


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"nameless": OK}, "vendor/name"),
        ({"a/b": []}, "expected an object"),
        ({"a/b": {**OK, "task": "paint"}}, "a/b.task: one of text2image"),
        ({"a/b": {**OK, "model": ""}}, "a/b.model"),
        ({"a/b": {**OK, "dtype": "float8"}}, "a/b.dtype"),
        ({"a/b": {**OK, "device": "gpu"}}, "a/b.device"),
        ({"a/b": {**OK, "size": 500}}, "a/b.size: a multiple of 8"),
        ({"a/b": {**OK, "max_side": 32}}, "a/b.max_side: must be between 64"),
        ({"a/b": {**OK, "steps": 0}}, "a/b.steps"),
        ({"a/b": {**OK, "colour": "red"}}, "unknown key 'colour'"),
        ({"a/b": {**OK, "pipeline": "not a class"}}, "a/b.pipeline"),
        ({"a/t": {"task": "train-lora", "base": "a/b"}}, "a/t.base: 'a/b' is not a text2image"),
        ({"a/t": {"task": "train-lora"}}, "a/t.base"),
    ],
)
def test_bad_config_says_what_is_wrong(config: dict[str, Any], says: str) -> None:
    with pytest.raises(DiffusersConfigError) as info:
        parse(config)
    assert says in str(info.value)
    assert isinstance(info.value, ConfigError)  # `genq serve` exits 2 on it


def test_good_config_and_defaults() -> None:
    specs = parse(
        {
            "sd/text2image": {**OK, "steps": 1, "guidance": 0.0, "size": 512},
            "sd/image2image": {**OK, "task": "image2image"},
            "sd/train-lora": {"task": "train-lora", "base": "sd/text2image", "steps": 10},
        }
    )
    t2i, i2i, lora = specs["sd/text2image"], specs["sd/image2image"], specs["sd/train-lora"]
    assert t2i.model.dtype == "float16" and t2i.steps == 1 and t2i.concurrency == 1
    assert t2i.model == i2i.model  # one pool entry: the pipelines share weights
    assert lora.model == t2i.model and lora.resolution == 512 and lora.steps == 10
    assert parse({"c/d": {**OK, "device": "cpu"}})["c/d"].model.dtype == "float32"


def test_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else real(name)
    )
    assert parse({}) == {}
    with pytest.raises(DiffusersConfigError, match=r"pip install 'genq\[diffusers\]'"):
        parse({"a/b": OK})


def test_genq_starts_without_importing_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from genq.core import Genq; from genq.settings import Settings;"
        " import genq.cli;"
        f" Genq(Settings(data_dir={str(tmp_path)!r}));"
        " assert 'torch' not in sys.modules and 'diffusers' not in sys.modules"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=genq_env(tmp_path), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_serve_exits_2_on_a_bad_config(tmp_path: Path) -> None:
    bad = json.dumps({"sd/text2image": {**OK, "dtype": "float8"}})
    done = subprocess.run(
        [*GENQ, "serve"],
        env=genq_env(tmp_path, GENQ_DIFFUSERS=bad),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "GENQ_DIFFUSERS.sd/text2image.dtype" in done.stderr


def test_claim_batches_one_job_per_device() -> None:
    devices = {"sd/a": "diffusers:cuda:0", "sd/b": "diffusers:cuda:0", "x/c": "diffusers:cuda:1"}
    limits = {"sd/a": 1, "sd/b": 1, "x/c": 2, "demo/text2image": 4}
    assert claim_batches(4, limits, devices, running=[]) == [
        (4, {"demo/text2image": 4}),
        (1, {"sd/a": 1, "sd/b": 1}),
        (1, {"x/c": 2}),
    ]
    # cuda:0 busy: its engines wait; cuda:1 still takes one
    assert claim_batches(3, limits, devices, running=["sd/b", "demo/text2image"]) == [
        (3, {"demo/text2image": 4}),
        (1, {"x/c": 2}),
    ]


def test_models_pull_without_downloading(tmp_path: Path) -> None:
    runner = CliRunner()
    config = json.dumps(
        {"local/t2i": {**OK, "model": str(tmp_path)}, "hub/t2i": {**OK, "model": "acme/x"}}
    )
    env = {"GENQ_DIFFUSERS": config, "HF_HUB_OFFLINE": "1"}
    done = runner.invoke(app, ["models", "pull", "local/t2i"], env=env)
    assert done.exit_code == 0 and "local directory" in done.output
    done = runner.invoke(app, ["models", "pull", "hub/t2i"], env=env)
    assert done.exit_code == 1 and "offline" in done.output
    done = runner.invoke(app, ["models", "pull", "nope/t2i"], env=env)
    assert done.exit_code == 2 and "local/t2i" in done.output
