"""The dashboard at /ui in a real browser: sign-in, the generated job form with live
progress and image previews, the 3D viewer, cancel from the list, the account page."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image, ImageStat

from tests.conftest import LiveServer, wait_for
from tests.e2e.conftest import assert_cells_tile_rows, sign_in

pytestmark = pytest.mark.timeout(90)


def job_row(page: Any, job_id: str) -> Any:
    return page.locator(f'tr[data-job="{job_id}"]')


def test_sign_in_keeps_the_key_in_session_storage_only(
    page: Any, server: LiveServer, key: str, shoot: Any
) -> None:
    response = page.goto(f"{server.url}/ui/")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval'" not in csp.replace("wasm-unsafe", "")
    page.get_by_role("heading", name="Sign in").wait_for()
    assert ".genq/demo.key" in page.locator("#key-help").inner_text()  # where make run put one
    shoot(page, "sign-in")

    page.get_by_label("API key").fill("gq_not-a-real-key")
    page.keyboard.press("Enter")
    page.get_by_role("alert").filter(has_text="not accepted").wait_for()

    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Jobs", exact=True).wait_for()
    assert key not in page.url
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("sessionStorage.getItem('genq.key')") == key
    assert page.evaluate("localStorage.length") == 0

    page.reload()  # the tab keeps its session
    page.get_by_role("heading", name="Jobs", exact=True).wait_for()

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in").wait_for()
    assert page.evaluate("sessionStorage.getItem('genq.key')") is None
    page.get_by_role("status").filter(has_text="signed out").wait_for()


def test_form_errors_appear_next_to_the_fields(
    page: Any, server: LiveServer, key: str, shoot: Any
) -> None:
    sign_in(page, server, key)
    page.get_by_role("link", name="New job", exact=True).first.click()
    page.select_option("#engine", "demo/text2image")
    width = page.locator('input[name="input.width"]')
    width.fill("8")
    page.get_by_role("button", name="Start job").click()
    width_error = page.locator('.field[data-path="input.width"] .field-error')
    width_error.wait_for()
    assert "64" in width_error.inner_text()
    assert width.get_attribute("aria-invalid") == "true"
    prompt_error = page.locator('.field[data-path="input.prompt"] .field-error')
    assert "required" in prompt_error.inner_text().lower()
    assert page.get_by_role("alert").count() >= 1
    shoot(page, "new-job-errors")


def test_submit_from_the_form_and_watch_it_live(
    page: Any, server: LiveServer, key: str, shoot: Any
) -> None:
    sign_in(page, server, key)
    # Record every value the job page's progress bar takes, and mark the document: the
    # mark survives only if nothing reloads the page.
    page.evaluate("""() => {
      window.__noReload = true;
      window.__progress = [];
      new MutationObserver((records) => {
        for (const r of records) {
          if (r.target.closest('main > .progress')) {
            window.__progress.push(Number(r.target.getAttribute('aria-valuenow')));
          }
        }
      }).observe(document.body, { subtree: true, attributeFilter: ['aria-valuenow'] });
    }""")
    page.get_by_role("link", name="New job", exact=True).first.click()
    page.select_option("#engine", "demo/text2image")
    prompt = page.get_by_label("Prompt", exact=False).first
    prompt.wait_for()
    assert page.locator('input[name="input.width"]').input_value() == "512"  # defaults
    prompt.fill("a red fox at dawn")
    page.locator('input[name="input.num_images"]').fill("3")
    page.locator('input[name="input.delay_s"]').fill("3")
    shoot(page, "new-job", docs=True)
    page.get_by_role("button", name="Start job").click()

    page.wait_for_url("**/ui/#/jobs/job_*")
    job_id = page.url.rsplit("/", 1)[1]
    page.get_by_role("heading", name="a red fox at dawn").wait_for()
    page.locator("main > .progress .progress-text").filter(has_text="ETA").wait_for()
    page.locator(".badge[data-status=succeeded]").wait_for(timeout=30_000)
    page.wait_for_function("""() => {
      const imgs = [...document.querySelectorAll('.image-grid img')];
      return imgs.length === 3 && imgs.every((i) => i.complete && i.naturalWidth === 512);
    }""")

    seen = page.evaluate("window.__progress")
    moving = sorted({v for v in seen if 0 < v < 100})
    assert len(moving) >= 2, seen  # the bar moved through intermediate values
    assert seen == sorted(seen), seen
    assert seen[-1] == 100
    assert page.evaluate("window.__noReload") is True
    timeline = page.locator(".timeline li")
    assert timeline.filter(has_text="Status: running").count() == 1
    assert (
        timeline.locator("[data-type=completed], .ev-completed").count()
        + page.locator('.timeline li[data-type="completed"]').count()
        >= 1
    )
    assert page.locator(".downloads a[download]").count() == 3
    assert page.get_by_role("button", name="Cancel job").count() == 0
    shoot(page, "job-image", docs=True)

    # The zoomable grid: open, zoom in with the keyboard, close with Escape.
    page.get_by_role("button", name="Enlarge image_1").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    before = page.locator(".lightbox .stage img").bounding_box()
    page.keyboard.press("+")
    page.keyboard.press("+")
    page.wait_for_function("() => document.querySelector('.lightbox .zoom-level').value !== ''")
    after = page.locator(".lightbox .stage img").bounding_box()
    assert after["width"] > before["width"]
    shoot(page, "lightbox")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")

    # The job appears in the list, with its thumbnail, without a reload.
    page.get_by_role("link", name="Jobs", exact=True).click()
    job_row(page, job_id).locator(".badge[data-status=succeeded]").wait_for()
    assert job_row(page, job_id).locator(".thumb-slot img").count() == 1
    assert page.evaluate("window.__noReload") is True


def test_3d_model_viewer_renders_and_rotates(
    page: Any, server: LiveServer, key: str, api: httpx.Client, shoot: Any
) -> None:
    r = api.post(
        "/v1/jobs",
        json={
            "engine": "demo/text-to-3d",
            "input": {"prompt": "a small castle", "delay_s": 0},
            "metadata": {"customer": "acme", "order": 42},
        },
    )
    assert r.status_code == 202, r.text
    job = wait_for(api, r.json()["id"])
    assert job["status"] == "succeeded", job

    sign_in(page, server, key)
    page.goto(f"{server.url}/ui/#/jobs/{job['id']}")
    viewer = page.locator("model-viewer")
    page.locator("model-viewer[data-loaded]").wait_for(timeout=60_000)
    page.wait_for_function("() => document.querySelector('model-viewer').modelIsVisible")
    page.wait_for_timeout(500)  # a few frames
    png = viewer.screenshot(animations="disabled")
    img = Image.open(io.BytesIO(png)).convert("RGB")
    stat = ImageStat.Stat(img)
    assert max(stat.stddev) > 12, stat.stddev  # not a blank canvas
    assert len(img.getcolors(1 << 20) or []) > 200

    def theta() -> float:
        return float(page.evaluate("document.querySelector('model-viewer').getCameraOrbit().theta"))

    start = theta()
    box = viewer.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 160, cy, steps=8)
    page.mouse.up()
    page.wait_for_function(
        f"() => Math.abs(document.querySelector('model-viewer')"
        f".getCameraOrbit().theta - {start}) > 0.1"
    )
    assert abs(theta() - start) > 0.1

    links = page.locator(".downloads a[download]")
    labels = " ".join(links.all_inner_texts())
    for fmt in ("GLB", "USDZ", "FBX"):
        assert fmt in labels
    for href in [links.nth(i).get_attribute("href") for i in range(links.count())]:
        assert href.startswith(f"{server.url}/files/"), href
    # metadata is a key/value list, not a line of JSON
    metadata = page.locator(".details.metadata")
    pairs = zip(
        metadata.locator("dt").all_inner_texts(),
        metadata.locator("dd").all_inner_texts(),
        strict=True,
    )
    assert dict(pairs) == {"customer": "acme", "order": "42"}  # (PostgreSQL orders keys)
    assert "{" not in page.locator(".job-side .details").first.inner_text()
    shoot(page, "job-3d", docs=True)


def test_cancel_a_running_job_from_the_list(
    page: Any, server: LiveServer, key: str, api: httpx.Client, shoot: Any
) -> None:
    done = [
        api.post("/v1/jobs", json=body).json()["id"]
        for body in (
            {
                "engine": "demo/text2image",
                "input": {"prompt": "a lighthouse at dusk", "delay_s": 0},
            },
            {"engine": "demo/text2video", "input": {"prompt": "northern lights", "delay_s": 0}},
            {"engine": "demo/text-to-3d", "input": {"prompt": "a small castle", "delay_s": 0}},
            {"engine": "test/boom", "input": {"text": "an engine that fails"}},
        )
    ]
    for job_id in done:
        wait_for(api, job_id)

    sign_in(page, server, key)
    page.locator(".live[data-state=open]").wait_for()
    page.wait_for_function("() => document.querySelectorAll('tbody tr').length === 4")
    # Submitted while the list is open: it appears and runs without a reload.
    r = api.post(
        "/v1/jobs",
        json={"engine": "test/sleep", "input": {"seconds": 60, "steps": 60, "text": "slow one"}},
    )
    job_id = r.json()["id"]
    row = job_row(page, job_id)
    row.locator(".badge[data-status=running]").wait_for()
    page.wait_for_function(f"""() => Number(document.querySelector(
      'tr[data-job="{job_id}"] [role=progressbar]').getAttribute('aria-valuenow')) >= 3""")
    assert "ETA" in row.locator(".progress-text").inner_text()
    assert row.locator("td[data-label=Credits]").inner_text().startswith("≈")
    page.wait_for_function("() => document.querySelectorAll('.thumb-slot img').length === 3")
    assert_cells_tile_rows(page, "table.jobs")
    shoot(page, "jobs", docs=True)

    row.get_by_role("button", name=f"Cancel job {job_id}").click()
    row.locator(".badge[data-status=canceled]").wait_for(timeout=15_000)
    assert row.get_by_role("button").count() == 0
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "canceled"

    page.select_option("#filter-status", "canceled")
    page.wait_for_function("() => document.querySelectorAll('tbody tr').length === 1")
    assert "status=canceled" in page.url

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.select_option("#filter-status", "")
    page.wait_for_function("() => document.querySelectorAll('tbody tr').length === 5")
    assert page.evaluate("document.scrollingElement.scrollWidth <= innerWidth")
    shoot(page, "jobs-narrow")


def test_jobs_page_pages_with_the_cursor_and_filters(
    page: Any, server: LiveServer, key: str, api: httpx.Client
) -> None:
    ids = [
        api.post("/v1/jobs", json={"engine": "test/sleep", "input": {"steps": 1}}).json()["id"]
        for _ in range(26)
    ]
    ids.append(api.post("/v1/jobs", json={"engine": "test/boom", "input": {}}).json()["id"])
    wait_for(api, ids[-1])

    sign_in(page, server, key)
    rows = page.locator("tbody tr")
    page.wait_for_function("() => document.querySelectorAll('tbody tr').length === 25")
    assert rows.first.get_attribute("data-job") == ids[-1]  # newest first
    page.get_by_role("button", name="Load more").click()
    page.wait_for_function("() => document.querySelectorAll('tbody tr').length === 27")
    assert rows.last.get_attribute("data-job") == ids[0]
    assert page.get_by_role("button", name="Load more").is_hidden()

    page.select_option("#filter-engine", "test/boom")
    page.wait_for_function("() => document.querySelectorAll('tbody tr').length === 1")
    assert "engine=test%2Fboom" in page.url or "engine=test/boom" in page.url
    page.reload()  # the filter lives in the address
    page.wait_for_function("() => document.querySelectorAll('tbody tr').length === 1")
    assert page.locator("#filter-engine").input_value() == "test/boom"


def test_new_job_form_opens_on_an_engine_that_needs_no_upload(
    page: Any, server: LiveServer, key: str, api: httpx.Client
) -> None:
    engines = api.get("/v1/engines").json()["data"]
    assert needs_upload(engines[0]["input_schema"])  # the first in the list would
    sign_in(page, server, key)
    page.get_by_role("link", name="New job", exact=True).first.click()
    page.locator('.field[data-path="input.prompt"]').wait_for()
    chosen = page.locator("#engine").input_value()
    schema = api.get(f"/v1/engines/{chosen}").json()["input_schema"]
    assert not needs_upload(schema), chosen
    assert chosen == "demo/text2image"  # the cheapest that takes a prompt
    assert page.locator("input[type=file]").count() == 0


def needs_upload(schema: dict[str, Any]) -> bool:
    """A required `genq-file` input, or a required list of them."""

    def fmt(prop: dict[str, Any]) -> str | None:
        return prop.get("format") or prop.get("items", {}).get("format")

    props = schema.get("properties", {})
    return any(fmt(props[name]) == "genq-file" for name in schema.get("required", []))


def test_file_inputs_upload_through_the_form(
    page: Any, server: LiveServer, key: str, tmp_path: Any
) -> None:
    pictures = []
    for i, color in enumerate(["#d94f30", "#3070d9"]):
        path = tmp_path / f"picture{i}.png"
        Image.new("RGB", (96, 64), color).save(path)
        pictures.append(str(path))

    sign_in(page, server, key)
    page.goto(f"{server.url}/ui/#/new?engine=demo/upscale")
    field = page.locator('.field[data-path="input.image"]')
    field.locator("input[type=file]").set_input_files(pictures[0])
    field.get_by_role("status").filter(has_text="Uploaded picture0.png").wait_for()
    assert field.locator("input[type=text]").input_value().startswith("file_")
    page.locator('input[name="input.delay_s"]').fill("0")
    page.get_by_role("button", name="Start job").click()
    page.wait_for_url("**/ui/#/jobs/job_*")
    page.locator(".badge[data-status=succeeded]").wait_for()
    page.wait_for_function("() => document.querySelector('.image-grid img')?.naturalWidth === 192")

    # An array of files (demo/train's images): several uploads, one list.
    page.goto(f"{server.url}/ui/#/new?engine=demo/train")
    images = page.locator('[data-path="input.images"]')
    images.locator("input[type=file]").set_input_files(pictures)
    images.locator(".chips li").nth(1).wait_for()
    page.locator('input[name="input.delay_s"]').fill("0")
    page.get_by_role("button", name="Start job").click()
    page.wait_for_url("**/ui/#/jobs/job_*")
    page.locator(".badge[data-status=succeeded]").wait_for()
