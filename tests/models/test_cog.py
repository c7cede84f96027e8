"""Cog models as genq engines (`GENQ_COG`), against real Cog servers from the `cog`
package (`python -m cog.server.http`, coglet, no Docker) serving the small model in
`cog_predictor.py`, and a live genq: the input schema read from `/openapi.json`, a job
end to end (the webhook's progress and log lines as job events, the image and the text
copied into genq's storage), cancel reaching the Cog server, jobs waiting while no
server is up, and a Cog server killed (-9) mid-job: the job goes back to the queue and
ends on the second server of the fleet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.compat.conftest import PNG_MAGIC
from tests.conftest import LiveServer, free_port, make_settings, wait_for
from tests.integration.test_events import collect

pytestmark = pytest.mark.timeout(120)

HERE = Path(__file__).parent
SCHEMA = {
    "openapi": "3.0.2",
    "info": {"title": "Cog", "version": "0.1.0"},
    "paths": {},
    "components": {
        "schemas": {
            "Input": {
                "title": "Input",
                "type": "object",
                "required": ["prompt"],
                "properties": {
                    "prompt": {"title": "Prompt", "type": "string", "x-order": 0},
                    "steps": {
                        "title": "Steps",
                        "type": "integer",
                        "default": 2,
                        "minimum": 1,
                        "maximum": 1000,
                        "x-order": 1,
                    },
                    "step_s": {
                        "title": "Step S",
                        "type": "number",
                        "default": 0.05,
                        "minimum": 0,
                        "maximum": 10,
                        "x-order": 2,
                    },
                },
            },
            "Output": {
                "title": "Output",
                "type": "object",
                "properties": {
                    "image": {"type": "string", "format": "uri"},
                    "text": {"type": "string"},
                },
            },
        }
    },
}


@dataclass
class CogServer:
    """One `python -m cog.server.http` (its own process group: coglet runs the model
    in a child process)."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """kill -9, the whole group (the server and its model process)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def model_dir(root: Path) -> Path:
    """The model as `cog build` leaves it: predict.py and the schema it generated."""
    where = root / "model"
    (where / ".cog").mkdir(parents=True, exist_ok=True)
    (where / "predict.py").write_text((HERE / "cog_predictor.py").read_text())
    (where / ".cog" / "openapi_schema.json").write_text(json.dumps(SCHEMA))
    (root / "marks").mkdir(exist_ok=True)
    return where


def start_cog(root: Path, port: int | None = None, setup_s: float = 0.2) -> CogServer:
    where = model_dir(root)
    port = port or free_port()
    env = dict(os.environ)
    env.update(
        # coglet starts the model's process with the `python` on PATH
        PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
        COG_PREDICT_TYPE_STUB=f"{where / 'predict.py'}:Predictor",
        PORT=str(port),
        COG_TEST_SETUP_S=str(setup_s),
        COG_TEST_MARKS=str(root / "marks"),
        COG_LOG_LEVEL="warn",
    )
    log = root / f"cog-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"],
            cwd=where,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return CogServer(port, proc, log)


def health(server: CogServer) -> str:
    try:
        status: str = httpx.get(f"{server.url}/health-check", timeout=2).json()["status"]
        return status
    except httpx.HTTPError:
        return "DOWN"


def wait_ready(server: CogServer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while health(server) != "READY":
        assert server.proc.poll() is None, server.log.read_text()
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.1)


@dataclass
class Rig:
    genq: LiveServer
    a: CogServer
    b: CogServer
    late_port: int  # where acme/late's server is started by its test
    root: Path

    @property
    def marks(self) -> Path:
        return self.root / "marks"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("cog")
    a, b = start_cog(root), start_cog(root)
    late = free_port()
    cog = {
        "acme/echo": {"url": a.url},
        "acme/fleet": {"urls": [a.url, b.url], "price": 2},
        "acme/late": {"url": f"http://127.0.0.1:{late}"},
    }
    settings = make_settings(
        root / "genq",
        cog=cog,
        upstreams={"cog": {"health_s": 0.2, "lost_after_s": 1.0, "safety_poll_s": 0.5}},
        upstream_tick_s=0.1,
        upstream_lease_s=3,
    )
    srv = LiveServer(settings)
    try:
        wait_ready(a)
        wait_ready(b)
        srv.start()
        yield Rig(srv, a, b, late, root)
    finally:
        srv.stop()
        for s in (a, b):
            s.kill()


