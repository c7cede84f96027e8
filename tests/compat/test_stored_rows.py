"""What was stored before the depth checks renders on the faces too (as on /v1): a job
whose metadata is deeper than orjson writes still answers on every face that shows it."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import create_engine, text

from genq.migrate import sync_url
from tests.compat.conftest import FAST, face
from tests.conftest import LiveServer, make_settings, wait_for
from tests.integration.test_hardening import nested


def test_a_row_stored_before_the_checks_still_renders_on_the_faces(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    srv = LiveServer(settings).start()
    try:
        key = srv.new_key()
        with face(srv, key, "useapi", FAST) as ua:
            r = ua.post("/v1/pixverse/create", json={"prompt": "x", "style": "Anime"})
            job_id = r.json()["jobid"]
        with srv.client(key) as api:
            wait_for(api, job_id)
    finally:
        srv.stop()
    deep = nested(300)
    metadata = {"compat": "useapi", "replyRef": deep, "model": deep}
    engine = create_engine(sync_url(settings.db_url))
    try:
        with engine.begin() as conn:
            cast = "CAST(:m AS jsonb)" if engine.dialect.name == "postgresql" else ":m"
            conn.execute(
                text(f"UPDATE jobs SET metadata = {cast} WHERE id = :id"),
                {"m": json.dumps(metadata), "id": job_id},
            )
    finally:
        engine.dispose()
    srv = LiveServer(make_settings(tmp_path / "data", port=settings.port)).start()
    try:
        with face(srv, key, "useapi") as ua:
            r = ua.get("/v1/pixverse/jobs/", params={"jobid": job_id})
            assert r.status_code == 200, r.text
            assert r.json()["replyRef"] == deep and r.json()["status"] == "completed"
        with face(srv, key, "vivix") as vx:  # shows metadata.model
            r = vx.get(f"/api/v1/generations/{job_id}")
            assert r.status_code == 200, r.text
            assert r.json()["model"] == deep
    finally:
        srv.stop()
