"""The demo engines honour the engine contract and publish good input schemas."""

from __future__ import annotations

import pytest

from genq.engines.contract import TASKS, Engine, EngineBase
from genq.engines.demo import ENGINES
from genq.engines.registry import describe, load_engines

EXPECTED = {
    "demo/text2image": "text2image",
    "demo/upscale": "upscale",
    "demo/text2video": "text2video",
    "demo/text-to-3d": "text-to-3d",
    "demo/image-to-3d": "image-to-3d",
    "demo/train": "train",
    "demo/noop": "noop",
}


def test_engines_list_one_of_each() -> None:
    assert {e.name: e.task for e in ENGINES} == EXPECTED
    assert len(ENGINES) == len(EXPECTED)


def test_registry_loads_them() -> None:
    found = load_engines(["genq.engines.demo:ENGINES"], entry_points_group=None)
    assert set(found) == set(EXPECTED)


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name)
def test_contract(engine: EngineBase) -> None:
    assert isinstance(engine, Engine)
    assert engine.task in TASKS
    assert engine.description
    assert engine.price >= 1
    assert 1 <= engine.concurrency <= 64
    assert engine.timeout_s >= 60
    assert engine.typical_duration_s > 0
    schema = describe(engine)["input_schema"]  # type: ignore[index]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert "delay_s" in props
    assert props["delay_s"]["minimum"] == 0 and props["delay_s"]["maximum"] == 600
    for name, prop in props.items():
        assert prop.get("description"), f"{engine.name}.{name} lacks a description"


def test_schema_bounds_are_published() -> None:
    by_name = {e.name: e for e in ENGINES}
    t2i = by_name["demo/text2image"].input_model.model_json_schema()["properties"]
    assert t2i["width"]["multipleOf"] == 8
    assert (t2i["width"]["minimum"], t2i["width"]["maximum"]) == (64, 2048)
    assert t2i["num_images"]["maximum"] == 4
    up = by_name["demo/upscale"].input_model.model_json_schema()["properties"]
    assert up["image"]["format"] == "genq-file"
    video = by_name["demo/text2video"].input_model.model_json_schema()["properties"]
    assert video["height"]["multipleOf"] == 16


def test_sync_and_async_engines() -> None:
    import inspect

    kinds = {e.name: inspect.iscoroutinefunction(e.run) for e in ENGINES}
    assert kinds["demo/noop"] is True
    assert kinds["demo/text2image"] is False
