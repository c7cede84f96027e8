"""Outputs' downloads, and the engines, files, models and account resources."""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from genq.client import (
    Account,
    AsyncClient,
    Client,
    Engine,
    File,
    Job,
    JobOutput,
    Model,
    NotFoundError,
)

from .fakes import OUTPUT_BYTES, FakeServer, problem


@pytest.fixture
def done(client: Client) -> Job:
    return client.jobs.run(engine="demo/text2image", input={})


def test_output_download_into_a_directory(done: Job, server: FakeServer, tmp_path: Path):
    image = done.output("image_0")
    assert image.kind == "image" and image.width == 512
    path = image.download(tmp_path)
    assert path == tmp_path / "image_0.png" and path.read_bytes() == OUTPUT_BYTES
    # A server-relative URL is made absolute; the file name keeps the URL's extension.
    assert done.output("thumbnail").url == f"http://genq.test/files/{done.id}/t/thumbnail.webp"
    thumb = done.output("thumbnail").download(tmp_path)
    assert thumb == tmp_path / "thumbnail.webp"
    assert server.requests[-1].url == f"http://genq.test/files/{done.id}/t/thumbnail.webp"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image_0.png", "thumbnail.webp"]


def test_output_download_into_a_new_directory(done: Job, tmp_path: Path):
    # a path that does not exist yet and has no extension is a directory to make
    path = done.output("image_0").download(tmp_path / "out")
    assert path == tmp_path / "out" / "image_0.png" and path.read_bytes() == OUTPUT_BYTES


def test_output_download_to_a_file(done: Job, tmp_path: Path):
    target = tmp_path / "sub" / "fox.png"
    assert done.outputs[0].download(target) == target
    assert target.read_bytes() == OUTPUT_BYTES


def test_a_failed_download_leaves_no_file(
    client: Client, done: Job, server: FakeServer, tmp_path: Path
):
    server.fail_next(problem(404, "not_found", "no such file"))
    client._core.max_retries = 0
    with pytest.raises(NotFoundError):
        client.jobs.download(done.outputs[0], tmp_path)
    assert list(tmp_path.iterdir()) == []


class BrokenStream(httpx.SyncByteStream):
    """A body that breaks after its first chunk, like a reset connection."""

    def __iter__(self) -> Iterator[bytes]:
        yield OUTPUT_BYTES[:10]
        raise httpx.ReadError("connection reset")


def test_a_broken_download_is_retried_and_leaves_no_partial_file(
    client: Client, done: Job, server: FakeServer, tmp_path: Path
):
    server.fail_next(httpx.Response(200, stream=BrokenStream()))
    path = client.jobs.download(done.outputs[0], tmp_path / "x.png")
    assert path.read_bytes() == OUTPUT_BYTES
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_a_server_chosen_name_stays_inside_the_directory(client: Client, tmp_path: Path):
    evil = JobOutput(name="../../etc/passwd", url="http://genq.test/files/x.png")
    path = client.jobs.download(evil, tmp_path)
    assert path.parent == tmp_path and path.name.endswith("etc_passwd.png")


def test_the_api_key_is_not_sent_to_other_hosts(client: Client, server: FakeServer, tmp_path: Path):
    same = JobOutput(name="a", url="http://genq.test/files/a.png")
    other = JobOutput(name="b", url="https://cdn.example/files/b.png")
    client.jobs.download(same, tmp_path)
    client.jobs.download(other, tmp_path)
    assert "authorization" in server.requests[0].headers
    assert "authorization" not in server.requests[1].headers


def test_an_unbound_output_says_how_to_download(tmp_path: Path):
    output = JobOutput(name="a", url="http://x/a.png")
    with pytest.raises(TypeError, match=r"client\.jobs\.download"):
        output.download(tmp_path)


async def test_async_output_download(aclient: AsyncClient, tmp_path: Path):
    job = await aclient.jobs.run(engine="demo/text2image", input={})
    path = await job.outputs[0].adownload(tmp_path)
    assert path.read_bytes() == OUTPUT_BYTES
    with pytest.raises(TypeError, match="adownload"):
        job.outputs[0].download(tmp_path)


