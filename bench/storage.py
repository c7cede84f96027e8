"""Storage throughput: uploads (`POST /v1/files`, through genq into its storage) and
downloads (`GET /v1/files/{id}/content`) of a 1 MB image and a 200 MB video (random
bytes), on the local disk backend and on SeaweedFS's S3 gateway (a local `weed
server`, as the tests start it), downloads by presigned redirect (followed) and through
genq (`GENQ_STORAGE_PROXY=1`). Each measurement is repeated (`--repeats`, default 3)
and the median reported, in MB/s (1 MB = 10^6 bytes).

    make -C bench storage      (= .venv/bin/python bench/storage.py --repeats 3)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.s3 import Seaweed

from bench.common import machine, now_iso, running_server, save_json

SIZES = {"image 1 MB": 1_000_000, "video 200 MB": 200_000_000}


def upload(client: httpx.Client, path: Path, name: str) -> tuple[float, str]:
    with path.open("rb") as f:
        t0 = time.perf_counter()
        r = client.post("/v1/files", files={"file": (name, f, "application/octet-stream")})
        took = time.perf_counter() - t0
    r.raise_for_status()
    return took, str(r.json()["id"])


def download(client: httpx.Client, file_id: str, size: int) -> float:
    got = 0
    t0 = time.perf_counter()
    with client.stream("GET", f"/v1/files/{file_id}/content", follow_redirects=True) as r:
        r.raise_for_status()
        for chunk in r.iter_raw(1 << 20):
            got += len(chunk)
    took = time.perf_counter() - t0
    if got != size:
        raise RuntimeError(f"downloaded {got} bytes of {size}")
    return took


def run_config(
    label: str, env: dict[str, str], files: dict[str, Path], repeats: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with running_server("genq-serve", "demo/noop", None, **env) as (server, keys):
        headers = {"Authorization": f"Bearer {keys[0]['key']}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=600) as client:
            for what, path in files.items():
                size = path.stat().st_size
                ups, downs, ids = [], [], []
                for _ in range(repeats):
                    took, file_id = upload(client, path, f"{what.split()[0]}.bin")
                    ups.append(took)
                    ids.append(file_id)
                for file_id in ids:
                    downs.append(download(client, file_id, size))
                out[what] = {
                    "upload_s": ups,
                    "download_s": downs,
                    "upload_mb_s": round(size / 1e6 / statistics.median(ups), 1),
                    "download_mb_s": round(size / 1e6 / statistics.median(downs), 1),
                }
                print(label, what, out[what]["upload_mb_s"], out[what]["download_mb_s"], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="genq-bench-storage-") as tmp:
        root = Path(tmp)
        files = {}
        for what, size in SIZES.items():
            path = root / f"{size}.bin"
            with path.open("wb") as f:
                left = size
                while left:
                    n = min(left, 8 << 20)
                    f.write(os.urandom(n))
                    left -= n
            files[what] = path
        big = str(max(SIZES.values()) + (1 << 20))
        results: dict[str, Any] = {
            "local disk": run_config("local", {"GENQ_MAX_UPLOAD_BYTES": big}, files, args.repeats)
        }
        # room for every upload (SeaweedFS answers 500 once its volumes are full)
        weed = Seaweed(root / "weed", volumes=200).start()
        try:
            s3 = {
                "GENQ_MAX_UPLOAD_BYTES": big,
                "GENQ_STORAGE_URL": "s3://genq-test/bench",
                "GENQ_S3_ENDPOINT_URL": weed.endpoint,
                **weed.env(),
            }
            results["s3 redirect"] = run_config("s3-redirect", s3, files, args.repeats)
            results["s3 proxy"] = run_config(
                "s3-proxy", {**s3, "GENQ_STORAGE_PROXY": "1"}, files, args.repeats
            )
        finally:
            weed.stop()
    path = save_json(
        "storage.json", {"at": now_iso(), "machine": machine(), "repeats": args.repeats, **results}
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
