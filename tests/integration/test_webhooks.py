"""Webhooks: signed deliveries to a local receiver, retries with a stable id,
redirects not followed, 410 disables, and the outbox never delays the job."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from genq import webhooks
from tests.conftest import LiveServer, make_settings, wait_for


class Receiver:
    """A webhook receiver on a loopback port answering with scripted statuses."""

    def __init__(
        self,
        script: list[int] | None = None,
        headers: dict[str, str] | None = None,
        delay_s: float = 0.0,
    ):
        self.script = list(script or [])
        self.extra_headers = headers or {}
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                time.sleep(delay_s)  # a slow receiver
                with receiver.lock:
                    receiver.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.script.pop(0) if receiver.script else 200
                self.send_response(status)
                if status in (301, 302, 307):
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                for k, v in receiver.extra_headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.got) < n:
            assert time.monotonic() < deadline, f"got {len(self.got)} of {n} deliveries"
            time.sleep(0.02)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hooked(tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path / "data", webhook_allow_private=True, webhook_retry_schedule_s=[0.2, 0.2, 0.2, 0.2]
    )
    srv = LiveServer(settings).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_signed_delivery_verifies_with_standardwebhooks(hooked: LiveServer) -> None:
    rx = Receiver()
    try:
        with hooked.client(hooked.new_key()) as api:
            secret = api.get("/v1/account/webhook-secret").json()["secret"]
            assert secret.startswith("whsec_")
            job = api.post(
                "/v1/jobs",
                json={
                    "engine": "test/sleep",
                    "input": {"seconds": 0.4, "steps": 2},
                    "webhook": {"url": rx.url, "events": ["started", "progress", "completed"]},
                },
            ).json()
            wait_for(api, job["id"])
            rx.wait(3)
            time.sleep(0.3)
            events = []
            for headers, body in rx.got:
                payload = Webhook(secret).verify(body, headers)  # raises if forged
                assert webhooks.verify(body, headers, secret) == payload
                events.append(payload["type"])
                assert payload["data"]["id"] == job["id"]
            assert events[0] == "job.started" and events[-1] == "job.completed"
            assert "job.progress" in events
            assert json.loads(rx.got[-1][1])["data"]["status"] == "succeeded"
            deliveries = api.get(f"/v1/jobs/{job['id']}/deliveries").json()["data"]
            assert all(d["status"] == "delivered" for d in deliveries)
            assert deliveries[-1]["attempts"][0]["status_code"] == 200
    finally:
        rx.close()


def test_retries_keep_the_same_webhook_id(hooked: LiveServer) -> None:
    rx = Receiver(script=[500, 503, 502, 200])
    try:
        with hooked.client(hooked.new_key()) as api:
            t0 = time.monotonic()
            job = api.post(
                "/v1/jobs", json={"engine": "test/sleep", "input": {}, "webhook": {"url": rx.url}}
            ).json()
            done = wait_for(api, job["id"])
            assert done["status"] == "succeeded"
            rx.wait(4)
            ids = {h["webhook-id"] for h, _ in rx.got}
            assert len(rx.got) == 4 and len(ids) == 1
            assert time.monotonic() - t0 < 15
            d = delivery(api, job["id"], until="delivered")
            assert [a["status_code"] for a in d["attempts"]] == [500, 503, 502, 200]
    finally:
        rx.close()


def delivery(api: httpx.Client, job_id: str, until: str, timeout: float = 5) -> dict[str, Any]:
    """The job's one delivery once its status is `until` (the receiver answers before
    the sender records the attempt)."""
    deadline = time.monotonic() + timeout
    while True:
        [d] = api.get(f"/v1/jobs/{job_id}/deliveries").json()["data"]
        if d["status"] == until or time.monotonic() > deadline:
            assert d["status"] == until, d
            return d  # type: ignore[no-any-return]
        time.sleep(0.05)


def test_redirects_not_followed_and_410_disables(hooked: LiveServer) -> None:
    rx = Receiver(script=[302, 302, 302, 302, 302])
    gone = Receiver(script=[410])
    try:
        with hooked.client(hooked.new_key()) as api:
            job = api.post(
                "/v1/jobs", json={"engine": "test/sleep", "input": {}, "webhook": {"url": rx.url}}
            ).json()
            wait_for(api, job["id"])
            rx.wait(5)
            d = delivery(api, job["id"], until="failed")
            assert len(d["attempts"]) == 5
            assert "redirects are not followed" in d["attempts"][0]["error"]
            job2 = api.post(
                "/v1/jobs", json={"engine": "test/sleep", "input": {}, "webhook": {"url": gone.url}}
            ).json()
            wait_for(api, job2["id"])
            gone.wait(1)
            d2 = delivery(api, job2["id"], until="disabled")
            # redeliver sends it again
            r = api.post(f"/v1/deliveries/{d2['id']}/redeliver")
            assert r.status_code == 202
            gone.wait(2)
    finally:
        rx.close()
        gone.close()


def test_dead_receiver_never_delays_the_job(hooked: LiveServer) -> None:
    with hooked.client(hooked.new_key()) as api:
        t0 = time.monotonic()
        job = api.post(
            "/v1/jobs",
            json={
                "engine": "test/sleep",
                "input": {},
                "webhook": {"url": "http://127.0.0.1:9/nothing"},
            },
        )
        assert wait_for(api, job.json()["id"])["status"] == "succeeded"
        assert time.monotonic() - t0 < 5


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://2130706433/x",
        "http://0177.0.0.1/x",
        "http://0x7f.0.0.1/x",
        "http://127.1/x",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://localhost/x",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/x",
        "http://172.16.5.4/x",
        "http://192.168.1.1/x",
        "http://100.64.0.1/x",
        "http://[64:ff9b::7f00:1]/x",
        "http://[2002:7f00:1::]/x",
        "http://[fe80::1]/x",
        "http://[fc00::1]/x",
        "file:///etc/passwd",
        "http://example.com@127.0.0.1/x",
        "http://user:pw@example.com/x",
        "gopher://example.com/",
        "http://0.0.0.0/x",
        "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x",
    ],
)
def test_ssrf_corpus_refused(server: LiveServer, api: httpx.Client, url: str) -> None:
    r = api.post("/v1/jobs", json={"engine": "test/sleep", "input": {}, "webhook": {"url": url}})
    assert r.status_code == 422, (url, r.text)
    assert r.json()["code"] in ("unsafe_url", "invalid_input")


def test_a_slow_receiver_gets_each_delivery_once_and_in_order(tmp_path: Path) -> None:
    """A job writes twenty outputs at once: twenty `output` deliveries due together. The
    receiver takes 0.45 s per call and attempts may take 1.5 s, so a delivery is leased
    for 6 s while the twenty take ~9 s to send one after another; a second sender (a
    second server process on the same database) is there to take what it is allowed
    to. None is sent twice by two senders, and they arrive in the order they were
    made."""
    settings = make_settings(tmp_path / "data", webhook_allow_private=True, webhook_timeout_s=1.5)
    first = LiveServer(settings).start()
    second = LiveServer(
        make_settings(tmp_path / "data", webhook_allow_private=True, webhook_timeout_s=1.5),
        workers=False,
    ).start()
    rx = Receiver(delay_s=0.45)
    try:
        with first.client(first.new_key()) as api:
            job = api.post(
                "/v1/jobs",
                json={
                    "engine": "test/chatter",
                    "input": {"outputs": 20},
                    "webhook": {"url": rx.url, "events": ["output"]},
                },
            ).json()
            wait_for(api, job["id"])
            deadline = time.monotonic() + 60
            while True:
                deliveries = api.get(f"/v1/jobs/{job['id']}/deliveries").json()["data"]
                if len(deliveries) == 20 and all(d["status"] != "pending" for d in deliveries):
                    break
                assert time.monotonic() < deadline, deliveries
                time.sleep(0.2)
        assert {d["status"] for d in deliveries} == {"delivered"}
        ids = [h["webhook-id"] for h, _ in rx.got]
        for d in deliveries:
            # one attempt that got its 2xx; any other attempt failed first (a receiver
            # too slow under load is retried: at least once), and nothing was sent that
            # is not an attempt on record (no second sender took it meanwhile)
            codes = [a["status_code"] for a in d["attempts"]]
            assert codes[-1] == 200 and all(a["error"] for a in d["attempts"][:-1]), d
            assert ids.count(d["id"]) == len(codes), (d, ids)
        last = {i: n for n, i in enumerate(ids)}  # each one's successful (last) receipt
        assert sorted(last, key=last.__getitem__) == [d["id"] for d in deliveries], ids
    finally:
        rx.close()
        second.stop()
        first.stop()