def test_engines(client: Client, server: FakeServer):
    engines = client.engines.list()
    assert all(isinstance(e, Engine) for e in engines)
    assert engines[0].name == "demo/text2image" and engines[0].price == 20
    assert engines[0].media == ["image"] and engines[0].typical_duration_s == 2.5
    engine = client.engines.retrieve("demo/text2image")
    assert engine.task == "text2image" and engine.input_schema == {"type": "object"}
    assert server.requests[-1].url.raw_path == b"/v1/engines/demo/text2image"
    with pytest.raises(NotFoundError) as info:
        client.engines.retrieve("demo/nope")
    assert info.value.code == "engine_not_found"


def test_files_upload_a_path_bytes_or_a_file_object(
    client: Client, server: FakeServer, tmp_path: Path
):
    src = tmp_path / "fox.png"
    src.write_bytes(b"png-bytes")
    record = client.files.upload(src)
    assert isinstance(record, File) and record.filename == "fox.png"
    assert record.content_type == "image/png"
    assert b'name="file"; filename="fox.png"' in server.requests[-1].content
    assert client.files.upload(b"raw", filename="a.jpg").content_type == "image/jpeg"
    assert client.files.upload(b"raw").filename == "upload"
    blob = client.files.upload(io.BytesIO(b"x"), filename="m.glb", content_type="model/gltf-binary")
    assert blob.content_type == "model/gltf-binary"
    assert client.files.retrieve(record.id) == record


def test_models(client: Client, server: FakeServer):
    model = client.models.create(name="my-style", metadata={"k": "v"})
    assert isinstance(model, Model) and model.status == "created"
    assert model.engine == "demo/train"
    job = client.models.train(model.id, input={"steps": 10})
    assert isinstance(job, Job) and job.input == {"steps": 10}
    assert re.search(rb'"input":\s*\{"steps":\s*10\}', server.requests[-1].content)
    again = client.models.retrieve(model.id)
    assert again.status == "training" and again.job_id == job.id
    assert [m.id for m in client.models.list()] == [model.id]


def test_account(client: Client):
    account = client.account.retrieve()
    assert isinstance(account, Account)
    assert account.id == "acct_1" and account.plan == "free" and account.key_prefix == "gq_test"
    assert account.model_extra is not None and account.model_extra["credits"] == {"balance": 1000}


async def test_async_resources(aclient: AsyncClient, server: FakeServer):
    assert len(await aclient.engines.list()) == 4
    assert (await aclient.engines.retrieve("demo/fail")).name == "demo/fail"
    record = await aclient.files.upload(b"abc", filename="a.png")
    assert (await aclient.files.retrieve(record.id)).id == record.id
    model = await aclient.models.create(name="m")
    assert (await aclient.models.train(model.id)).status == "queued"
    assert (await aclient.models.retrieve(model.id)).status == "training"
    assert len(await aclient.models.list()) == 1
    assert (await aclient.account.retrieve()).name == "test"


def test_default_configuration_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GENQ_BASE_URL", "http://example.test:9000/")
    monkeypatch.setenv("GENQ_API_KEY", "gq_env")
    with Client() as c:
        assert str(c.base_url) == "http://example.test:9000" and c.api_key == "gq_env"
    monkeypatch.delenv("GENQ_BASE_URL")
    with Client(api_key="gq_x") as c:
        assert str(c.base_url) == "http://127.0.0.1:8000" and c.api_key == "gq_x"


def test_a_passed_http_client_is_not_closed():
    http = httpx.Client()
    with Client("http://x", "k", http_client=http):
        pass
    assert not http.is_closed
    http.close()


# -- where downloads land, and how -------------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_download_never_overwrites_unless_asked(done: Job, tmp_path: Path):
    image = done.output("image_0")
    mine = tmp_path / "image_0.png"
    mine.write_bytes(b"my own file")
    with pytest.raises(FileExistsError) as info:
        image.download(tmp_path)
    assert info.value.filename == str(mine)
    assert mine.read_bytes() == b"my own file"
    assert [p.name for p in tmp_path.iterdir()] == ["image_0.png"]  # no temporary file left
    with pytest.raises(FileExistsError):
        image.download(mine)  # a file path is refused the same way
    assert image.download(tmp_path, overwrite=True) == mine
    assert mine.read_bytes() == OUTPUT_BYTES


async def test_async_download_never_overwrites_unless_asked(aclient: AsyncClient, tmp_path: Path):
    job = await aclient.jobs.run(engine="demo/text2image", input={})
    path = await job.outputs[0].adownload(tmp_path)
    with pytest.raises(FileExistsError):
        await job.outputs[0].adownload(tmp_path)
    assert await job.outputs[0].adownload(tmp_path, overwrite=True) == path


