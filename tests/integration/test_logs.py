"""`genq serve` with `GENQ_LOG_FORMAT=json` and its access log on, as an operator runs
it: every line it writes to stderr is one JSON object; the lines about a job carry the
job, its account and its engine; no line shows the API key, the webhook secret, an
upstream key (the server's or the account's own) or an upstream callback token, though
requests carry them, an upstream quotes one back and the access log sees the paths."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    GENQ,
    create_key,
    free_port,
    genq_env,
    make_settings,
    wait_for,
    wait_healthy,
)

SERVER_KEY = "vx-server-Kq81mWv0aT5xY3bK"
OWN_KEY = "vx-own-Zp4kW9qv2L7s0XbTj6"
CALLBACK_TOKEN = "q7bq0kHc9Yv2W4xXvT8l1mJ3pR6sU5nA0zE2iG4oK8c"
HOOK_TOKEN = "hk_5d8e1c0b9a7f"
VIVIX = "vivix/grok-imagine-image-quality"


class Upstream:
    """One loopback server playing two parts: a webhook receiver that answers 500, and
    a Vivix whose error messages quote the Authorization header back (as careless
    services do), so the key reaches genq's error paths and its log: it refuses every
    key (401), or, when the prompt says `502`, answers a create 502 (genq logs a
    warning with the message: the call may have made a job)."""

    def __init__(self) -> None:
        self.hooks = 0

        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path.startswith("/hook"):
                    upstream.hooks += 1
                    self._answer(500, b"")
                    return
                said = f"key refused: {self.headers.get('authorization')}"
                status = 502 if b"502" in body else 401
                self._answer(status, json.dumps({"error": "KEY_INVALID", "message": said}).encode())

            do_GET = do_POST

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Run:
    lines: list[dict[str, Any]]
    raw: str
    secrets: dict[str, str]
    jobs: dict[str, dict[str, Any]]  # succeeded, failed, upstream


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """One server through the whole scenario, stopped; its stderr, parsed."""
    data = tmp_path_factory.mktemp("logs") / "data"
    data.mkdir()
    port = free_port()
    api_key = create_key(make_settings(data, port=port), "alice")
    bob_key = create_key(make_settings(data, port=port), "bob")  # uses the server's key
    upstream = Upstream()
    upstreams = {"vivix": {"base_url": upstream.url, "api_key": SERVER_KEY}}
    env = genq_env(
        data,
        GENQ_PORT=str(port),
        GENQ_LOG_FORMAT="json",
        GENQ_ACCESS_LOG="1",
        GENQ_WEBHOOK_ALLOW_PRIVATE="1",
        GENQ_WEBHOOK_RETRY_SCHEDULE_S="3600",
        GENQ_UPSTREAMS=json.dumps(upstreams),
        GENQ_SHUTDOWN_GRACE_S="1",
    )
    err_path, out_path = data / "stderr.log", data / "stdout.log"
    with err_path.open("wb") as err, out_path.open("wb") as out:
        proc = subprocess.Popen([*GENQ, "serve"], env=env, stdout=out, stderr=err)
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {api_key}"}
    jobs: dict[str, dict[str, Any]] = {}
    try:
        wait_healthy(url, proc, err_path)
        with httpx.Client(base_url=url, headers=auth, timeout=30) as api:
            secret = api.get("/v1/account/webhook-secret").json()["secret"]
            put = api.put("/v1/account/upstreams/vivix", json={"api_key": OWN_KEY})
            assert put.status_code == 200, put.text
            hook = {"url": f"{upstream.url}/hook?token={HOOK_TOKEN}"}
            ok = api.post("/v1/jobs", json={"engine": "test/sleep", "input": {}, "webhook": hook})
            boom = api.post("/v1/jobs", json={"engine": "test/boom", "input": {}})
            up = api.post("/v1/jobs", json={"engine": VIVIX, "input": {"prompt": "a cat"}})
            for name, r in (("succeeded", ok), ("failed", boom), ("upstream", up)):
                assert r.status_code == 202, r.text
                jobs[name] = wait_for(api, r.json()["id"])
            # creates answered 502 quoting the account's own key, then the server's
            unanswered = {"engine": VIVIX, "input": {"prompt": "502"}}
            own = api.post("/v1/jobs", json=unanswered)
            server = api.post(
                "/v1/jobs", json=unanswered, headers={"Authorization": f"Bearer {bob_key}"}
            )
            for name, r in (("own key", own), ("server key", server)):
                assert r.status_code == 202, r.text
                jobs[name] = r.json()
            cancel = api.post(f"/v1/jobs/{jobs['failed']['id']}/cancel")
            assert cancel.status_code == 409  # it has ended: still a line about the job
            pushed = httpx.post(
                f"{url}/v1/upstreams/callbacks/{jobs['upstream']['id']}/{CALLBACK_TOKEN}",
                json={"status": "completed"},
            )
            assert pushed.status_code == 404  # not the job's token: refused (and logged)
            _wait_logged(err_path, proc, "not delivered")
            for name in ("own key", "server key"):
                _wait_logged(err_path, proc, f"upstream job {jobs[name]['id']}: create call")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            upstream.close()
    assert jobs["succeeded"]["status"] == "succeeded", jobs["succeeded"]
    assert jobs["failed"]["status"] == "failed", jobs["failed"]
    assert jobs["upstream"]["status"] == "failed", jobs["upstream"]
    assert upstream.hooks >= 1
    raw = err_path.read_text()
    lines = []
    for text in raw.splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:
            pytest.fail(f"not a JSON line: {text!r}\n{raw}")
    secrets = {
        "api key": api_key,
        "bob's api key": bob_key,
        "webhook secret": secret,
        "server's upstream key": SERVER_KEY,
        "account's upstream key": OWN_KEY,
        "callback token": CALLBACK_TOKEN,
        "webhook URL token": HOOK_TOKEN,
    }
    yield Run(lines, raw + out_path.read_text(), secrets, jobs)


def _wait_logged(log: Path, proc: subprocess.Popen[bytes], text: str) -> None:
    deadline = time.monotonic() + 30
    while text not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_every_line_is_json_with_the_fields(run: Run) -> None:
    assert run.lines
    for line in run.lines:
        assert {"ts", "level", "logger", "msg"} <= set(line), line
    loggers = {line["logger"] for line in run.lines}
    assert {"uvicorn.access", "uvicorn.error", "genq.cli"} <= loggers, loggers


def test_no_line_shows_a_secret(run: Run) -> None:
    for what, secret in run.secrets.items():
        assert secret not in run.raw, f"the {what} is in the log"
    assert any("/v1/upstreams/callbacks/" in line["msg"] for line in run.lines)


def _about(run: Run, job_id: str) -> list[dict[str, Any]]:
    return [line for line in run.lines if line.get("job_id") == job_id]


def test_a_failing_engine_logs_with_its_job(run: Run) -> None:
    job = run.jobs["failed"]
    raised = [line for line in _about(run, job["id"]) if line["logger"] == "genq.runtime"]
    assert raised, run.raw
    line = raised[0]
    assert line["level"] == "warning" and line["engine"] == "test/boom"
    assert line["account_id"].startswith("acct_"), line
    assert "RuntimeError: the engine exploded" in line["exc"]


def test_a_failed_webhook_delivery_logs_with_its_job(run: Run) -> None:
    job = run.jobs["succeeded"]
    warned = [line for line in _about(run, job["id"]) if line["logger"] == "genq.webhooks"]
    assert warned, run.raw
    line = warned[0]
    assert line["level"] == "warning" and "receiver answered 500" in line["msg"]
    assert line["engine"] == "test/sleep" and line["account_id"]


def test_upstream_keys_quoted_back_are_redacted(run: Run) -> None:
    """The 502's message quotes the key sent; the warning keeps the message, not the key."""
    for name in ("own key", "server key"):
        job = run.jobs[name]
        warned = [
            line
            for line in _about(run, job["id"])
            if line["logger"] == "genq.engines.upstream.tracker" and "create call" in line["msg"]
        ]
        assert warned, run.raw
        line = warned[0]
        assert "key refused: Bearer [redacted]" in line["msg"], line
        assert line["engine"] == VIVIX and line["level"] == "warning"


def test_lines_that_name_a_job_carry_its_context(run: Run) -> None:
    """Any genq line (and a request's access line) that names one of the jobs carries
    that job, its account and its engine; the access line of each submit carries the
    job it made."""
    engines = {job["id"]: job["engine"] for job in run.jobs.values()}
    accounts = set()
    for line in run.lines:
        named = [job_id for job_id in engines if job_id in line["msg"]]
        if not named or (line["logger"] == "uvicorn.access" and "job_id" not in line):
            continue  # a read names the job in its path and is no job's work
        assert line.get("job_id") == named[0], line
        assert line["engine"] == engines[named[0]], line
        accounts.add(line["account_id"])
    assert len(accounts) == 2, accounts  # alice's, bob's
    submits = [
        line
        for line in run.lines
        if line["logger"] == "uvicorn.access" and '"POST /v1/jobs HTTP' in line["msg"]
    ]
    assert {line.get("job_id") for line in submits} == set(engines), submits
