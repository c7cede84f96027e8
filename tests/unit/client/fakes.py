"""A tiny in-memory stand-in for a genq server's HTTP routes, for `httpx.MockTransport`.

Each job follows a script of states and moves one step on every `GET /v1/jobs/{id}`,
so a waiting client sees it progress. `fail_next` queues canned error responses.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

API_KEY = "gq_test"
BASE_URL = "http://genq.test"
OUTPUT_BYTES = b"\x89PNG fake image bytes" * 100

State = tuple[str, float, str | None]
SCRIPTS: dict[str, list[State]] = {
    "demo/text2image": [
        ("queued", 0.0, None),
        ("running", 25.0, "step 1 of 4"),
        ("running", 25.0, "step 1 of 4"),  # unchanged: no on_progress call
        ("running", 75.0, "step 3 of 4"),
        ("succeeded", 100.0, None),
    ],
    "demo/fail": [("queued", 0.0, None), ("running", 50.0, "halfway"), ("failed", 50.0, None)],
    "demo/static": [("running", 10.0, "stuck")],
    "demo/text-to-3d": [
        ("queued", 0.0, None),
        ("running", 50.0, "glb"),
        ("succeeded", 100.0, None),
    ],
}


def model3d_outputs(job_id: str) -> list[dict[str, Any]]:
    """What genq's demo/text-to-3d makes: outputs named by their format."""
    made = [("glb", "model", "model/gltf-binary", ".glb"), ("usdz", "model", None, ".usdz")]
    made += [("fbx", "model", "application/vnd.autodesk.fbx", ".fbx")]
    made += [("thumbnail", "thumbnail", "image/png", ".png")]
    return [
        {"name": name, "kind": kind, "url": f"/files/{job_id}/t/{name}{ext}", "content_type": ct}
        for name, kind, ct, ext in made
    ]


@dataclass
class FakeJob:
    id: str
    engine: str
    input: dict[str, Any]
    metadata: dict[str, Any]
    created_at: str
    script: list[State]
    step: int = 0
    canceled: bool = False

    @property
    def status(self) -> str:
        return "canceled" if self.canceled else self.script[self.step][0]

    def advance(self) -> None:
        if not self.canceled:
            self.step = min(self.step + 1, len(self.script) - 1)

    def body(self) -> dict[str, Any]:
        status, progress, message = self.script[self.step]
        error = None
        if self.canceled:
            status, error = (
                "canceled",
                {"code": "canceled", "message": "canceled by the user", "retryable": False},
            )
        elif status == "failed":
            error = {"code": "engine_error", "message": "the engine crashed", "retryable": True}
        outputs = []
        if status == "succeeded" and self.engine == "demo/text-to-3d":
            outputs = model3d_outputs(self.id)
        elif status == "succeeded":
            outputs = [
                {
                    "name": "image_0",
                    "kind": "image",
                    "url": f"{BASE_URL}/files/{self.id}/t/image_0.png",
                    "content_type": "image/png",
                    "bytes": len(OUTPUT_BYTES),
                    "width": 512,
                    "height": 512,
                    "sha256": hashlib.sha256(OUTPUT_BYTES).hexdigest(),
                },
                {
                    "name": "thumbnail",
                    "kind": "thumbnail",
                    "url": f"/files/{self.id}/t/thumbnail.webp",
                    "content_type": "image/webp",
                    "bytes": len(OUTPUT_BYTES),
                    "sha256": "x",
                    "future_field": 1,
                },
            ]
        terminal = status in ("succeeded", "failed", "canceled", "expired")
        return {
            "id": self.id,
            "object": "job",
            "engine": self.engine,
            "task": "text2image",
            "status": status,
            "progress": progress,
            "message": message,
            "queue_position": 1 if status == "queued" else None,
            "eta_s": None if terminal else 3.0,
            "input": self.input,
            "outputs": outputs,
            "error": error,
            "credits": {"estimate": 20, "used": 20 if status == "succeeded" else 0, "refunded": 0},
            "parent_id": None,
            "model_id": None,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "started_at": None,
            "completed_at": "2026-11-22T10:00:05.000Z" if terminal else None,
            "expires_at": "2026-11-29T10:00:00.000Z",
            "processing_time_s": None,
            "urls": {"self": f"{BASE_URL}/v1/jobs/{self.id}"},
            "a_new_server_field": {"x": 1},
        }


