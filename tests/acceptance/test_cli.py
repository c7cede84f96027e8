"""The `genq` command as a user runs it: subprocesses against a real server."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from PIL import Image

from tests.conftest import GENQ, LiveServer, genq_env


def genq(
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GENQ, *args],
        env=env or genq_env(data_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )


def test_keys_accounts_ledger_and_doctor(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = genq(
        data, "keys", "create", "--account", "acme", "--plan", "pro", "--credits", "50", "--json"
    )
    assert made.returncode == 0, made.stderr
    info = json.loads(made.stdout)
    assert info["key"].startswith("gq_") and info["account"] == "acme"
    assert info["plan"] == "pro" and info["balance"] == 50
    listed = json.loads(genq(data, "accounts", "list", "--json").stdout)
    assert [a["name"] for a in listed] == ["acme"]
    assert genq(data, "accounts", "credit", "acme", "25", "--note", "bonus").returncode == 0
    ledger = json.loads(genq(data, "accounts", "ledger", "acme", "--json").stdout)
    assert ledger["balance"] == 75
    assert [e["kind"] for e in ledger["entries"]] == ["grant", "grant"]
    assert genq(data, "accounts", "plan", "acme", "ultimate").returncode == 0
    shown = json.loads(genq(data, "accounts", "show", "acme").stdout)
    assert shown["plan"] == "ultimate" and shown["limits"]["concurrent_jobs"] == 20
    assert shown["keys"][0]["prefix"] == info["key"][:10]
    assert genq(data, "keys", "revoke", info["key"][:10]).returncode == 0
    assert genq(data, "keys", "revoke", info["key"][:10]).returncode == 1
    bad = genq(data, "accounts", "plan", "acme", "platinum")
    assert bad.returncode != 0 and "no plan" in (bad.stderr + bad.stdout)
    doctor = genq(data, "doctor")
    assert doctor.returncode == 0, doctor.stderr


def test_run_wait_out_downloads_outputs(server: LiveServer, key: str, tmp_path: Path) -> None:
    env = genq_env(server.settings.data_dir, GENQ_BASE_URL=server.url, GENQ_API_KEY=key)
    out = tmp_path / "out"
    done = genq(
        server.settings.data_dir,
        "run",
        "demo/text2image",
        "-i",
        "prompt=a red fox",
        "-i",
        "width=128",
        "-i",
        "height=96",
        "-i",
        "num_images=2",
        "-i",
        "delay_s=0.5",
        "--wait",
        "--out",
        str(out),
        env=env,
    )
    assert done.returncode == 0, done.stderr
    files = sorted(out.iterdir())
    assert [f.suffix for f in files] == [".png", ".png"]
    with Image.open(files[0]) as img:
        assert img.size == (128, 96)
    failed = genq(server.settings.data_dir, "run", "demo/noop", "-i", "fail=true", env=env)
    assert failed.returncode == 1
    assert "engine_error" in failed.stdout + failed.stderr
    listed = genq(server.settings.data_dir, "jobs", "list", "--json", env=env)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) >= 2
    engines = genq(server.settings.data_dir, "engines", "--json", env=env)
    assert "demo/text-to-3d" in engines.stdout


def test_doctor_elsewhere_creates_nothing_and_says_where_it_looked(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = genq_env(tmp_path / "unused", GENQ_DATABASE_URL="")
    del env["GENQ_DATA_DIR"]
    done = genq(tmp_path, "doctor", env=env, cwd=elsewhere)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == f"error: no genq database at {elsewhere / '.genq' / 'genq.db'}"
    assert "--data-dir" in lines[1] and "GENQ_DATABASE_URL" in lines[1]
    assert f"genq db upgrade --data-dir {elsewhere / '.genq'}" in lines[1]
    as_json = genq(tmp_path, "doctor", "--json", env=env, cwd=elsewhere)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["checks"] == [
        {
            "name": "database",
            "status": "fail",
            "detail": f"no genq database at {elsewhere / '.genq' / 'genq.db'}",
        }
    ]
    assert list(elsewhere.iterdir()) == []


def test_doctor_prints_a_table_of_checks_and_json(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert genq(data, "db", "upgrade").returncode == 0
    table = genq(data, "doctor")
    assert table.returncode == 0, table.stdout + table.stderr
    assert table.stdout.splitlines()[0].startswith("database  ")
    for name in ("schema", "engines", "storage", "workers", "queue", "webhooks", "ledger"):
        assert f" {name} " in table.stdout
    report = json.loads(genq(data, "doctor", "--json").stdout)
    assert report["ok"] is True
    assert {c["name"] for c in report["checks"]} >= {"database", "schema", "workers", "ledger"}


def test_run_out_twice_refuses_then_force_replaces(
    server: LiveServer, key: str, tmp_path: Path
) -> None:
    env = genq_env(server.settings.data_dir, GENQ_BASE_URL=server.url, GENQ_API_KEY=key)
    out = tmp_path / "out"
    run = ("run", "demo/text2image", "-i", "prompt=a red fox", "-i", "width=64", "-i", "height=64")
    first = genq(server.settings.data_dir, *run, "--out", str(out), env=env)
    assert first.returncode == 0, first.stderr
    job_id = first.stderr.splitlines()[0].removeprefix("job ")
    assert job_id.startswith("job_")
    saved = out / "image_0.png"
    assert first.stdout.splitlines() == [f"image_0\t{saved}"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o666 & ~umask
    before = saved.read_bytes()
    second = genq(server.settings.data_dir, *run, "-i", "seed=7", "--out", str(out), env=env)
    assert second.returncode == 2
    assert f"error: {saved} already exists; nothing was downloaded" in second.stderr
    assert second.stdout == ""
    assert saved.read_bytes() == before
    assert [p.name for p in out.iterdir()] == ["image_0.png"]
    forced = genq(
        server.settings.data_dir, *run, "-i", "seed=7", "--out", str(out), "--force", env=env
    )
    assert forced.returncode == 0, forced.stderr
    assert saved.read_bytes() != before
    assert [p.name for p in out.iterdir()] == ["image_0.png"]
