"""genq serving HTTPS (`genq serve --ssl-certfile/--ssl-keyfile`, `GENQ_SSL_*`): the
links it hands out are https, and a client trusting the CA reads them; the fal face
needs it (its SDK only speaks https)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from genq.settings import Settings
from tests.conftest import (
    GENQ,
    LiveServer,
    Tls,
    free_port,
    genq_env,
    make_settings,
    wait_for,
    wait_healthy,
)


def test_live_server_speaks_https_with_https_links(tmp_path: Path, tls: Tls) -> None:
    srv = LiveServer(make_settings(tmp_path / "data", **tls.serve), ca_file=tls.ca_file).start()
    try:
        assert srv.url.startswith("https://127.0.0.1:")
        key = srv.new_key()
        with srv.client(key) as c:
            job = c.post(
                "/v1/jobs",
                json={"engine": "demo/text2image", "input": {"prompt": "tls", "delay_s": 0}},
            ).json()
            done = wait_for(c, job["id"])
            assert done["status"] == "succeeded", done
            url = done["outputs"][0]["url"]
            assert url.startswith(srv.url + "/files/")
            assert c.get(url).content.startswith(b"\x89PNG")
        with pytest.raises(httpx.ConnectError):  # no trust in the throwaway CA: refused
            httpx.get(srv.url + "/healthz", verify=ssl.create_default_context())
    finally:
        srv.stop()


def test_genq_serve_over_tls(tmp_path: Path, tls: Tls) -> None:
    with pytest.raises(ValueError, match="go together"):
        Settings(data_dir=tmp_path, ssl_certfile=tls.cert_file)
    data = tmp_path / "data"
    env = genq_env(data)
    port = free_port()
    serve = [*GENQ, "serve", "--data-dir", str(data), "--port", str(port)]
    half = subprocess.run(
        [*serve, "--ssl-certfile", tls.cert_file],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert half.returncode == 2 and "go together" in half.stderr
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*serve, "--ssl-certfile", tls.cert_file, "--ssl-keyfile", tls.key_file],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"https://127.0.0.1:{port}"
        wait_healthy(url, proc, log, ca_file=tls.ca_file)
        assert f"genq serving on {url}" in " ".join(log.read_text().split())
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no answer
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
