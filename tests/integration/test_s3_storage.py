"""Outputs and uploads in a real S3-compatible store (SeaweedFS on loopback): every demo
engine's outputs land in the bucket and download by presigned redirect and through the
proxy with the recorded sha256, Range works both ways, uploads feed engines, deletes
and retention remove the objects, a store that goes away mid-job fails the job
`storage_unavailable` (refunded) while the server keeps serving, and a worker with its
own data dir (no shared files) completes jobs the API process then serves."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from genq.ids import token
from tests.conftest import (
    GENQ,
    LiveServer,
    create_key,
    genq_env,
    make_settings,
    wait_for,
)
from tests.integration.test_accounts import audit
from tests.s3 import Seaweed, TcpProxy

PLANS = {
    "brief": {
        "generation_per_min": 100,
        "status_per_min": 1000,
        "concurrent_jobs": 5,
        "retention_days": 2 / 86400,
        "monthly_credits": 1000,
    }
}


class S3Setup:
    def __init__(self, weed: Seaweed, proxy: TcpProxy, prefix: str, front: LiveServer) -> None:
        self.weed, self.proxy, self.prefix = weed, proxy, prefix
        self.front = front  # the worker and its API (redirects)
        self.back: LiveServer  # an API-only server on the same DB and bucket (proxy mode)

    def keys(self, under: str) -> list[str]:
        """Keys under genq's prefix + `under`, without genq's prefix."""
        cut = len(self.prefix) + 1
        return [k[cut:] for k in self.weed.keys(f"{self.prefix}/{under}")]


@pytest.fixture(scope="module")
def s3(seaweed: Seaweed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Setup]:
    proxy = TcpProxy(("127.0.0.1", seaweed.s3_port)).start()
    prefix = f"t{token(8).lower()}"
    root = tmp_path_factory.mktemp("s3genq")
    common: dict[str, Any] = {
        "storage_url": f"s3://genq-test/{prefix}",
        "s3_endpoint_url": proxy.url,
        "plans": PLANS,
        "sweep_interval_s": 0.5,
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in seaweed.env().items():
            mp.setenv(name, value)
        front = LiveServer(make_settings(root / "front", **common)).start()
        setup = S3Setup(seaweed, proxy, prefix, front)
        db = front.settings.database_url
        setup.back = LiveServer(
            make_settings(root / "back", database_url=db, storage_proxy=True, **common),
            workers=False,
        ).start()
        try:
            yield setup
        finally:
            setup.back.stop()
            front.stop()
            proxy.stop()
    assert audit(front) == []


@pytest.fixture(scope="module")
def key(s3: S3Setup) -> str:
    return s3.front.new_key("s3user", plan="pro")


@pytest.fixture
def api(s3: S3Setup, key: str) -> Iterator[httpx.Client]:
    with s3.front.client(key) as c:
        yield c


def run(api: httpx.Client, engine: str, **input: object) -> dict[str, Any]:
    r = api.post("/v1/jobs", json={"engine": engine, "input": {"delay_s": 0, **input}})
    assert r.status_code == 202, r.text
    job = wait_for(api, r.json()["id"], timeout=90)
    assert job["status"] == "succeeded", job
    return job


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_downloads(s3: S3Setup, url: str, size: int, digest: str) -> bytes:
    """Redirect (followed) and proxy give the recorded bytes; Range works both ways."""
    path = httpx.URL(url).path
    with httpx.Client(base_url=s3.front.url, timeout=30) as front:
        r = front.get(path)
        assert r.status_code == 307 and "X-Amz-Signature" in r.headers["location"]
        r = front.get(path, follow_redirects=True)
        assert r.status_code == 200 and sha(r.content) == digest, url
        data = r.content
        part = front.get(path, headers={"Range": "bytes=1-10"}, follow_redirects=True)
        assert part.status_code == 206 and part.content == data[1:11]
    with httpx.Client(base_url=s3.back.url, timeout=30) as back:
        r = back.get(path)
        assert r.status_code == 200 and sha(r.content) == digest
        assert int(r.headers["content-length"]) == size
        part = back.get(path, headers={"Range": "bytes=1-10"})
        assert part.status_code == 206 and part.content == data[1:11]
        assert part.headers["content-range"] == f"bytes 1-10/{size}"
        tail = back.get(path, headers={"Range": "bytes=-5"})
        assert tail.status_code == 206 and tail.content == data[-5:]
        first = back.get(path, headers={"Range": "bytes=0-1, 4-5"})  # the first range only
        assert first.status_code == 206 and first.content == data[:2]
        past = back.get(path, headers={"Range": f"bytes={size}-"})
        assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    return data


def check_job(s3: S3Setup, job: dict[str, Any]) -> None:
    keys = s3.keys(f"files/{job['id']}")
    assert keys, job
    for out in job["outputs"]:
        rel = httpx.URL(out["url"]).path.removeprefix("/")
        assert rel in keys, (rel, keys)
        check_downloads(s3, out["url"], out["bytes"], out["sha256"])
    # the worker's scratch copies are gone
    left = s3.front.settings.data_dir / "files" / job["id"]
    assert not left.exists() or not any(p.is_file() for p in left.rglob("*"))


def test_every_demo_engine_stores_in_the_bucket(s3: S3Setup, api: httpx.Client) -> None:
    image = run(api, "demo/text2image", prompt="a red fox", width=96, height=64, num_images=2)
    up = run(api, "demo/upscale", image=f"{image['id']}/image_1", scale=2)  # input from S3
    video = run(api, "demo/text2video", prompt="waves", seconds=1, fps=8, width=64, height=64)
    mesh = run(api, "demo/text-to-3d", prompt="a torus", texture_size=256)
    png = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(png, "PNG")
    f = api.post("/v1/files", files={"file": ("red.png", png.getvalue(), "image/png")}).json()
    relief = run(api, "demo/image-to-3d", image=f["id"], texture_size=256)
    model = api.post("/v1/models", json={"name": "reds"}).json()
    r = api.post(
        f"/v1/models/{model['id']}/images", files={"file": ("r.png", png.getvalue(), "image/png")}
    )
    assert r.status_code == 201
    train = api.post(f"/v1/models/{model['id']}/train", json={"input": {"delay_s": 0}}).json()
    assert wait_for(api, train["id"], timeout=60)["status"] == "succeeded"
    painted = run(
        api, "demo/text2image", prompt="a lake", model_id=model["id"], width=64, height=64
    )
    noop = wait_for(api, api.post("/v1/jobs", json={"engine": "demo/noop"}).json()["id"])
    assert noop["status"] == "succeeded"
    for job in (image, up, video, mesh, relief, painted):
        check_job(s3, job)
    trained = wait_for(api, train["id"])
    check_job(s3, trained)
    with Image.open(
        io.BytesIO(httpx.get(up["outputs"][0]["url"], follow_redirects=True).content)
    ) as im:
        assert im.size == (192, 128)
    ready = api.get(f"/v1/models/{model['id']}").json()
    assert (
        httpx.get(ready["weights_url"], follow_redirects=True).json()["kind"] == "genq-demo-palette"
    )


def test_uploads_live_in_the_bucket(s3: S3Setup, api: httpx.Client, key: str) -> None:
    data = bytes(range(256)) * 4000  # ~1 MB
    f = api.post("/v1/files", files={"file": ("blob.bin", data, "application/octet-stream")})
    assert f.status_code == 201, f.text
    file_id = f.json()["id"]
    assert s3.keys(f"uploads/{file_id}") == [f"uploads/{file_id}/blob.bin"]
    assert not (s3.front.settings.data_dir / "uploads" / file_id).exists()
    r = api.get(f"/v1/files/{file_id}/content")
    assert r.status_code == 307
    r = api.get(f"/v1/files/{file_id}/content", follow_redirects=True)
    assert r.content == data and "blob.bin" in r.headers["content-disposition"]
    with s3.back.client(key) as back:
        r = back.get(f"/v1/files/{file_id}/content")
        assert r.status_code == 200 and r.content == data
        assert r.headers["content-disposition"] == 'attachment; filename="blob.bin"'
        part = back.get(f"/v1/files/{file_id}/content", headers={"Range": "bytes=1000-1999"})
        assert part.status_code == 206 and part.content == data[1000:2000]


def test_delete_and_retention_remove_the_objects(s3: S3Setup, api: httpx.Client) -> None:
    job = run(api, "demo/text2image", prompt="x", width=64, height=64)
    assert s3.keys(f"files/{job['id']}")
    assert api.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert s3.keys(f"files/{job['id']}") == []
    for base in (s3.front.url, s3.back.url):
        path = httpx.URL(job["outputs"][0]["url"]).path
        assert httpx.get(base + path).status_code == 404
    with s3.front.client(s3.front.new_key("brief", plan="brief")) as brief:
        job = run(brief, "demo/text2image", prompt="y", width=64, height=64)
        assert s3.keys(f"files/{job['id']}")
        deadline = time.monotonic() + 20
        while brief.get(f"/v1/jobs/{job['id']}").status_code != 410:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        while s3.keys(f"files/{job['id']}"):  # (deleted right after the expiry commits)
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_store_gone_mid_job_fails_it_refunded(s3: S3Setup, api: httpx.Client) -> None:
    earlier = run(api, "demo/text2image", prompt="kept", width=64, height=64)
    before = api.get("/v1/account").json()
    r = api.post(
        "/v1/jobs",
        json={"engine": "demo/text2image", "input": {"prompt": "z", "width": 64, "delay_s": 1.5}},
    )
    job_id = r.json()["id"]
    wait_for(api, job_id, until=("running",))
    s3.proxy.cut()
    try:
        job = wait_for(api, job_id, timeout=60)
        assert job["status"] == "failed" and job["error"]["code"] == "storage_unavailable", job
        assert job["outputs"] == [] and job["credits"]["used"] == 0
        after = api.get("/v1/account").json()
        assert after["balance"] == before["balance"], (before, after)
        # the server keeps serving; downloads and uploads answer 503 problem+json
        assert api.get("/healthz").status_code == 200
        assert api.get("/readyz").status_code == 503
        path = httpx.URL(earlier["outputs"][0]["url"]).path
        for base in (s3.front.url, s3.back.url):
            r = httpx.get(base + path, timeout=60)
            assert r.status_code == 503 and r.json()["code"] == "storage_unavailable"
        r = api.post("/v1/files", files={"file": ("a.txt", b"abc", "text/plain")})
        assert r.status_code == 503 and r.json()["code"] == "storage_unavailable"
    finally:
        s3.proxy.restore()
    assert api.get("/readyz").status_code == 200
    run(api, "demo/text2image", prompt="again", width=64, height=64)


def test_worker_with_its_own_data_dir(
    seaweed: Seaweed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No shared files: the API process and the worker each have a data dir; the
    database (on SQLite, one file named by path) and the bucket are what they share."""
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    prefix = f"w{token(8).lower()}"
    storage = {"storage_url": f"s3://genq-test/{prefix}", "s3_endpoint_url": seaweed.endpoint}
    api_dir, worker_dir = tmp_path / "api", tmp_path / "worker"
    api_dir.mkdir()
    worker_dir.mkdir()
    settings = make_settings(api_dir, storage_proxy=True, **storage)
    srv = LiveServer(settings, workers=False).start()
    env = genq_env(
        worker_dir,
        GENQ_DATABASE_URL=settings.db_url,
        GENQ_STORAGE_URL=storage["storage_url"],
        GENQ_S3_ENDPOINT_URL=seaweed.endpoint,
        GENQ_LEASE_S="3",
        **seaweed.env(),
    )
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [*GENQ, "worker", "--slots", "2"], env=env, stdout=log, stderr=log
        )
    try:
        key = create_key(settings, "far", "pro")
        with srv.client(key) as api:
            image = run(api, "demo/text2image", prompt="a fox", width=64, height=64)
            up = run(api, "demo/upscale", image=f"{image['id']}/image_0", scale=2)
            for job in (image, up):
                for out in job["outputs"]:
                    r = httpx.get(out["url"], timeout=30)  # through the API process
                    assert r.status_code == 200 and sha(r.content) == out["sha256"]
        for where in (worker_dir, api_dir):  # no output file stays on either host
            assert not [p for p in (where / "files").rglob("*") if p.is_file()]
        assert not [p for p in (worker_dir / "scratch").rglob("*") if p.is_file()]
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
        srv.stop()


