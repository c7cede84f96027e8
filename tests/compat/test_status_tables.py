"""Each face's status table (DESIGN.md section 4) for every canonical state, on
canonical job dicts alone (no server)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import orjson
import pytest

from genq.api.compat import masterpiecex, photogpt, useapi, vivix
from genq.errors import Expired
from genq.store.records import NON_TERMINAL, TERMINAL

FACES = (masterpiecex, useapi, photogpt, vivix)
# DESIGN.md section 4, column by column; an int is the HTTP status of the answer
TABLE: dict[str, tuple[str | int, str | int, str | int, str | int]] = {
    "queued": ("pending", "created", "queued", "pending"),
    "starting": ("dispatching", "started", "running", "processing"),
    "running": ("processing", "progress", "running", "processing"),
    "succeeded": ("complete", "completed", "success", "completed"),
    "failed": ("failed", "failed", "failed", "failed"),
    "canceled": ("failed", "cancelled", "failed", "failed"),
    "expired": (404, 410, 404, 404),
}
T0 = "2026-11-22T10:00:00.000Z"


def canonical(
    status: str, *, code: str = "engine_error", engine: str = "demo/text-to-3d", **extra: Any
) -> dict[str, Any]:
    """A canonical job dict in `status` (DESIGN.md section 2)."""
    started = status not in ("queued",)
    ended = status in TERMINAL
    base = "http://genq.test/files/job_01TEST/tok"
    outs = {
        "demo/text-to-3d": [
            ("glb", "model", "model/gltf-binary"),
            ("usdz", "model", "model/vnd.usdz+zip"),
            ("fbx", "model", "application/vnd.autodesk.fbx"),
            ("thumbnail", "thumbnail", "image/png"),
        ],
        "demo/text2image": [("image_0", "image", "image/png"), ("image_1", "image", "image/png")],
        "demo/text2video": [
            ("video", "video", "video/mp4"),
            ("thumbnail", "thumbnail", "image/png"),
        ],
    }[engine]
    job: dict[str, Any] = {
        "id": "job_01TEST",
        "object": "job",
        "engine": engine,
        "task": "x",
        "status": status,
        "progress": 100.0 if status == "succeeded" else 42.0,
        "message": "step 5 of 12",
        "queue_position": 0 if status == "queued" else None,
        "eta_s": None,
        "input": {"prompt": "a red fox", "seed": 7},
        "outputs": [
            {
                "name": n,
                "kind": k,
                "url": f"{base}/{n}",
                "content_type": c,
                "bytes": 10,
                "width": 320,
                "height": 192,
                "sha256": "0" * 64,
            }
            for n, k, c in outs
        ]
        if status == "succeeded"
        else [],
        "error": (
            {
                "code": "canceled" if status == "canceled" else code,
                "message": "it went wrong",
                "retryable": False,
            }
            if status in ("failed", "canceled")
            else None
        ),
        "credits": {
            "estimate": 10,
            "used": 10 if status == "succeeded" else 0,
            "refunded": 10 if status in ("failed", "canceled") else 0,
        },
        "parent_id": None,
        "model_id": None,
        "metadata": {},
        "created_at": T0,
        "started_at": "2026-11-22T10:00:01.000Z" if started else None,
        "completed_at": "2026-11-22T10:00:05.500Z" if ended else None,
        "expires_at": "2026-12-22T10:00:00.000Z",
        "processing_time_s": 4.5 if ended else None,
        "urls": {},
    }
    job.update(extra)
    return job


def test_the_table_covers_every_canonical_state() -> None:
    assert set(TABLE) == set(NON_TERMINAL + TERMINAL)
    for module in FACES:
        assert set(module.STATUS) | {"expired"} == set(NON_TERMINAL + TERMINAL), module


@pytest.mark.parametrize("state", list(TABLE))
@pytest.mark.parametrize("column", range(len(FACES)))
def test_status_word_or_error_for_every_state(state: str, column: int) -> None:
    module: ModuleType = FACES[column]
    want = TABLE[state][column]
    job = canonical(state)
    if isinstance(want, int):
        with pytest.raises(Expired) as caught:
            module.render(job)
        response = module.error_response(caught.value)
        assert response.status_code == want
        body = orjson.loads(response.body)
        if module is useapi:
            assert body == {"error": "Job has expired", "code": 410}
        if module is vivix:
            assert body["error"] == "NOT_FOUND"
        return
    assert module.STATUS[state] == want
    body = module.render(job)
    word = body["status"]
    assert word == want


def test_useapi_moderated_when_the_error_code_is_moderated() -> None:
    assert useapi.render(canonical("failed", code="moderated"))["status"] == "moderated"
    assert useapi.render(canonical("failed", code="engine_error"))["status"] == "failed"
    assert useapi.render(canonical("canceled"))["status"] == "cancelled"


def test_masterpiecex_fields_by_state() -> None:
    for state in ("queued", "starting", "running", "failed", "canceled"):
        assert set(masterpiecex.render(canonical(state))) == {"requestId", "status", "progress"}
    done = masterpiecex.render(canonical("succeeded"))
    assert set(done) == {
        "requestId",
        "status",
        "progress",
        "processingTime_s",
        "outputUrl",
        "outputs",
    }
    assert set(done["outputs"]) == {"fbx", "glb", "usdz", "thumbnail"}
    assert done["outputUrl"] == done["outputs"]["glb"]
    images = masterpiecex.render(canonical("succeeded", engine="demo/text2image"))
    assert images["outputs"] == [images["outputUrl"], images["outputUrl"][:-1] + "1"]


def test_vivix_fields_by_state() -> None:
    pending = {"generation_id", "status", "model", "credits_estimate", "elapsed_ms", "created_at"}
    completed = {
        "generation_id",
        "status",
        "model",
        "output_url",
        "output_urls",
        "credits_used",
        "duration_ms",
        "created_at",
        "completed_at",
    }
    failed = {
        "generation_id",
        "status",
        "error",
        "message",
        "credits_used",
        "created_at",
        "completed_at",
    }
    for state in NON_TERMINAL:
        assert set(vivix.render(canonical(state))) == pending
    done = vivix.render(canonical("succeeded", engine="demo/text2image"))
    assert set(done) == completed
    assert done["duration_ms"] == 5500 and done["completed_at"] == "2026-11-22T10:00:05Z"
    assert done["created_at"] == "2026-11-22T10:00:00Z"
    for state in ("failed", "canceled"):
        body = vivix.render(canonical(state))
        assert set(body) == failed and body["credits_used"] == 0
    assert vivix.render(canonical("failed"))["error"] == "PROVIDER_ERROR"
    assert vivix.render(canonical("canceled"))["error"] == "CANCELLED"
    assert vivix.render(canonical("failed", code="moderated"))["error"] == "CONTENT_MODERATED"


def test_photogpt_payload_by_state() -> None:
    keys = {"jobId", "status", "images", "videos", "error", "modelId", "createdAt"}
    for state in ("queued", "starting", "running", "succeeded", "failed", "canceled"):
        body = photogpt.render(canonical(state, engine="demo/text2video"))
        assert set(body) == keys
        assert (body["error"] is not None) == (state in ("failed", "canceled"))
    done = photogpt.render(canonical("succeeded", engine="demo/text2video"))
    assert done["videos"] == [
        {"id": "job_01TEST/video", "url": "http://genq.test/files/job_01TEST/tok/video"}
    ]
    assert done["images"] == []


def test_useapi_fields_by_state() -> None:
    running = useapi.render(canonical("running"))
    assert running["content"].endswith("42% step 5 of 12")
    assert "attachments" not in running and "buttons" not in running
    done = useapi.render(canonical("succeeded", engine="demo/text2video"))
    [video] = done["attachments"]
    assert video["content_type"] == "video/mp4" and video["size"] == 10
    assert done["buttons"][:4] == ["U1", "U2", "U3", "U4"]
    assert done["updated"] == "2026-11-22T10:00:05.500Z"
    failed = useapi.render(canonical("failed"))
    assert failed["error"] == "it went wrong" and failed["errorDetails"] == "engine_error"
    assert useapi.WEBHOOK_FORMAT(canonical("expired"))["code"] == 410
