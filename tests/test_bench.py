"""The benchmarks' command runs (issue 8): ``python -m bench directory --dry-run`` goes through every
step of one benchmark at the smallest size, against the tests' PostgreSQL and RabbitMQ, and writes
its JSON result and RESULTS.md. Timings are never asserted here: they live in bench/results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_bench_command_runs_one_benchmark_and_writes_its_result(
    tmp_path: Path, postgres_server_url: str, rabbitmq
) -> None:  # type: ignore[no-untyped-def]
    environment = {
        **os.environ,
        "IMI_BENCH_DATABASE_URL": postgres_server_url,
        "IMI_BENCH_AMQP_URL": rabbitmq.url,
    }
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "directory", "--dry-run", "--out", str(tmp_path)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    result = json.loads((tmp_path / "directory.json").read_text())
    assert result["status"] == "ok"
    assert result["mode"] == "dry"
    for key in ("machine", "date", "sizes", "figures", "floor", "ratio", "target", "met"):
        assert key in result
    assert {"platform", "cpu_count", "python"} <= set(result["machine"])
    assert result["figures"]["indexed"] == result["sizes"]["authorities"]
    assert "| directory | dry |" in (tmp_path / "RESULTS.md").read_text()
