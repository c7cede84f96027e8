"""One job, one id: a job made on one face reads the same on the others and on /v1,
and a canceled job reads as each face's word for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genq.api import create_app
from genq.settings import Settings
from tests.compat.conftest import FAST, SLOW, face, job_of, poll
from tests.conftest import LiveServer


def read_all(server: LiveServer, key: str, job_id: str) -> dict[str, dict[str, Any]]:
    with (
        face(server, key, "masterpiecex") as mpx,
        face(server, key, "useapi") as ua,
        face(server, key, "photogpt") as pg,
        face(server, key, "vivix") as vx,
    ):
        return {
            "masterpiecex": mpx.get(f"/status/{job_id}").json(),
            "useapi": ua.get("/v1/pixverse/jobs/", params={"jobid": job_id}).json(),
            "photogpt": pg.get(f"/jobs/{job_id}").json()["result"],
            "vivix": vx.get(f"/api/v1/generations/{job_id}").json(),
        }


def test_a_job_reads_the_same_everywhere(server: LiveServer, key: str) -> None:
    with face(server, key, "photogpt", FAST) as pg:
        job_id = pg.post("/images/generation", json={"prompt": "a kite"}).json()["result"]["jobId"]
        poll(lambda: pg.get(f"/jobs/{job_id}").json()["result"], lambda j: j["status"] == "success")
    with server.client(key) as api:
        canonical = api.get(f"/v1/jobs/{job_id}").json()
    url = canonical["outputs"][0]["url"]
    views = read_all(server, key, job_id)
    assert views["masterpiecex"]["outputs"] == [url]
    assert views["useapi"]["attachments"][0]["url"] == url
    assert views["photogpt"]["images"][0]["url"] == url
    assert views["vivix"]["output_url"] == url
    ids = {
        views["masterpiecex"]["requestId"],
        views["useapi"]["jobid"],
        views["photogpt"]["jobId"],
        job_of(views["vivix"]["generation_id"]),
        canonical["id"],
    }
    assert ids == {job_id}


def test_a_canceled_job_in_each_vocabulary(server: LiveServer, key: str) -> None:
    with face(server, key, "vivix", SLOW) as vx:
        r = vx.post("/api/v1/generate", json={"model": "grok-imagine-image", "prompt": "x"})
        job_id = job_of(r.json()["generation_id"])
    with server.client(key) as api:
        assert api.post(f"/v1/jobs/{job_id}/cancel").status_code in (200, 202)
        poll(lambda: api.get(f"/v1/jobs/{job_id}").json(), lambda j: j["status"] == "canceled")
    views = read_all(server, key, job_id)
    assert views["masterpiecex"]["status"] == "failed"
    assert views["useapi"]["status"] == "cancelled"
    assert views["photogpt"]["status"] == "failed" and views["photogpt"]["error"]
    assert views["vivix"]["status"] == "failed" and views["vivix"]["error"] == "CANCELLED"
    assert views["vivix"]["credits_used"] == 0


def test_openapi_lists_every_face_endpoint(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    paths = set(app.openapi()["paths"])  # warnings (duplicate operation ids) are errors
    for path in (
        "/compat/masterpiecex/functions/general",
        "/compat/masterpiecex/status/{request_id}",
        "/compat/masterpiecex/assets/{asset_id}/content",
        "/compat/useapi/v1/pixverse/create_single",
        "/compat/useapi/v1/pixverse/jobs/",
        "/compat/photogpt/jobs/{job_id}",
        "/compat/photogpt/models/{model_id}/train",
        "/compat/vivix/api/v1/generate",
        "/compat/vivix/api/v1/generations/{generation_id}",
    ):
        assert path in paths
