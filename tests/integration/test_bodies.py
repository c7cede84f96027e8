"""Request bodies against a real server: each kind has its own limit, a body past it is
413 however it is sent (declared or chunked, JSON or upload, hot path or FastAPI route),
and a body that does not arrive is 408 and the connection closed, not waited on."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, make_settings

JSON_BYTES = 16 << 10
UPLOAD_BYTES = 256 << 10
GRACE_S = 1.0


@pytest.fixture
def small(tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path / "data",
        max_json_bytes=JSON_BYTES,
        max_upload_bytes=UPLOAD_BYTES,
        body_grace_s=GRACE_S,
    )
    srv = LiveServer(settings).start()
    try:
        yield srv
    finally:
        srv.stop()


def raw_request(srv: LiveServer, head: str, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.settings.port), timeout=15)
    sock.sendall(head.encode("latin-1") + b"\r\n" + body)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes, bool]:
    """Status, headers, body, and whether the server closed the connection after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    sock.settimeout(5)
    try:
        closed = sock.recv(1) == b""
    except (TimeoutError, ConnectionResetError):
        closed = False
    return status, headers, rest[:length], closed


def head(method: str, path: str, key: str, *lines: str) -> str:
    return "".join(
        f"{x}\r\n"
        for x in (
            f"{method} {path} HTTP/1.1",
            "Host: 127.0.0.1",
            f"Authorization: Bearer {key}",
            *lines,
        )
    )


def chunked(payload: bytes, size: int = 8192) -> bytes:
    out = b"".join(
        b"%x\r\n%s\r\n" % (len(payload[i : i + size]), payload[i : i + size])
        for i in range(0, len(payload), size)
    )
    return out + b"0\r\n\r\n"


BOUNDARY = "genqboundary"


def multipart(content: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="c.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def files_of(srv: LiveServer) -> list[Path]:
    return [p for p in (srv.settings.data_dir / "uploads").rglob("*") if p.is_file()]


def test_an_upload_past_its_limit_is_413_whether_declared_or_chunked(small: LiveServer) -> None:
    key = small.new_key("alice")
    too_big = b"\0" * (UPLOAD_BYTES + (128 << 10))
    with small.client(key) as api:
        ok = api.post("/v1/files", files={"file": ("a.bin", b"\0" * (UPLOAD_BYTES - 1024))})
        assert ok.status_code == 201, ok.text  # an upload may be far larger than JSON
        declared = api.post("/v1/files", files={"file": ("b.bin", too_big)})
        assert declared.status_code == 413 and declared.json()["code"] == "too_large"
    form = multipart(too_big)
    sock = raw_request(
        small,
        head(
            "POST",
            "/v1/files",
            key,
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
            "Transfer-Encoding: chunked",
        ),
        chunked(form),
    )
    with sock:
        status, headers, body, _ = read_response(sock)
    assert status == 413, body  # before: the multipart parser's error, a 400
    assert json.loads(body)["code"] == "too_large"
    assert headers["content-type"] == "application/problem+json"
    assert len(files_of(small)) == 1  # only the upload that fit


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/models"])
def test_a_json_body_past_its_limit_is_413_without_waiting_for_an_upload_sized_one(
    small: LiveServer, path: str
) -> None:
    """The JSON limit applies to JSON routes, the hot `POST /v1/jobs` as well as FastAPI's;
    the server answers once the limit is passed, not after reading the rest."""
    key = small.new_key("alice")
    doc = json.dumps({"engine": "test/echo", "input": {"pad": "x" * (JSON_BYTES * 2)}}).encode()
    with small.client(key) as api:
        declared = api.post(path, content=doc, headers={"content-type": "application/json"})
        assert declared.status_code == 413 and declared.json()["code"] == "too_large"
    # chunked, with only its first part sent: the answer comes before the rest
    start = time.monotonic()
    sock = raw_request(
        small,
        head("POST", path, key, "Content-Type: application/json", "Transfer-Encoding: chunked"),
        chunked(doc)[: len(doc) // 2 + 4096],
    )
    with sock:
        status, headers, body, closed = read_response(sock)
    assert status == 413, body
    assert json.loads(body)["code"] == "too_large"
    assert headers.get("connection") == "close" and closed
    assert time.monotonic() - start < GRACE_S  # answered, not timed out


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/models", "/v1/files"])
def test_a_body_that_does_not_arrive_is_408_and_the_connection_closed(
    small: LiveServer, path: str
) -> None:
    key = small.new_key("alice")
    if path == "/v1/files":
        ctype, sent = f"multipart/form-data; boundary={BOUNDARY}", multipart(b"\1" * 500)[:200]
    else:
        ctype, sent = "application/json", b'{"engine": "test/echo"'
    start = time.monotonic()
    sock = raw_request(
        small, head("POST", path, key, f"Content-Type: {ctype}", "Content-Length: 4000"), sent
    )
    with sock:
        status, headers, body, closed = read_response(sock)
    took = time.monotonic() - start
    assert status == 408, body
    problem = json.loads(body)
    assert problem["code"] == "request_timeout" and problem["status"] == 408
    assert headers.get("connection") == "close" and closed
    assert GRACE_S * 0.9 <= took < GRACE_S + 5  # waited out its grace, not a proxy's minutes
    with httpx.Client(base_url=small.url, headers={"Authorization": f"Bearer {key}"}) as api:
        assert api.get("/v1/jobs").json()["data"] == []  # nothing was made of it


def test_a_slow_but_steady_upload_is_not_cut_off(small: LiveServer) -> None:
    """A body that keeps arriving (here 64 KiB/s, past the grace) is read to its end."""
    key = small.new_key("alice")
    content = b"\1" * (160 << 10)
    payload = multipart(content)
    sock = raw_request(
        small,
        head(
            "POST",
            "/v1/files",
            key,
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
            f"Content-Length: {len(payload)}",
        ),
    )
    with sock:
        for i in range(0, len(payload), 16 << 10):
            sock.sendall(payload[i : i + (16 << 10)])
            time.sleep(0.25)
        status, _, body, _ = read_response(sock)
    assert status == 201, body
    assert json.loads(body)["bytes"] == len(content)
