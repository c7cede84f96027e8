"""What genq adds around a Cog model: a job through genq + Cog vs the same prediction
sent to the Cog server directly, per job, as a ratio.

    python bench/cog_overhead.py                  # from the repository's root
    python bench/cog_overhead.py --jobs 20 --append   # and append a section to RESULTS.md

One real Cog server (`python -m cog.server.http`, coglet, no Docker) serving the tests'
model (tests/models/cog_predictor.py: `steps` steps of `step_s` seconds, then a 32x32
PNG and a text), and one `genq serve` subprocess (SQLite, its defaults) with
`GENQ_COG` naming that server. For each workload (an empty prediction, and a 1 s one
of 10 steps) and each path, --jobs jobs one after another:

- direct: `POST /predictions` (synchronous: the answer holds the outputs, the image as a
  `data:` URI), timed from the request to the answer;
- genq: `POST /v1/jobs`, then the job long-polled (`GET /v1/jobs/{id}?wait=30`) until
  terminal, timed from the submit to the terminal answer: the claim, the hand-over
  (`PUT /predictions/{id}` with the webhook), the webhooks back, the outputs copied into
  genq's storage, the job settled. Outputs are not downloaded on either path.

The first genq job of a run is reported apart (its engine's first hand-over); the
others are the "warm" jobs. Prints one JSON document; --append writes a section to
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    ROOT,
    free_port,
    machine,
    now_iso,
    percentile,
    running_server,
)

MODEL = ROOT / "tests" / "models" / "cog_predictor.py"
SCHEMA = {
    "components": {
        "schemas": {
            "Input": {
                "type": "object",
                "required": ["prompt"],
                "properties": {
                    "prompt": {"type": "string"},
                    "steps": {"type": "integer", "minimum": 1},
                    "step_s": {"type": "number", "minimum": 0},
                },
            }
        }
    }
}
WORKLOADS = {
    "empty prediction (1 step, 0 s)": {"steps": 1, "step_s": 0.0},
    "1 s prediction (10 steps of 0.1 s)": {"steps": 10, "step_s": 0.1},
}


def start_cog(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    where = root / "model"
    (where / ".cog").mkdir(parents=True)
    (where / "predict.py").write_text(MODEL.read_text())
    (where / ".cog" / "openapi_schema.json").write_text(json.dumps(SCHEMA))
    (root / "marks").mkdir()
    port = free_port()
    env = dict(os.environ)
    env.update(
        PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
        COG_PREDICT_TYPE_STUB=f"{where / 'predict.py'}:Predictor",
        PORT=str(port),
        COG_TEST_SETUP_S="0",
        COG_TEST_MARKS=str(root / "marks"),
        COG_LOG_LEVEL="warn",
    )
    with (root / "cog.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"],
            cwd=where,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health-check", timeout=2).json().get("status") == "READY":
                return proc, url
        except (httpx.HTTPError, ValueError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((root / "cog.log").read_text()[-3000:])
        time.sleep(0.1)


def direct(url: str, data: dict[str, Any], n: int) -> list[float]:
    out = []
    with httpx.Client(timeout=120) as c:
        for i in range(n):
            # (untimed) the slot of the previous prediction free again
            while c.get(f"{url}/health-check").json().get("status") != "READY":
                time.sleep(0.01)
            body = {"input": {"prompt": f"direct-{i}", **data}}
            t0 = time.perf_counter()
            r = c.post(f"{url}/predictions", json=body)
            out.append(time.perf_counter() - t0)
            assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    return out


def through_genq(api: httpx.Client, data: dict[str, Any], n: int, tag: str) -> list[float]:
    out = []
    for i in range(n):
        body = {"engine": "cog/bench/model", "input": {"prompt": f"{tag}-{i}", **data}}
        t0 = time.perf_counter()
        r = api.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        job = r.json()
        while job["status"] not in ("succeeded", "failed", "canceled"):
            job = api.get(f"/v1/jobs/{job['id']}", params={"wait": 30}).json()
        out.append(time.perf_counter() - t0)
        assert job["status"] == "succeeded", job
    return out


def stats(values: list[float]) -> dict[str, float | None]:
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "mean_ms": round(sum(ms) / len(ms), 1) if ms else None,
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=20, help="jobs per workload and path")
    ap.add_argument("--append", action="store_true", help="append a section to RESULTS.md")
    args = ap.parse_args()
    # (a `timeout` or Ctrl-C still stops the servers this started)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    results: dict[str, Any] = {"at": now_iso(), "machine": machine(), "workloads": {}}
    with tempfile.TemporaryDirectory(prefix="genq-cog-bench-") as tmp:
        cog, url = start_cog(Path(tmp))
        try:
            config = json.dumps({"bench/model": {"url": url}})
            with (
                running_server("genq-serve", "demo/noop", None, GENQ_COG=config) as (srv, keys),
                httpx.Client(
                    base_url=srv.url,
                    headers={"Authorization": f"Bearer {keys[0]['key']}"},
                    timeout=60,
                ) as api,
            ):
                # the engine is there once genq has read the server's health
                deadline = time.monotonic() + 30
                while "properties" not in api.get("/v1/engines/cog/bench/model").json().get(
                    "input_schema", {}
                ):
                    assert time.monotonic() < deadline, "genq never saw the Cog server"
                    time.sleep(0.1)
                first = through_genq(api, {"steps": 1, "step_s": 0.0}, 1, "first")[0]
                results["first_genq_job_ms"] = round(first * 1000, 1)
                for name, data in WORKLOADS.items():
                    d = direct(url, data, args.jobs)
                    g = through_genq(api, data, args.jobs, f"w{len(results['workloads'])}")
                    ds, gs = stats(d), stats(g)
                    assert ds["mean_ms"] and gs["mean_ms"] and ds["p50_ms"] and gs["p50_ms"]
                    results["workloads"][name] = {
                        "direct": ds,
                        "genq": gs,
                        "added_mean_ms": round(gs["mean_ms"] - ds["mean_ms"], 1),
                        "ratio_mean": round(gs["mean_ms"] / ds["mean_ms"], 2),
                        "ratio_p50": round(gs["p50_ms"] / ds["p50_ms"], 2),
                    }
        finally:
            os.killpg(cog.pid, signal.SIGKILL)
            cog.wait(timeout=10)
    print(json.dumps(results, indent=2))
    if args.append:
        append(results, args.jobs)


def append(r: dict[str, Any], jobs: int) -> None:
    m = r["machine"]
    lines = [
        "",
        "## Cog: genq + Cog vs Cog called directly",
        "",
        f"`PYTHONPATH=$PWD/src:$PWD python bench/cog_overhead.py --jobs {jobs} --append` (from"
        f" the repository's root, {r['at']}, SQLite; {m.get('nproc')} cores, shared, noisy);"
        " the script's docstring says exactly what is measured. One Cog server"
        " (`python -m cog.server.http`, coglet 0.23.1, no Docker) serving"
        " tests/models/cog_predictor.py (a 32x32 PNG and a text), one `genq serve` with"
        " `GENQ_COG` naming it (genq's defaults). Per workload, jobs one after another:"
        " *direct* is a synchronous `POST /predictions` (the answer holds the outputs);"
        " *genq* is submit + long-poll to the terminal answer (claim, `PUT /predictions/{id}`"
        " with genq's webhook, the webhooks back, the outputs copied into genq's storage, the"
        " job settled).",
        "",
        "| workload | direct mean / p50 ms | genq mean / p50 ms | added mean ms |"
        " ratio genq / direct (mean, p50) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, w in r["workloads"].items():
        d, g = w["direct"], w["genq"]
        lines.append(
            f"| {name} | {d['mean_ms']} / {d['p50_ms']:.1f} | {g['mean_ms']} / {g['p50_ms']:.1f}"
            f" | {w['added_mean_ms']} | {w['ratio_mean']}, {w['ratio_p50']} |"
        )
    lines += [
        "",
        f"The first genq job of the run (the engine's first hand-over, the Cog server warm):"
        f" {r['first_genq_job_ms']} ms.",
        "",
    ]
    with (ROOT / "bench" / "RESULTS.md").open("a") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