def problem(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    body = {
        "type": f"https://genq.dev/problems/{code}",
        "title": code.replace("_", " "),
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return httpx.Response(
        status, json=body, headers={"content-type": "application/problem+json", **(headers or {})}
    )


@dataclass
class FakeServer:
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    canned: list[httpx.Response | Exception] = field(default_factory=list)
    retry_after: str | None = "1"
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)

    def fail_next(self, *responses: httpx.Response | Exception) -> None:
        """Answer the next requests with these (a transport error is raised)."""
        self.canned.extend(responses)

    def add_job(self, engine: str = "demo/text2image", **kw: Any) -> FakeJob:
        n = len(self.jobs) + 1
        job = FakeJob(
            id=f"job_{n:04d}",
            engine=engine,
            input=kw.get("input", {}),
            metadata=kw.get("metadata", {}),
            created_at=f"2026-11-22T10:{n // 60:02d}:{n % 60:02d}.000Z",
            script=list(SCRIPTS[engine]),
        )
        self.jobs[job.id] = job
        return job

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]

    # -- the transport handler -----------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.canned:
            canned = self.canned.pop(0)
            if isinstance(canned, Exception):
                raise canned
            return canned
        path = request.url.path
        if path.startswith("/files/"):
            return httpx.Response(200, content=OUTPUT_BYTES, headers={"content-type": "image/png"})
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return problem(401, "unauthorized", "A valid API key is required")
        for pattern, method, handler in self._routes():
            m = re.fullmatch(pattern, path)
            if m and request.method == method:
                return handler(request, *m.groups())
        return problem(404, "not_found", f"no route {request.method} {path}")

    def _routes(self) -> list[tuple[str, str, Any]]:
        return [
            (r"/v1/jobs", "POST", self.create_job),
            (r"/v1/jobs", "GET", self.list_jobs),
            (r"/v1/jobs/([^/]+)", "GET", self.get_job),
            (r"/v1/jobs/([^/]+)/cancel", "POST", self.cancel_job),
            (r"/v1/engines", "GET", self.list_engines),
            (r"/v1/engines/(.+)", "GET", self.get_engine),
            (r"/v1/files", "POST", self.upload_file),
            (r"/v1/files/([^/]+)", "GET", self.get_file),
            (r"/v1/models", "POST", self.create_model),
            (r"/v1/models", "GET", self.list_models),
            (r"/v1/models/([^/]+)", "GET", self.get_model),
            (r"/v1/models/([^/]+)/train", "POST", self.train_model),
            (r"/v1/account", "GET", self.account),
        ]

    def job_response(
        self, job: FakeJob, status_code: int = 200, request: httpx.Request | None = None
    ) -> httpx.Response:
        content = json.dumps(job.body()).encode()
        etag = '"' + hashlib.sha256(content).hexdigest()[:16] + '"'
        headers = {"etag": etag, "content-type": "application/json"}
        if job.status not in ("succeeded", "failed", "canceled", "expired") and self.retry_after:
            headers["retry-after"] = self.retry_after
        if request is not None and request.headers.get("if-none-match") == etag:
            return httpx.Response(304, headers=headers)
        return httpx.Response(status_code, content=content, headers=headers)

    def create_job(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("engine") not in SCRIPTS:
            return problem(404, "engine_not_found", f"no engine {body.get('engine')!r}")
        if not isinstance(body.get("input"), dict):
            return problem(
                422,
                "invalid_input",
                "the request is not valid",
                errors=[{"field": "input", "message": "must be an object"}],
            )
        job = self.add_job(body["engine"], input=body["input"], metadata=body.get("metadata", {}))
        response = self.job_response(job, 202)
        response.headers["location"] = f"/v1/jobs/{job.id}"
        return response

    def get_job(self, request: httpx.Request, job_id: str) -> httpx.Response:
        job = self.jobs.get(job_id)
        if job is None:
            return problem(404, "not_found", "No such job")
        response = self.job_response(job, request=request)
        job.advance()  # the next reader sees the next state
        return response

    def list_jobs(self, request: httpx.Request) -> httpx.Response:
        q = request.url.params
        jobs = sorted(self.jobs.values(), key=lambda j: j.id, reverse=True)
        if "status" in q:
            wanted = q["status"].split(",")
            jobs = [j for j in jobs if j.status in wanted]
        if "after" in q:
            jobs = [j for j in jobs if j.id < q["after"]]
        limit = int(q.get("limit", 20))
        page, more = jobs[:limit], len(jobs) > limit
        return httpx.Response(
            200,
            json={
                "object": "list",
                "data": [j.body() for j in page],
                "has_more": more,
                "next_cursor": page[-1].id if more else None,
            },
        )

    def cancel_job(self, request: httpx.Request, job_id: str) -> httpx.Response:
        job = self.jobs.get(job_id)
        if job is None:
            return problem(404, "not_found", "No such job")
        if job.status in ("succeeded", "failed", "canceled", "expired"):
            return problem(409, "conflict", f"job is already {job.status}")
        job.canceled = True
        return httpx.Response(200, json={**job.body(), "cancel": "canceled"})

    def list_engines(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"object": "list", "data": [self.engine(name) for name in SCRIPTS]}
        )

    def get_engine(self, request: httpx.Request, name: str) -> httpx.Response:
        if name not in SCRIPTS:
            return problem(404, "engine_not_found", f"No such engine {name!r}")
        return httpx.Response(200, json=self.engine(name))

    @staticmethod
    def engine(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "object": "engine",
            "task": name.split("/")[1],
            "description": f"the {name} engine",
            "media": ["image"],
            "price": 20,
            "typical_duration_s": 2.5,
            "concurrency": 4,
            "timeout_s": 60,
            "input_schema": {"type": "object"},
        }

    def upload_file(self, request: httpx.Request) -> httpx.Response:
        ctype = request.headers.get("content-type", "")
        body = request.read()
        m = re.search(rb'name="file"; filename="([^"]+)"\r\nContent-Type: ([^\r]+)', body)
        if not ctype.startswith("multipart/form-data") or m is None:
            return problem(415, "unsupported_media_type", "multipart field `file` expected")
        file_id = f"file_{len(self.files) + 1:04d}"
        self.files[file_id] = {
            "id": file_id,
            "object": "file",
            "filename": m.group(1).decode(),
            "content_type": m.group(2).decode(),
            "bytes": len(body),
            "sha256": "x",
            "created_at": "2026-11-22T10:00:00.000Z",
            "purpose": None,
        }
        return httpx.Response(201, json=self.files[file_id])

    def get_file(self, request: httpx.Request, file_id: str) -> httpx.Response:
        if file_id not in self.files:
            return problem(404, "not_found", "No such file")
        return httpx.Response(200, json=self.files[file_id])

    def create_model(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        model_id = f"model_{len(self.models) + 1:04d}"
        self.models[model_id] = {
            "id": model_id,
            "object": "model",
            "name": body["name"],
            "engine": body["engine"],
            "status": "created",
            "job_id": None,
            "error": None,
            "weights_url": None,
            "metadata": body.get("metadata", {}),
            "created_at": "2026-11-22T10:00:00.000Z",
            "updated_at": "2026-11-22T10:00:00.000Z",
        }
        return httpx.Response(201, json=self.models[model_id])

    def list_models(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"object": "list", "data": list(self.models.values())})

    def get_model(self, request: httpx.Request, model_id: str) -> httpx.Response:
        if model_id not in self.models:
            return problem(404, "not_found", "No such model")
        return httpx.Response(200, json=self.models[model_id])

    def train_model(self, request: httpx.Request, model_id: str) -> httpx.Response:
        model = self.models.get(model_id)
        if model is None:
            return problem(404, "not_found", "No such model")
        job = self.add_job("demo/text2image", input=json.loads(request.content)["input"])
        model.update(status="training", job_id=job.id)
        return self.job_response(job, 202)

    def account(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "id": "acct_1",
                "object": "account",
                "name": "test",
                "plan": "free",
                "created_at": "2026-11-22T10:00:00.000Z",
                "key": {
                    "id": "key_1",
                    "prefix": "gq_test",
                    "name": None,
                    "created_at": "2026-11-22T10:00:00.000Z",
                },
                "credits": {"balance": 1000},
            },
        )