def test_a_file_that_appears_during_the_download_is_kept(
    client: Client, done: Job, server: FakeServer, tmp_path: Path
):
    dest = tmp_path / "image_0.png"

    class Racing(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield OUTPUT_BYTES[:10]
            dest.write_bytes(b"written meanwhile")
            yield OUTPUT_BYTES[10:]

    server.fail_next(httpx.Response(200, stream=Racing()))
    with pytest.raises(FileExistsError):
        client.jobs.download(done.outputs[0], tmp_path)
    assert dest.read_bytes() == b"written meanwhile"
    assert [p.name for p in tmp_path.iterdir()] == ["image_0.png"]


def test_an_interrupted_download_leaves_no_file(
    client: Client, done: Job, server: FakeServer, tmp_path: Path
):
    class Interrupted(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield OUTPUT_BYTES[:10]
            raise KeyboardInterrupt

    server.fail_next(httpx.Response(200, stream=Interrupted()))
    with pytest.raises(KeyboardInterrupt):
        client.jobs.download(done.outputs[0], tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("umask_022")
def test_downloaded_files_get_the_umask_mode(done: Job, tmp_path: Path):
    path = done.outputs[0].download(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    os.umask(0o027)
    again = done.outputs[0].download(tmp_path, overwrite=True)
    assert stat.S_IMODE(again.stat().st_mode) == 0o640


def test_outputs_named_by_their_format_are_saved_by_their_kind(client: Client, tmp_path: Path):
    job = client.jobs.run(engine="demo/text-to-3d", input={})
    saved = client.jobs.download_all(job, tmp_path)
    assert {name: p.name for name, p in saved.items()} == {
        "glb": "model.glb",
        "usdz": "model.usdz",
        "fbx": "model.fbx",
        "thumbnail": "thumbnail.png",
    }
    assert job.output("glb").download(tmp_path / "one") == tmp_path / "one" / "model.glb"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.fbx",
        "model.glb",
        "model.usdz",
        "one",
        "thumbnail.png",
    ]


def _bound(client: Client, outputs: list[dict[str, object]]) -> Job:
    job = Job.model_validate(
        {"id": "job_x", "engine": "e", "status": "succeeded", "outputs": outputs}
    )
    return client._core.bind(job)


def test_a_servers_filename_is_used_and_kept_inside_the_directory(client: Client, tmp_path: Path):
    job = _bound(
        client,
        [
            {"name": "a", "url": "/files/a.bin", "filename": "fox portrait.png"},
            {"name": "b", "url": "/files/b.bin", "filename": "../../etc/passwd"},
            {"name": "c", "url": "/files/c.bin", "filename": ".."},
        ],
    )
    saved = client.jobs.download_all(job, tmp_path)
    assert [p.name for p in saved.values()] == ["fox_portrait.png", "_.._etc_passwd", "c.bin"]
    assert all(p.parent == tmp_path for p in saved.values())


def test_no_two_outputs_of_a_job_share_a_file(client: Client, tmp_path: Path):
    job = _bound(
        client,
        [
            {"name": "glb", "kind": "model", "url": "/files/glb.glb"},
            {"name": "model", "kind": "model", "url": "/files/model.glb"},
            {"name": "Model", "kind": "model", "url": "/files/Model.glb"},
            {"name": "a b", "url": "/files/x.png"},
            {"name": "a_b", "url": "/files/y.png"},
        ],
    )
    names = [o.download(tmp_path).name for o in job.outputs]
    assert names == ["model.glb", "model-2.glb", "Model-3.glb", "a_b.png", "a_b-2.png"]
    assert len(list(tmp_path.iterdir())) == 5


def test_download_all_refuses_before_fetching_anything(
    client: Client, server: FakeServer, tmp_path: Path
):
    job = client.jobs.run(engine="demo/text-to-3d", input={})
    (tmp_path / "thumbnail.png").write_bytes(b"mine")
    fetched = len(server.requests)
    with pytest.raises(FileExistsError) as info:
        client.jobs.download_all(job, tmp_path)
    assert info.value.filename == str(tmp_path / "thumbnail.png")
    assert len(server.requests) == fetched
    assert [p.name for p in tmp_path.iterdir()] == ["thumbnail.png"]
    client.jobs.download_all(job, tmp_path, overwrite=True)
    assert (tmp_path / "thumbnail.png").read_bytes() == OUTPUT_BYTES
