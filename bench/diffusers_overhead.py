"""genq's overhead per job around a diffusers engine, on this machine.

A `genq serve` subprocess serves a tiny random-weight Stable Diffusion pipeline (the
one the tests build, `tests/models/tiny.py`; nothing is downloaded) through
GENQ_DIFFUSERS on the CPU. One client submits jobs one after another and long-polls
each to its end. Per job:

- wall: from the client's POST to the client holding the terminal answer;
- pipeline: the diffusers call itself (`pipeline_s` in the output's metadata, timed
  inside the engine around `pipe(...)`);
- overhead = wall - pipeline: HTTP, validation, queueing, the claim, the engine thread,
  PNG encoding, storing the output, the job's writes and the long-poll's wake-up.

Also the first job of a fresh server (it loads the model) against the warm ones.

    PYTHONPATH=$PWD/src:$PWD python bench/diffusers_overhead.py [--jobs 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, loadavg, machine, now_iso, running_server  # noqa: E402
from tests.models.tiny import build  # noqa: E402

CASES = [  # (label, width, height, steps)
    ("32x32, 4 steps", 32, 32, 4),
    ("64x64, 30 steps", 64, 64, 30),
    ("128x128, 50 steps", 128, 128, 50),
]


def one_job(api: httpx.Client, input: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    r = api.post("/v1/jobs", json={"engine": "bench/text2image", "input": input})
    r.raise_for_status()
    job: dict[str, Any] = r.json()
    while job["status"] not in ("succeeded", "failed", "canceled"):
        r = api.get(f"/v1/jobs/{job['id']}", params={"wait": 30})
        r.raise_for_status()
        job = r.json()
    wall = time.perf_counter() - started
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job['id']} {job['status']}: {job['error']}")
    return wall, job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10, help="warm jobs per case")
    parser.add_argument("--out", default="diffusers_overhead.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="genq-bench-model-") as tmp:
        model = build(Path(tmp) / "tiny")
        config = {
            "bench/text2image": {
                "task": "text2image",
                "model": str(model),
                "device": "cpu",
                "dtype": "float32",
                "size": 32,
                "min_side": 32,
                "max_side": 256,
            }
        }
        env = {"GENQ_DIFFUSERS": json.dumps(config), "HF_HUB_OFFLINE": "1"}
        rows: list[dict[str, Any]] = []
        with running_server("genq-serve", "bench/text2image", None, **env) as (srv, keys):
            headers = {"Authorization": f"Bearer {keys[0]['key']}"}
            with httpx.Client(base_url=srv.url, headers=headers, timeout=120) as api:
                first_wall, first = one_job(api, {"prompt": "a red fox", "seed": 0})
                cold = {
                    "wall_s": round(first_wall, 3),
                    "load_s": first["outputs"][0]["load_s"],
                    "pipeline_s": first["outputs"][0]["pipeline_s"],
                }
                for label, w, h, steps in CASES:
                    walls, pipes = [], []
                    for i in range(args.jobs + 1):
                        inp = {"prompt": "a red fox", "width": w, "height": h, "steps": steps}
                        wall, job = one_job(api, {**inp, "seed": i})
                        out = job["outputs"][0]
                        assert out["warm"] and out["pipeline_loads"] == 1
                        if i:  # the first of a case warms the kernels of that size
                            walls.append(wall)
                            pipes.append(out["pipeline_s"])
                    over = [a - b for a, b in zip(walls, pipes, strict=True)]
                    rows.append(
                        {
                            "case": label,
                            "jobs": len(walls),
                            "wall_ms_p50": round(statistics.median(walls) * 1000, 1),
                            "pipeline_ms_p50": round(statistics.median(pipes) * 1000, 1),
                            "overhead_ms_p50": round(statistics.median(over) * 1000, 1),
                            "overhead_ms_max": round(max(over) * 1000, 1),
                            "overhead_share": round(sum(over) / sum(walls), 3),
                            "wall_over_pipeline": round(sum(walls) / sum(pipes), 3),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
        warm = rows[0]
    result = {
        "when": now_iso(),
        "machine": machine(),
        "loadavg_end": loadavg(),
        "cold_first_job": cold,
        "warm_first_case_wall_ms_p50": warm["wall_ms_p50"],
        "cases": rows,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({"cold_first_job": cold}))
    print(f"written to {OUT / args.out}")


if __name__ == "__main__":
    main()
