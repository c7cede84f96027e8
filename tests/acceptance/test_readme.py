"""README.md as a new user meets it: its two commands, and its tour run block by block
against a live server.

The tour runs in a fresh directory laid out as `make run` leaves the repository: a
server on a free loopback port with its data in `.genq/` and the demo key in
`.genq/demo.key`, and `.venv` (the virtualenv running these tests). Every ```sh block
runs, in order, in one bash (`set -euo pipefail`); every ```python block, in order, in
one Python session started from that shell, so it gets what the shell exported. The
README's address (http://127.0.0.1:8000) is replaced by the server's. A block is not
run only when a `<!-- readme-test: skip (reason) -->` line precedes it and the reason
is one of SKIPPED; ```text blocks are diagrams."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from markdown_it import MarkdownIt
from PIL import Image

from tests.acceptance.sessions import Python, Ran, Shell
from tests.conftest import GENQ, ROOT, free_port, genq_env

README = ROOT / "README.md"
ADDRESS = "http://127.0.0.1:8000"
MARKER = re.compile(r"<!--\s*readme-test:(?P<what>.*?)-->", re.S)
SKIP = re.compile(r"\s*skip \((?P<reason>[^()]+)\)\s*")
SKIPPED = {  # the only blocks that are not run, by the reason their marker gives
    "starts the server or the whole suite",
    "a layout of several hosts and a PostgreSQL server",
    # (tests/integration/test_gateway*.py run it against genq's own faces instead)
    "needs an account at an upstream service",
    # (the fal SDK speaks only HTTPS; tests/compat/test_fal.py runs its quick-start)
    "needs a server with TLS: tests/compat/test_fal.py runs it",
    # (an S3 endpoint of the reader's; the storage tests start SeaweedFS instead)
    "needs an S3 endpoint; tests/integration/test_s3_storage.py runs genq against SeaweedFS",
    # (tests/models builds tiny random-weight pipelines and a Cog predictor instead)
    "needs a GPU and the model's weights from the Hugging Face hub",
    "needs a Cog model's directory: tests/models/test_cog.py serves one",
}
RUN = ("sh", "python")
DIAGRAM = "text"
BLOCK_TIMEOUT_S = 120

# What the README says a block shows: a line of the block -> patterns its output holds.
PROMISES = {
    "curl -s -o job.json": [  # submit (202, the id), the stream to its end, the long-poll
        r"\A202\njob_\w{26}\n",
        r"event: completed\n",
        r'"status":"succeeded"',
    ],
    "demo/text-to-3d": [r"running \d", r"succeeded 100", r"\nglb http://\S+\.glb\n"],
    ".venv/bin/genq engines": [r"demo/text2image"],
    ".venv/bin/genq jobs watch $JOB_ID": [r"image_1"],
    'client.models.create(name="my palette")': [r"\Asucceeded out/palette/image_0\.png\n\Z"],
    "/compat/photogpt": [r"\Ajob_\w{26}\n\Z"],
    # the SDKs' quick-starts: OpenAI's image URL, then Runway's task and its output
    "print(task.status, task.output[0])": [
        r"\Ahttp://\S+/files/job_\w{26}/\S+\n",
        r"\nSUCCEEDED http://\S+/files/job_\w{26}/\S+\n\Z",
    ],
}
# What the tour leaves in its directory.
FILES = [
    "job.json",
    "out/3d/model.glb",
    "out/3d/model.usdz",
    "out/3d/model.fbx",
    "out/3d/thumbnail.png",
    "out/video/video.mp4",
    "out/video/thumbnail.png",
    "out/upscale/image_0.png",
    "out/palette/image_0.png",
    "iguana.webp",  # Replicate's quick-start: the FileOutput it read
]


@dataclass(frozen=True)
class Block:
    lang: str
    source: str
    line: int  # where the fence opens in README.md (1-based)
    marker: str | None  # what a `<!-- readme-test: ... -->` just before it says

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.lang or 'no language'})"


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks, each with the readme-test marker that precedes it."""
    blocks = []
    previous = None
    for token in MarkdownIt("commonmark").parse(text):
        if token.type == "fence":
            found = MARKER.search(previous.content) if previous is not None else None
            assert token.map is not None
            blocks.append(
                Block(
                    lang=token.info.split()[0] if token.info.strip() else "",
                    source=token.content,
                    line=token.map[0] + 1,
                    marker=found["what"] if found else None,
                )
            )
        if token.type == "code_block":  # indented code: not fenced, so not tested
            raise AssertionError(f"README.md:{token.map}: use a fenced block")
        previous = token if token.type == "html_block" else None
    return blocks


def runnable(blocks: list[Block]) -> list[Block]:
    """The blocks to run; fails on a block of another language, a marker that is not
    `skip (reason)`, or a skip whose reason is not in SKIPPED (or missing)."""
    run, skipped = [], []
    for block in blocks:
        assert block.lang in (*RUN, DIAGRAM), f"{block}: fence it as sh, python or text"
        if block.marker is None:
            if block.lang != DIAGRAM:
                run.append(block)
            continue
        skip = SKIP.fullmatch(block.marker)
        assert skip, f"{block}: a readme-test marker is `skip (reason)`, not {block.marker!r}"
        assert block.lang in RUN, f"{block}: only sh and python blocks are run or skipped"
        skipped.append(skip["reason"].strip())
    assert sorted(skipped) == sorted(SKIPPED), f"skipped {skipped}, expected {SKIPPED}"
    return run