def schema_of(api: httpx.Client, engine: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        body: dict[str, Any] = api.get(f"/v1/engines/{engine}").json()
        if "properties" in body["input_schema"]:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def wait_status(api: httpx.Client, job_id: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while api.get(f"/v1/jobs/{job_id}").json()["status"] != status:
        assert time.monotonic() < deadline, api.get(f"/v1/jobs/{job_id}").json()
        time.sleep(0.05)


def test_a_cog_model_end_to_end(rig: Rig) -> None:
    with rig.genq.client(rig.genq.new_key("alice-e2e")) as api:
        engine = schema_of(api, "cog/acme/echo")
        assert engine["upstream"]["provider"] == "cog"
        assert engine["input_schema"] == SCHEMA["components"]["schemas"]["Input"]  # type: ignore[index]
        bad = api.post("/v1/jobs", json={"engine": "cog/acme/echo", "input": {"steps": 0}})
        assert bad.status_code == 422, bad.text

        r = api.post(
            "/v1/jobs",
            json={"engine": "cog/acme/echo", "input": {"prompt": "fox", "steps": 4, "step_s": 0.2}},
        )
        assert r.status_code == 202, r.text
        job = wait_for(api, r.json()["id"])
        assert job["status"] == "succeeded", job["error"]
        outs = {o["name"]: o for o in job["outputs"]}
        assert set(outs) == {"image", "text"}
        assert outs["image"]["kind"] == "image" and outs["image"]["url"].startswith(rig.genq.url)
        assert httpx.get(outs["image"]["url"]).content.startswith(PNG_MAGIC)
        assert httpx.get(outs["text"]["url"]).text == "drew fox in 4 steps"

        events = collect(api, f"/v1/jobs/{job['id']}/events")
        logs = [e["data"]["message"] for e in events if e["event"] == "log"]
        # every line the model printed, once, in order
        assert [line for line in logs if line.startswith("step")] == [
            f"step {i} of fox" for i in range(1, 5)
        ]
        progress = [e["data"]["progress"] for e in events if e["event"] == "progress"]
        assert progress and progress == sorted(progress) and 0 < progress[0] < 100
        assert events[-1]["event"] == "completed"


def test_cancel_reaches_the_cog_server(rig: Rig) -> None:
    with rig.genq.client(rig.genq.new_key("alice-cancel")) as api:
        schema_of(api, "cog/acme/echo")
        r = api.post(
            "/v1/jobs",
            json={"engine": "cog/acme/echo", "input": {"prompt": "owl", "steps": 500}},
        )
        job_id = r.json()["id"]
        deadline = time.monotonic() + 30
        while not list(rig.marks.glob("started-*-owl")):
            assert time.monotonic() < deadline, "the prediction never started"
            time.sleep(0.05)
        assert api.post(f"/v1/jobs/{job_id}/cancel").status_code in (200, 202)
        job = wait_for(api, job_id)
        assert job["status"] == "canceled", job
        assert "canceled at Cog" in job["error"]["message"]
        deadline = time.monotonic() + 30
        while not (rig.marks / "canceled-owl").exists():  # the model was interrupted
            assert time.monotonic() < deadline, "the Cog server never canceled it"
            time.sleep(0.05)
        wait_ready(rig.a)  # (its slot is free again)


def test_jobs_wait_while_no_server_is_up(rig: Rig) -> None:
    with rig.genq.client(rig.genq.new_key("alice-late")) as api:
        r = api.post("/v1/jobs", json={"engine": "cog/acme/late", "input": {"prompt": "elk"}})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        late = start_cog(rig.root, rig.late_port, setup_s=2.0)  # (setup: health STARTING)
        try:
            deadline = time.monotonic() + 30
            while health(late) != "STARTING":
                assert time.monotonic() < deadline, late.log.read_text()
                time.sleep(0.05)
            # nothing there was up, and while it sets up the job still waits, queued
            assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
            job = wait_for(api, job_id, timeout=60)
            assert job["status"] == "succeeded", job["error"]
            events = collect(api, f"/v1/jobs/{job_id}/events")
            statuses = [e["data"]["status"] for e in events if e["event"] == "status"]
            assert statuses[0] == "queued" and "queued" not in statuses[1:]  # one hand-over
        finally:
            late.kill()


def test_a_killed_cog_server_s_job_ends_on_another(rig: Rig) -> None:
    with rig.genq.client(rig.genq.new_key("alice-kill")) as api:
        schema_of(api, "cog/acme/fleet")
        r = api.post(
            "/v1/jobs",
            json={
                "engine": "cog/acme/fleet",
                "input": {"prompt": "yak", "steps": 40, "step_s": 0.1},
            },
        )
        job_id = r.json()["id"]
        deadline = time.monotonic() + 30
        while not (started := list(rig.marks.glob("started-*-yak"))):
            assert time.monotonic() < deadline, "the prediction never started"
            time.sleep(0.05)
        port = int(started[0].name.split("-")[1])
        victim, other = (rig.a, rig.b) if port == rig.a.port else (rig.b, rig.a)
        wait_status(api, job_id, "running")
        victim.kill()

        job = wait_for(api, job_id, timeout=60)
        assert job["status"] == "succeeded", job["error"]
        assert (rig.marks / f"started-{other.port}-yak").exists()
        events = collect(api, f"/v1/jobs/{job_id}/events")
        requeued = [e for e in events if "re-queued" in (e["data"].get("message") or "")]
        assert requeued and "stopped answering" in requeued[0]["data"]["message"]
        image = next(o for o in job["outputs"] if o["name"] == "image")
        assert httpx.get(image["url"]).content.startswith(PNG_MAGIC)