def test_doctor_and_readyz_report_the_store(s3: S3Setup, api: httpx.Client) -> None:
    from genq.doctor import Report, Status, _storage

    def check() -> dict[str, Status]:
        report = Report(database="-", data_dir="-")
        _storage(report, s3.front.settings)
        return {c.name: c.status for c in report.checks}

    assert check() == {"object store": Status.OK, "storage": Status.OK}
    s3.proxy.cut()
    try:
        assert check() == {"object store": Status.FAIL}
        assert api.get("/readyz").status_code == 503
    finally:
        s3.proxy.restore()
    assert api.get("/readyz").json()["status"] == "ok"


def test_local_backend_serves_ranges(api_local: httpx.Client) -> None:
    """The default backend (FileResponse): Range as the S3 proxy answers it."""
    job = run(api_local, "demo/text2image", prompt="x", width=64, height=64)
    url, size = job["outputs"][0]["url"], job["outputs"][0]["bytes"]
    data = httpx.get(url).content
    assert sha(data) == job["outputs"][0]["sha256"]
    part = httpx.get(url, headers={"Range": "bytes=1-10"})
    assert part.status_code == 206 and part.content == data[1:11]
    assert part.headers["content-range"] == f"bytes 1-10/{size}"
    assert httpx.get(url, headers={"Range": "bytes=-5"}).content == data[-5:]
    assert httpx.get(url, headers={"Range": f"bytes={size}-"}).status_code == 416
    f = api_local.post("/v1/files", files={"file": ("a.txt", b"0123456789", "text/plain")})
    r = api_local.get(f"/v1/files/{f.json()['id']}/content", headers={"Range": "bytes=2-4"})
    assert r.status_code == 206 and r.content == b"234"


