"""The account page in a real browser: what GET /v1/account returns, the webhook
secret hidden until asked for, and recent webhook deliveries."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, make_settings, wait_for
from tests.e2e.conftest import assert_cells_tile_rows, new_key, sign_in


class Receiver:
    """A webhook endpoint on a loopback port that answers 204."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """The shared server, but webhooks may reach the loopback receiver."""
    srv = LiveServer(make_settings(tmp_path / "data", webhook_allow_private=True)).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_account_page(page: Any, server: LiveServer, shoot: Any) -> None:
    key = new_key(server, "acme")
    rx = Receiver()
    try:
        with server.client(key) as api:
            job_id = api.post(
                "/v1/jobs", json={"engine": "test/sleep", "input": {}, "webhook": {"url": rx.url}}
            ).json()["id"]
            wait_for(api, job_id)
            prefix = api.get("/v1/account").json()["key"]["prefix"]
            for _ in range(100):
                if api.get("/v1/deliveries").json()["data"][0]["status"] != "pending":
                    break
                page.wait_for_timeout(100)
            sign_in(page, server, key)
            page.get_by_role("link", name="Account").click()
            page.get_by_role("heading", name="Account", level=1).wait_for()
            page.get_by_text("acme", exact=True).wait_for()
            page.get_by_text(prefix, exact=False).first.wait_for()
            assert page.locator("#webhook-secret").count() == 0  # hidden until asked
            page.get_by_role("button", name="Show secret").click()
            secret = page.locator("#webhook-secret")
            secret.wait_for()
            assert secret.inner_text() == api.get("/v1/account/webhook-secret").json()["secret"]
            deliveries = page.locator("table.deliveries tbody tr")
            deliveries.first.wait_for()
            assert job_id in deliveries.first.inner_text()
            # readable labels: no raw field names ("Window reset s", "retention_days")
            labels = page.locator("main").locator("dt, th, h2").all_inner_texts()
            assert "Job submissions" in labels, labels
            raw = [t for t in labels if "_" in t or re.search(r"\s(s|ms|min)$", t)]
            assert not raw, raw
            limits = page.locator("#account-limits tr").filter(has_text="Job submissions")
            assert "240 a minute" in limits.inner_text()
            assert "left this minute" in limits.inner_text()
            assert_rows_filled(page, ".cards")
            assert_cells_tile_rows(page, "table.limits")
            page.keyboard.press("Tab")  # focus is visible and lands on a control
            assert page.evaluate("document.activeElement.tagName") in ("BUTTON", "A")
            shoot(page, "account", docs=True)
    finally:
        rx.close()


def assert_rows_filled(page: Any, grid: str) -> None:
    """The grid's cards reach its right edge on every row: no row ends in an empty
    column."""
    layout = page.evaluate(
        """(grid) => { const el = document.querySelector(grid);
          return { right: el.getBoundingClientRect().right,
                   cards: [...el.children].map((c) => { const r = c.getBoundingClientRect();
                     return [Math.round(r.top), r.right]; }) }; }""",
        grid,
    )
    rows: dict[int, float] = {}
    for top, right in layout["cards"]:
        rows[top] = max(rows.get(top, 0), right)
    assert rows, layout
    for top, right in rows.items():
        assert right == pytest.approx(layout["right"], abs=1), (top, layout)