@dataclass
class Served:
    url: str
    tour: Path  # the reader's working directory


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """`make run`'s recipe in a fresh directory: migrate, write the demo key to
    .genq/demo.key, serve the demo engines (on a free port)."""
    tour = tmp_path / "tour"
    data = tour / ".genq"
    data.mkdir(parents=True)
    (tour / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    env = genq_env(data, GENQ_ENGINES="")  # no test engines: what `make run` serves

    def genq(*args: str) -> str:
        done = subprocess.run(
            [*GENQ, *args], cwd=tour, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    genq("db", "upgrade", "--data-dir", ".genq")
    (data / "demo.key").write_text(
        genq("keys", "create", "--data-dir", ".genq", "--account", "demo", "--plan", "pro")
    )
    port = free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [*GENQ, "serve", "--data-dir", ".genq", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tour,
            env=env,
            stdout=log,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not ready(url):
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "genq serve did not come up"
            time.sleep(0.2)
        yield Served(url, tour)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def reader_env() -> dict[str, str]:
    """A terminal without genq's settings: the tour exports what it needs."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GENQ_")}


@pytest.mark.timeout(900)
def test_the_tour_runs_as_written(served: Served, tmp_path: Path) -> None:
    blocks = runnable(readme_blocks(README.read_text()))
    assert any(b.lang == "sh" for b in blocks) and any(b.lang == "python" for b in blocks)
    shell = Shell(cwd=served.tour, env=reader_env(), scratch=tmp_path / "sh")
    python: Python | None = None
    ran: list[tuple[Block, Ran]] = []
    try:
        for block in blocks:
            source = block.source.replace(ADDRESS, served.url)
            if block.lang == "sh":
                result = shell.run(source, timeout=BLOCK_TIMEOUT_S)
            else:
                if python is None:  # started from the shell, as the README says
                    python = Python(
                        served.tour / ".venv/bin/python",
                        cwd=served.tour,
                        env=shell.environ(),
                        scratch=tmp_path / "py",
                    )
                result = python.run(source, timeout=BLOCK_TIMEOUT_S)
            assert result.ok, f"{block} failed ({result.status}):\n{source}\n{result.output}"
            ran.append((block, result))
    finally:
        shell.close()
        if python is not None:
            python.close()

    for key, patterns in PROMISES.items():
        matching = [(b, r) for b, r in ran if key in b.source]
        assert len(matching) == 1, f"{key!r} is in {len(matching)} run blocks, not 1"
        block, result = matching[0]
        for pattern in patterns:
            assert re.search(pattern, result.output), f"{block}: no {pattern!r} in\n{result.output}"

    for name in FILES:
        path = served.tour / name
        assert path.is_file() and path.stat().st_size > 0, f"the tour made no {name}"
    with (
        Image.open(served.tour / "out/video/thumbnail.png") as thumbnail,
        Image.open(served.tour / "out/upscale/image_0.png") as upscaled,
    ):
        assert upscaled.size == (thumbnail.width * 4, thumbnail.height * 4)
    with Image.open(served.tour / "iguana.webp") as iguana:
        iguana.load()  # the bytes replicate.run's output read are a whole image


def test_blocks_carry_their_skip_reasons() -> None:
    """The parser sees markers, and a skip without a reason or not in SKIPPED fails."""
    text = (
        "<!-- readme-test: skip (starts the server or the whole suite) -->\n"
        "```sh\nmake run\n```\n\n"
        "<!-- readme-test: skip (a layout of several hosts and a PostgreSQL server) -->\n"
        "```sh\ngenq serve\n```\n\n```text\na -> b\n```\n\n```python\nx = 1\n```\n\n"
        "<!-- readme-test: skip (needs an account at an upstream service) -->\n"
        "```sh\ngenq upstreams check\n```\n\n"
        "<!-- readme-test: skip (needs a server with TLS: tests/compat/test_fal.py runs it) -->\n"
        "```sh\npython -c 'import fal_client'\n```\n"
        "<!-- readme-test: skip (needs an S3 endpoint; tests/integration/test_s3_storage.py"
        " runs genq against SeaweedFS) -->\n"
        "```sh\ngenq serve\n```\n"
        "<!-- readme-test: skip (needs a GPU and the model's weights from the Hugging Face"
        " hub) -->\n"
        "```sh\ngenq models pull sdxl/turbo\n```\n"
        "<!-- readme-test: skip (needs a Cog model's directory: tests/models/test_cog.py"
        " serves one) -->\n"
        "```sh\npython -m cog.server.http\n```\n"
    )
    blocks = readme_blocks(text)
    assert [(b.lang, b.line) for b in runnable(blocks)] == [("python", 15)]
    reason = "skip (starts the server or the whole suite)"
    for bad in ("skip", "skip ()", "skip (because)", "run"):
        with pytest.raises(AssertionError):
            runnable(readme_blocks(text.replace(reason, bad)))
    with pytest.raises(AssertionError):  # an unknown language is neither run nor skipped
        runnable(readme_blocks(text + "\n```console\n$ ls\n```\n"))


def test_make_run_installs_no_test_tools() -> None:
    """`make run` installs what serving uses (assimp for FBX); Chromium (the browser
    tests), curl (this tour) and torch (the model tests: a GPU host brings its own CUDA
    build) come with `make test`, which stays self-sufficient."""

    def plan(target: str) -> str:
        done = subprocess.run(
            ["make", "-n", "-B", "-C", str(ROOT), target],  # -B: the stamped steps too
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    run, test = plan("run"), plan("test")
    assert "assimp-utils" in run and "chromium" not in run
    assert "assimp-utils" in test and "chromium" in test and "curl" in test
    assert "torch==" not in run and "torch==" in test and "[dev,diffusers]" in test