@pytest.fixture
def api_local(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client(server.new_key("local")) as c:
        yield c


@pytest.mark.parametrize(
    ("header", "size", "want"),
    [
        (None, 10, None),
        ("bytes=0-0", 10, (0, 1)),
        ("bytes=2-", 10, (2, 10)),
        ("bytes=2-100", 10, (2, 10)),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=-30", 10, (0, 10)),
        ("bytes=10-", 10, "unsatisfiable"),
        ("bytes=-0", 10, "unsatisfiable"),
        ("bytes=5-2", 10, None),  # malformed: the whole body
        ("bytes=a-b", 10, None),
        ("items=0-1", 10, None),
        ("bytes=1-2, 5-6", 10, (1, 3)),  # the first range only
    ],
)
def test_parse_range(header: str | None, size: int, want: object) -> None:
    from genq.api.routes.files import parse_range

    assert parse_range(header, size) == want


def test_compat_faces_inline_outputs_read_from_the_store(s3: S3Setup, key: str) -> None:
    """Replicate's sync mode (data: URIs) and OpenAI's b64_json read the bytes from S3."""
    with httpx.Client(
        base_url=s3.front.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as c:
        r = c.post(
            "/compat/replicate/v1/models/black-forest-labs/flux-schnell/predictions",
            json={"input": {"prompt": "a rocket"}},
            headers={"Prefer": "wait=30"},
        )
        assert r.status_code == 201, r.text
        (uri,) = r.json()["output"]
        assert uri.startswith("data:image/png;base64,")
        raw = base64.b64decode(uri.split(",", 1)[1])
        job = c.get("/v1/jobs", params={"limit": 1}).json()["data"][0]  # (the newest)
        assert sha(raw) == job["outputs"][0]["sha256"]
        r = c.post(
            "/compat/openai/v1/images/generations",
            json={"prompt": "a fox", "size": "256x256", "response_format": "b64_json"},
        )
        assert r.status_code == 200, r.text
        png = base64.b64decode(r.json()["data"][0]["b64_json"])
        with Image.open(io.BytesIO(png)) as im:
            assert im.size == (256, 256)


def test_upstream_outputs_are_copied_into_the_store(
    seaweed: Seaweed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A front whose upstream is another genq on S3: its `url` results redirect to a
    presigned URL, the front follows, and stores the copies in its own bucket prefix."""
    from tests.integration.gateway_harness import front_server

    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    where = {"s3_endpoint_url": seaweed.endpoint}
    up = LiveServer(
        make_settings(tmp_path / "up", storage_url="s3://genq-test/up" + token(6), **where)
    ).start()
    prefix = "front" + token(6)
    config = {
        "openai": {
            "base_url": f"{up.url}/compat/openai/v1",
            "api_key": up.new_key("buyer", plan="ultimate"),
            "models": ["gpt-image-1", "dall-e-3"],
        }
    }
    front = front_server(tmp_path, config, storage_url=f"s3://genq-test/{prefix}", **where)
    try:
        with front.client(front.new_key("alice")) as api:
            ids = [
                api.post("/v1/jobs", json={"engine": f"openai/{m}", "input": inp}).json()["id"]
                for m, inp in (
                    ("gpt-image-1", {"prompt": "a red fox", "size": "256x256"}),  # b64_json
                    ("dall-e-3", {"prompt": "a blue fox", "size": "256x256"}),  # url
                )
            ]
            for job_id in ids:
                job = wait_for(api, job_id, timeout=60)
                assert job["status"] == "succeeded", job["error"]
                for out in job["outputs"]:
                    key = httpx.URL(out["url"]).path.removeprefix("/")
                    assert f"{prefix}/{key}" in seaweed.keys(f"{prefix}/files/{job_id}")
                    r = httpx.get(out["url"], follow_redirects=True)
                    assert sha(r.content) == out["sha256"]
                    with Image.open(io.BytesIO(r.content)) as im:
                        assert im.size == (256, 256)
        assert not [p for p in (tmp_path / "front" / "files").rglob("*") if p.is_file()]
    finally:
        front.stop()
        up.stop()


def test_a_lost_attempts_objects_are_deleted_the_new_ones_kept(
    seaweed: Seaweed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a re-run does first (`JobRun._run`, attempt > 1): the job's objects under
    any other token go; the new attempt's stay."""
    from genq.storage import storage_for

    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    prefix = "lost" + token(6)
    storage = storage_for(f"s3://genq-test/{prefix}", tmp_path, seaweed.endpoint)
    old, new = storage.new_output_dir("job_x"), storage.new_output_dir("job_x")
    for d in (old, new):
        d.mkdir(parents=True)
        (d / "image_0.png").write_bytes(b"png")
        storage.persist_output(storage.relative(d / "image_0.png"), "image/png")
    assert len(seaweed.keys(f"{prefix}/files/job_x/")) == 2
    storage.delete_job("job_x", keep=new)
    assert seaweed.keys(f"{prefix}/files/job_x/") == [
        f"{prefix}/files/job_x/{new.name}/image_0.png"
    ]
    assert not old.exists() and new.exists()
    storage.delete_job("job_x")
    assert seaweed.keys(f"{prefix}/files/job_x/") == []


def test_a_file_url_is_the_local_backend_elsewhere(tmp_path: Path) -> None:
    """`GENQ_STORAGE_URL=file:///path`: today's layout, under that path."""
    elsewhere = tmp_path / "elsewhere"
    srv = LiveServer(make_settings(tmp_path / "data", storage_url=f"file://{elsewhere}")).start()
    try:
        with srv.client(srv.new_key("f")) as api:
            job = run(api, "demo/text2image", prompt="x", width=64, height=64)
            rel = httpx.URL(job["outputs"][0]["url"]).path.removeprefix("/")
            assert (elsewhere / rel).is_file()
            assert sha(httpx.get(job["outputs"][0]["url"]).content) == job["outputs"][0]["sha256"]
        assert not (tmp_path / "data" / "files").exists()
    finally:
        srv.stop()
