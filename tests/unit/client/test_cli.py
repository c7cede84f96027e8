"""The client-side CLI (`run`, `jobs ...`, `engines`) against the fake server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

from genq.cli_client import parse_file_inputs, parse_inputs, register
from genq.client import Client

from .conftest import FakeClock, make_client
from .fakes import API_KEY, BASE_URL, OUTPUT_BYTES, FakeServer

Invoke = Callable[..., Result]


@pytest.fixture
def made() -> list[tuple[str | None, str | None]]:
    return []


@pytest.fixture
def cli(
    server: FakeServer, clock: FakeClock, made: list[tuple[str | None, str | None]]
) -> Iterator[Invoke]:
    clients: list[Client] = []

    def factory(*, base_url: str | None, api_key: str | None) -> Client:
        made.append((base_url, api_key))
        clients.append(
            make_client(server, clock, base_url=base_url or BASE_URL, api_key=api_key or API_KEY)
        )
        return clients[-1]

    app = typer.Typer()
    register(app, client_factory=factory)
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, list(args), env=env)

    yield invoke
    for c in clients:
        c._http.close()


def body_of_create(server: FakeServer) -> dict[str, object]:
    (request,) = [r for r in server.requests if r.method == "POST" and r.url.path == "/v1/jobs"]
    body: dict[str, object] = json.loads(request.content)
    return body


def test_parse_inputs():
    assert parse_inputs(
        [
            "num_images=2",
            "prompt=a red fox",
            "strength=0.5",
            "flag=true",
            'tags=["a","b"]',
            'opts={"x":1}',
            "seed=007",
            "empty=",
            'quoted="2"',
            "eq=a=b",
        ]
    ) == {
        "num_images": 2,
        "prompt": "a red fox",
        "strength": 0.5,
        "flag": True,
        "tags": ["a", "b"],
        "opts": {"x": 1},
        "seed": "007",
        "empty": "",
        "quoted": "2",
        "eq": "a=b",
    }
    with pytest.raises(typer.BadParameter):
        parse_inputs(["no-equals-sign"])


def test_parse_file_inputs(tmp_path: Path):
    f = tmp_path / "in.png"
    f.write_bytes(b"x")
    assert parse_file_inputs([f"image=@{f}", f"mask={f}"]) == {"image": f, "mask": f}
    with pytest.raises(typer.BadParameter, match="no such file"):
        parse_file_inputs([f"image=@{tmp_path / 'missing.png'}"])


def test_run_waits_and_downloads(cli: Invoke, server: FakeServer, tmp_path: Path):
    out = tmp_path / "out"
    result = cli(
        "run", "demo/text2image", "-i", "num_images=2", "-i", "prompt=a red fox", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    assert body_of_create(server)["input"] == {"num_images": 2, "prompt": "a red fox"}
    assert (out / "image_0.png").read_bytes() == OUTPUT_BYTES
    assert (out / "thumbnail.webp").exists()
    assert result.stdout.splitlines() == [
        f"image_0\t{out / 'image_0.png'}",
        f"thumbnail\t{out / 'thumbnail.webp'}",
    ]
    assert "succeeded" in result.stderr  # the progress bar's last state


def test_run_prints_the_job_id_first_on_stderr(cli: Invoke, tmp_path: Path):
    result = cli("run", "demo/text2image", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == "job job_0001"
    assert "job_0001" not in result.stdout  # stdout: the files, for scripts
    as_json = cli("run", "demo/text2image", "--json")
    assert as_json.stderr.splitlines()[0] == "job job_0002"
    assert json.loads(as_json.stdout)["id"] == "job_0002"


def test_run_saves_outputs_under_names_a_user_expects(cli: Invoke, tmp_path: Path):
    result = cli("run", "demo/text-to-3d", "-i", "prompt=a chair", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"glb\t{tmp_path / 'model.glb'}",
        f"usdz\t{tmp_path / 'model.usdz'}",
        f"fbx\t{tmp_path / 'model.fbx'}",
        f"thumbnail\t{tmp_path / 'thumbnail.png'}",
    ]


def test_run_out_refuses_to_overwrite_without_force(cli: Invoke, tmp_path: Path):
    assert cli("run", "demo/text-to-3d", "--out", str(tmp_path)).exit_code == 0
    (tmp_path / "model.glb").write_bytes(b"edited by hand")
    again = cli("run", "demo/text-to-3d", "--out", str(tmp_path))
    assert again.exit_code == 2
    assert again.stdout == ""
    last = again.stderr.splitlines()[-1]
    assert last.startswith(f"error: {tmp_path / 'model.glb'} already exists; nothing was")
    assert f"genq jobs watch job_0002 --out {tmp_path} --force" in last
    assert (tmp_path / "model.glb").read_bytes() == b"edited by hand"
    assert len(list(tmp_path.iterdir())) == 4  # no partial or temporary files
    forced = cli("run", "demo/text-to-3d", "--out", str(tmp_path), "--force")
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "model.glb").read_bytes() == OUTPUT_BYTES
    watched = cli("jobs", "watch", "job_0002", "--out", str(tmp_path), "--force")
    assert watched.exit_code == 0 and watched.stdout.startswith("glb\t")


def test_run_prints_output_urls(cli: Invoke):
    result = cli("run", "demo/text2image", "-i", "prompt=fox")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "image_0\thttp://genq.test/files/job_0001/t/image_0.png"


def test_run_uploads_files(cli: Invoke, server: FakeServer, tmp_path: Path):
    src = tmp_path / "in.png"
    src.write_bytes(b"png")
    result = cli("run", "demo/text2image", "-f", f"image=@{src}", "--no-wait")
    assert result.exit_code == 0, result.output
    assert body_of_create(server)["input"] == {"image": "file_0001"}
    assert result.stdout.strip() == "job_0001"


def test_run_no_wait_json(cli: Invoke, server: FakeServer):
    result = cli("run", "demo/text2image", "--no-wait", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["status"] == "queued"
    assert [r.method for r in server.requests] == ["POST"]


def test_run_json_waits_for_the_result(cli: Invoke, tmp_path: Path):
    result = cli("run", "demo/text2image", "--json", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["status"] == "succeeded"
    assert job["downloads"] == {
        "image_0": str(tmp_path / "image_0.png"),
        "thumbnail": str(tmp_path / "thumbnail.webp"),
    }


def test_a_failed_job_exits_1_with_its_error(cli: Invoke):
    result = cli("run", "demo/fail")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "job job_0001 failed: engine_error: the engine crashed" in result.stderr


def test_sdk_errors_are_one_line_and_exit_2(cli: Invoke):
    result = cli("run", "demo/nope", "-i", "prompt=x")
    assert result.exit_code == 2
    assert result.stderr == "error: engine_not_found: no engine 'demo/nope'\n"
    assert "Traceback" not in result.output


def test_a_bad_key_gets_a_hint(cli: Invoke):
    result = cli("engines", "--api-key", "wrong")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unauthorized: A valid API key is required")
    assert "GENQ_API_KEY" in result.stderr


def test_bad_input_syntax_is_a_usage_error(cli: Invoke):
    result = cli("run", "demo/text2image", "-i", "prompt")
    assert result.exit_code == 2 and "key=value" in result.output


def test_connection_options_and_env(cli: Invoke, made: list[tuple[str | None, str | None]]):
    cli("engines", "--base-url", "http://genq.test", "--api-key", API_KEY)
    cli("engines", env={"GENQ_BASE_URL": "http://genq.test/", "GENQ_API_KEY": API_KEY})
    cli("engines", env={"GENQ_BASE_URL": None, "GENQ_API_KEY": None})  # type: ignore[dict-item]
    assert made == [("http://genq.test", API_KEY), ("http://genq.test/", API_KEY), (None, None)]


def test_jobs_get(cli: Invoke, server: FakeServer):
    job = server.add_job()
    result = cli("jobs", "get", job.id)
    assert result.exit_code == 0, result.output
    assert "job_0001" in result.stdout and "queued" in result.stdout
    data = json.loads(cli("jobs", "get", job.id, "--json").stdout)
    assert data["id"] == job.id and data["status"] == "running"


def test_jobs_list(cli: Invoke, server: FakeServer):
    for _ in range(3):
        server.add_job()
    result = cli("jobs", "list", "--limit", "2", "--status", "queued")
    assert result.exit_code == 0, result.output
    assert "job_0003" in result.stdout and "job_0002" in result.stdout
    assert "job_0001" not in result.stdout
    assert "more: --after job_0002" in result.stderr
    assert server.requests[-1].url.params["status"] == "queued"
    page = json.loads(cli("jobs", "list", "--json").stdout)
    assert [j["id"] for j in page["data"]] == ["job_0003", "job_0002", "job_0001"]


def test_jobs_cancel(cli: Invoke, server: FakeServer):
    job = server.add_job()
    result = cli("jobs", "cancel", job.id)
    assert result.exit_code == 0 and result.stdout == f"{job.id} canceled\n"
    again = cli("jobs", "cancel", job.id)
    assert again.exit_code == 2 and again.stderr.startswith("error: conflict:")


def test_jobs_watch(cli: Invoke, server: FakeServer):
    job = server.add_job()
    result = cli("jobs", "watch", job.id)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("image_0\t")
    failing = server.add_job("demo/fail")
    assert cli("jobs", "watch", failing.id).exit_code == 1


def test_jobs_watch_timeout(cli: Invoke, server: FakeServer):
    job = server.add_job("demo/static")
    result = cli("jobs", "watch", job.id, "--timeout", "2")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: job {job.id} still running after waiting 2s"
        f" (it goes on; follow it: genq jobs watch {job.id})"
    )


def test_engines(cli: Invoke):
    result = cli("engines")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TASK", "PRICE", "MEDIA", "TYPICAL"]
    assert lines[1].split() == ["demo/text2image", "text2image", "20", "image", "2.5s"]
    data = json.loads(cli("engines", "--json").stdout)
    assert [e["name"] for e in data] == [
        "demo/text2image",
        "demo/fail",
        "demo/static",
        "demo/text-to-3d",
    ]
