"""Fixtures for the dashboard's end-to-end tests: Debian's headless Chromium driven by
Playwright's sync API, against the real server of tests/conftest.py.

Screenshots of every page are kept under the test's tmp dir; with
`GENQ_UI_SCREENSHOTS=docs` the chosen ones are also written to docs/ui-*.png.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, LiveServer

CHROMIUM = Path(os.environ.get("GENQ_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # WebGL for <model-viewer> on the CPU
    "--use-gl=angle",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]
DOCS = ROOT / "docs"
TO_DOCS = os.environ.get("GENQ_UI_SCREENSHOTS") == "docs"
LOCAL = ("http://127.0.0.1:", "http://localhost:", "data:", "blob:")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per module (not per session: Playwright's sync API keeps an event
    loop of its own that must not outlive the e2e modules into the asyncio tests)."""
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}; `make test-deps` installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, server: LiveServer) -> Iterator[Any]:
    """A fresh tab. Fails the test on an uncaught script error, a CSP violation or any
    request that leaves this machine (the dashboard must need no network). It depends
    on `server` so that it closes first: an open event stream would hold up the
    server's shutdown."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems: list[str] = []

    def on_console(msg: Any) -> None:
        if "Content Security Policy" in msg.text:
            problems.append(f"CSP: {msg.text}")

    def on_request(req: Any) -> None:
        if not req.url.startswith(LOCAL):
            problems.append(f"external request: {req.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("request", on_request)
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        context.close()
    assert not problems, problems


@pytest.fixture
def shoot(tmp_path: Path) -> Any:
    """shoot(page, name, docs=False): a full-page screenshot kept as a test artifact."""
    folder = tmp_path / "screenshots"
    folder.mkdir()

    def take(page: Any, name: str, *, docs: bool = False) -> Path:
        path = folder / f"{name}.png"
        page.evaluate("() => scrollTo(0, 0)")  # the sticky header belongs at the top
        if docs and TO_DOCS:  # no focus ring in the README's pictures
            page.evaluate("() => document.activeElement?.blur?.()")
        page.screenshot(path=str(path), full_page=True, animations="disabled")
        if docs and TO_DOCS:
            DOCS.mkdir(exist_ok=True)
            shutil.copyfile(path, DOCS / f"ui-{name}.png")
        return path

    return take


def new_key(server: LiveServer, account: str = "alice") -> str:
    """`server.new_key` in a thread of its own: it calls asyncio.run(), which refuses to
    run where Playwright's sync API keeps its event loop marked as running."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(server.new_key, account).result()


@pytest.fixture
def key(server: LiveServer) -> str:
    return new_key(server)


def sign_in(page: Any, server: LiveServer, key: str) -> None:
    page.goto(f"{server.url}/ui/")
    page.get_by_label("API key").fill(key)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Jobs", exact=True).wait_for()


def assert_cells_tile_rows(page: Any, table: str) -> None:
    """Every row's cells cover the row edge to edge, with the row's full height: so each
    row's bottom border runs the table's whole width, without gaps between columns."""
    rows = page.evaluate(
        """(table) => [...document.querySelectorAll(`${table} tr`)].map((tr) => {
          const box = (el) => { const r = el.getBoundingClientRect();
            return [r.left, r.right, r.top, r.bottom]; };
          return { row: box(tr), cells: [...tr.children].map(box) };
        })""",
        table,
    )
    # Layout works in 1/64 px; a cell that left the table layout is off by half a pixel,
    # which is what draws the gap.
    exact = 0.05
    assert len(rows) >= 2, rows
    for r in rows:
        (left, right, top, bottom), cells = r["row"], r["cells"]
        edges = [left] + [c[1] for c in cells]
        starts = [c[0] for c in cells] + [right]
        assert edges == pytest.approx(starts, abs=exact), r  # no gap before, between, after
        for cell in cells:
            assert cell[2:] == pytest.approx([top, bottom], abs=exact), r
